"""Where a run's time went, stage by stage: the ``meta.profile`` of ``results.json`` as a table.

Each stage's profile (recorded by the stage runners, see :mod:`lightning_talos.profiling` and
:class:`~lightning_talos.callbacks.profile.StepProfile`) tells a slow run's cause apart: fewer
cores busy than threads (waiting, another process), steal (the hypervisor ran other guests on
this machine's virtual CPUs), data waits, or time outside the training loop (set-up, model
loading, the attacks' own work).
"""

from __future__ import annotations

from typing import Any

HEAD = (
    "| stage | wall s | threads | cores busy | steal | steps | ms/step | data ms/step "
    "| fit s | outside fit s | images/s |"
)


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def profile_rows(profiles: dict[str, dict[str, Any]]) -> list[str]:
    """One markdown row per stage, in the order the stages were recorded."""
    rows = []
    for stage, p in profiles.items():
        steal = p.get("steal_fraction")
        fit = p.get("fit_s")
        outside = None if fit is None else max(float(p["wall_s"]) - float(fit), 0.0)
        cells = [
            stage,
            _num(p.get("wall_s"), ".1f"),
            _num(p.get("threads"), "d"),
            _num(p.get("cores_busy"), ".2f"),
            "–" if steal is None else f"{100 * steal:.1f}%",
            _num(p.get("steps"), "d"),
            _num(p.get("step_ms"), ".1f"),
            _num(p.get("data_ms"), ".1f"),
            _num(fit, ".1f"),
            _num(outside, ".1f"),
            _num(p.get("images_per_s"), ".0f"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def profile_table(results: dict[str, Any]) -> str:
    """The per-stage profile table with a one-line summary, or "" when none was recorded.

    Multi-seed results carry the first seed's profiles (``meta`` is the first seed's).
    """
    profiles = (results.get("meta") or {}).get("profile") or {}
    if not profiles:
        return ""
    wall = sum(float(p.get("wall_s") or 0) for p in profiles.values())
    cpu = sum(float(p.get("cpu_s") or 0) for p in profiles.values())
    steals = [p["steal_fraction"] for p in profiles.values() if p.get("steal_fraction") is not None]
    seeds = (results.get("meta") or {}).get("seeds") or []
    scope = f" (seed {seeds[0]})" if len(seeds) > 1 else ""
    summary = (
        f"Where the time went{scope}: {wall:.0f} s in {len(profiles)} stages, "
        f"{cpu / max(wall, 1e-9):.2f} cores busy on average"
        + (
            f", at most {100 * max(steals):.1f}% of the CPU stolen by the hypervisor"
            if steals
            else ""
        )
        + "."
    )
    sep = "|" + "---|" * HEAD.count(" | ") + "---|"
    return "\n".join([summary, "", HEAD, sep, *profile_rows(profiles)])
