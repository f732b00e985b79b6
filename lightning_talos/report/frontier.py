"""One privacy-utility frontier for every model and defence setting of one or more runs.

Each audited model (the paper's three, LEACE, each DP-SGD epsilon, ...) is one point: task
accuracy on x (the target's test quarter, 95% Wilson interval); on y, the strongest attribute
probe's accuracy minus the majority-class baseline, and the strongest membership attack's
advantage. Both y values are 0 for "no leak".

The membership advantage is ``2 x balanced accuracy - 1`` = TPR - FPR *at the attack's own
decision* (its threshold calibrated on the shadow model), with the interval of its accuracy
mapped the same way (members and non-members are equal in number, so accuracy and balanced
accuracy coincide). It is not ``advantage`` of ``results.json``, the best TPR - FPR over the
target's ROC, which picks its threshold on the target's labels and has no interval. "Strongest"
(attack, probe) is chosen on these target numbers: for display, as :func:`best_attack`; the
verdicts never rest on it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning_talos.pipeline.stages import PAPER_ATTACKS, entry_methods, method_labels
from lightning_talos.report.claims import decode_correct
from lightning_talos.report.plots import plot_frontier

MIA, AIA = PAPER_ATTACKS
FIGURE = "frontier.png"
#: Keys of a method entry that are not membership attack results.
_NOT_MEMBERSHIP = ("utility", AIA, "defence")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``successes / n``.

    Raises:
        ValueError: If ``n < 1`` or ``successes`` is outside ``[0, n]``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _is_attack(value: Any) -> bool:
    ci = value.get("ci95") if isinstance(value, dict) else None
    return (
        isinstance(value.get("balanced_acc") if isinstance(value, dict) else None, int | float)
        and isinstance(ci, dict)
        and isinstance(ci.get("acc"), list)
    )


def membership_attacks(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every membership attack result of a method entry, by ``stage.attack`` (``mia.nn``,
    ``mia.metric_entropy``, ... and those of other attack stages, e.g. reference-model ones)."""
    found: dict[str, dict[str, Any]] = {}
    for stage, value in entry.items():
        if stage in _NOT_MEMBERSHIP or not isinstance(value, dict):
            continue
        if _is_attack(value):
            found[stage] = value
            continue
        found.update({f"{stage}.{k}": v for k, v in value.items() if _is_attack(v)})
    return found


def frontier_row(entry: dict[str, Any], label: str) -> dict[str, Any]:
    """One model's point (see the module docstring); a missing part is None."""
    utility = entry.get("utility") or {}
    row: dict[str, Any] = {"label": label, "task_acc": utility.get("test_acc"), "task_ci": None}
    correct = utility.get("test_correct")
    if isinstance(correct, str) and correct:
        bits = decode_correct(correct)
        row["task_ci"] = wilson(int(bits.sum()), len(bits))
    aia = entry.get(AIA) or {}
    probes = {k: v for k, v in aia.items() if isinstance(v, dict) and "acc" in v}
    row.update(aia_probe=None, aia_excess=None, aia_ci=None)
    if probes:
        name = max(probes, key=lambda k: probes[k]["acc"])
        base = float(aia["majority_baseline"])
        lo, hi = probes[name]["ci95"]["acc"]
        row.update(aia_probe=name, aia_excess=probes[name]["acc"] - base)
        row["aia_ci"] = (lo - base, hi - base)
    attacks = membership_attacks(entry)
    row.update(mia_attack=None, mia_adv=None, mia_ci=None)
    if attacks:
        name = max(attacks, key=lambda k: attacks[k]["balanced_acc"])
        lo, hi = attacks[name]["ci95"]["acc"]
        row.update(mia_attack=name, mia_adv=2 * attacks[name]["balanced_acc"] - 1)
        row["mia_ci"] = (2 * lo - 1, 2 * hi - 1)
    defence = entry.get("defence") or {}
    for key in ("epsilon", "delta", "max_grad_norm", "noise_multiplier"):
        row[key] = defence.get(key)
    return row


