"""The README's demo numbers, written by code from a run's ``results.json`` (never by hand).

``lightning-talos report run.name=NAME --readme=README.md`` replaces the block between
``start(NAME)`` and ``end(NAME)`` with the run's table, verdicts and the machine and commit that
produced them (``make readme`` does this for ``runs/demo``, ``make readme SEEDS=3`` for the
three-seed demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_talos.errors import UserError
from lightning_talos.report.profile import profile_table
from lightning_talos.report.report import claims, table
from lightning_talos.stages.registry import method_labels, method_names


def start(name: str, source: str | None = None) -> str:
    """The opening marker of block ``name``, written from ``source`` (default ``runs/<name>``)."""
    source = source or f"runs/{name}"
    return f"<!-- results:{name}:start (written by `make readme` from {source}: do not edit) -->"


def end(name: str) -> str:
    """The closing marker of run ``name``'s block."""
    return f"<!-- results:{name}:end -->"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def utility_table(results: dict[str, Any]) -> str:
    """Task accuracy of every model: train and test, on the noisy labels and on the clean ones
    where the dataset knows them (the synthetic set does)."""
    head = "| model | train acc | test acc | gap | clean train acc | clean test acc |"
    lines = [head, "|---|---|---|---|---|---|"]
    for method in method_names():
        u = (results.get(method) or {}).get("utility")
        if not u:
            continue
        cells = [u.get(k) for k in ("train_acc", "test_acc", "gap", "clean_train_acc",
                                    "clean_test_acc")]  # fmt: skip
        lines.append(f"| {method_labels()[method]} | " + " | ".join(map(_pct, cells)) + " |")
    return "\n".join(lines)


def provenance(results: dict[str, Any]) -> str:
    """One line: commit, machine, precision, seeds and the summed stage wall time."""
    meta = results.get("meta", {})
    machine = meta.get("machine") or {}
    seconds = sum(float(v) for v in (meta.get("wall_time_s") or {}).values())
    commit = str(meta.get("git_commit") or "unknown")[:10]
    precision = meta.get("precision") or {}
    chosen = precision.get("precision") if isinstance(precision, dict) else precision
    return (
        f"Run by commit `{commit}` on {machine.get('cpu', 'an unrecorded CPU')} "
        f"({machine.get('cores', '?')} cores, torch CPU kernels "
        f"{machine.get('cpu_capability', '?')}, precision {chosen or 'unrecorded'}); seeds "
        f"{meta.get('seeds')}; stage wall times sum to {seconds / 60:.1f} min"
        f"{' per seed (mean over the seeds)' if len(meta.get('seeds') or []) > 1 else ''}."
    )


def demo_body(results: dict[str, Any]) -> list[str]:
    """The demo block's parts: provenance, utilities, the paper-style table, the verdicts and
    the per-stage profile (when recorded)."""
    parts = [
        provenance(results),
        utility_table(results),
        table(results),
        "\n".join(claims(results)),
    ]
    profile = profile_table(results)
    return [*parts, profile] if profile else parts


def demo_block(results: dict[str, Any], name: str) -> str:
    """The README block of run ``name``: :func:`demo_body` between its markers."""
    return "\n\n".join([start(name), *demo_body(results), end(name)])


def write_readme(readme: Path, results: dict[str, Any], name: str) -> Path:
    """Replace run ``name``'s block in ``readme`` (its text outside the markers is kept).

    Raises:
        UserError: when the file or its markers are missing.
    """
    if not readme.is_file():
        raise UserError(f"no {readme} to write the run's numbers into")
    text = readme.read_text()
    if start(name) not in text or end(name) not in text:
        raise UserError(f"{readme} has no block for run {name} ({start(name)} ... {end(name)})")
    before, rest = text.split(start(name), 1)
    _, after = rest.split(end(name), 1)
    readme.write_text(before + demo_block(results, name) + after)
    return readme
