"""The privacy-utility frontier in ``report.md`` and ``compare``: its table and figure.

The points are :func:`lightning_talos.analysis.frontier.frontier_rows` (see that module for what
each value means) over the methods the stage registry knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_talos.analysis.frontier import frontier_rows
from lightning_talos.analysis.plots import plot_frontier
from lightning_talos.stages.registry import entry_methods, method_labels

FIGURE = "frontier.png"


def rows(results: dict[str, Any], run: str = "") -> list[dict[str, Any]]:
    """The frontier's points of one results dict, for every method entry it may hold."""
    return frontier_rows(results, methods=entry_methods(results), labels=method_labels(), run=run)


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
    points = rows(results)
    if not points:
        return ""
    plot_frontier(points, root / FIGURE, title=f"privacy-utility frontier: {root.name}")
    return "\n".join(
        ["", "## Privacy-utility frontier", "", NOTE, "", *frontier_markdown(points, FIGURE), ""]
    )


def frontier_compare(roots: list[Path], runs: list[dict[str, Any]]) -> list[str]:
    """Every model of several runs on one frontier (``frontier.png`` beside the first run);
    markdown lines for ``compare``."""
    several = len(runs) > 1
    points = [r for root, res in zip(roots, runs) for r in rows(res, root.name if several else "")]
    if not points:
        return []
    path = plot_frontier(points, roots[0].parent / FIGURE, title="privacy-utility frontier")
    return ["", NOTE, "", *frontier_markdown(points, str(path))]