def frontier_rows(results: dict[str, Any], run: str = "") -> list[dict[str, Any]]:
    """A point per method entry of one results dict (labels prefixed by ``run`` if given)."""
    labels = method_labels()
    rows = []
    for name in entry_methods(results):
        entry = results.get(name)
        if isinstance(entry, dict) and entry.get("utility"):
            label = labels.get(name) or _variant_label(name, entry, labels)
            rows.append(frontier_row(entry, f"{run}: {label}" if run else label))
    return rows


def _variant_label(name: str, entry: dict[str, Any], labels: dict[str, str]) -> str:
    """A DP variant nobody registered in this process (``compare`` reads no config): its base
    method's label and target epsilon, else its key."""
    defence = entry.get("defence") or {}
    epsilon = defence.get("target_epsilon")
    if epsilon is None and defence.get("noise_multiplier") == 0:
        epsilon = math.inf  # clipping only
    base = next((b for b in labels if name.startswith(f"{b}_")), None)
    return f"{labels[base]} eps={epsilon:g}" if base and epsilon is not None else name


def _cell(value: Any, interval: Any = None, signed: bool = False) -> str:
    if value is None:
        return "–"
    fmt = "+.3f" if signed else ".3f"
    text = format(value, fmt)
    if interval is not None:
        text += f" [{format(interval[0], fmt)}, {format(interval[1], fmt)}]"
    return text


def _epsilon(value: float | None) -> str:
    """The accountant's epsilon; None (no noise, clipping only) is infinite."""
    return "inf (no noise)" if value is None else f"{value:.2f}"


def frontier_markdown(rows: list[dict[str, Any]], figure: str) -> list[str]:
    """The frontier as a markdown table, with the figure below it."""
    head = (
        "| model | task acc [95% CI] | AIA excess over baseline [CI] (probe) | "
        "MIA advantage [CI] (attack) | DP: epsilon / delta / clip C / noise sigma |"
    )
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        dp = (
            f"{_epsilon(r['epsilon'])} / {r['delta']:.1e} / {r['max_grad_norm']:g} / "
            f"{r['noise_multiplier']:.3f}"
            if r.get("noise_multiplier") is not None
            else "–"
        )
        lines.append(
            f"| {r['label']} | {_cell(r['task_acc'], r['task_ci'])} | "
            f"{_cell(r['aia_excess'], r['aia_ci'], True)} ({r['aia_probe'] or '–'}) | "
            f"{_cell(r['mia_adv'], r['mia_ci'], True)} ({r['mia_attack'] or '–'}) | {dp} |"
        )
    return [*lines, "", f"![frontier]({figure})"]


NOTE = (
    "Each model and defence setting is one point: task accuracy (target test quarter) against "
    "the strongest attribute probe's accuracy minus the majority baseline, and the strongest "
    "membership attack's advantage 2 x balanced accuracy - 1 at its shadow-calibrated threshold "
    "(0 = no leak on both). 'Strongest' is picked on these numbers, for display only. DP "
    "epsilon is the accountant's value for the steps taken."
)


def frontier_section(results: dict[str, Any], root: Path) -> str:
    """``## Privacy-utility frontier`` of one run (draws ``<root>/frontier.png``)."""
    rows = frontier_rows(results)
    if not rows:
        return ""
    plot_frontier(rows, root / FIGURE, title=f"privacy-utility frontier: {root.name}")
    return "\n".join(
        ["", "## Privacy-utility frontier", "", NOTE, "", *frontier_markdown(rows, FIGURE), ""]
    )


def frontier_compare(roots: list[Path], runs: list[dict[str, Any]]) -> list[str]:
    """Every model of several runs on one frontier (``frontier.png`` beside the first run);
    markdown lines for ``compare``."""
    several = len(runs) > 1
    rows = [
        r
        for root, res in zip(roots, runs)
        for r in frontier_rows(res, root.name if several else "")
    ]
    if not rows:
        return []
    path = plot_frontier(rows, roots[0].parent / FIGURE, title="privacy-utility frontier")
    return ["", NOTE, "", *frontier_markdown(rows, str(path))]
