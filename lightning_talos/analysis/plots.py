"""Figures: log-log ROC curves, AIA bars against the baseline, the privacy-utility curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FLOOR = 1e-4  # log axes cannot show 0: FPR/TPR below this are drawn at the floor


def plot_roc(curves: dict[str, dict[str, Any]], path: Path, *, title: str) -> Path:
    """Log-log ROC of every entry that carries ``roc: {fpr, tpr}``; returns ``path``."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name, entry in curves.items():
        roc = entry.get("roc")
        if not roc:
            continue
        fpr = [max(v, FLOOR) for v in roc["fpr"]]
        tpr = [max(v, FLOOR) for v in roc["tpr"]]
        ax.plot(fpr, tpr, label=f"{name} (AUC {entry.get('auc', float('nan')):.3f})")
    ax.plot([FLOOR, 1], [FLOOR, 1], "k--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate")
    ax.set(xlim=(FLOOR, 1), ylim=(FLOOR, 1), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_aia_bars(rows: dict[str, dict[str, float]], path: Path) -> Path:
    """Bars of the strongest probe's accuracy per model, with the majority baseline marked.

    Args:
        rows: model name -> ``{"acc", "lo", "hi", "majority_baseline"}``.
    """
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    names = list(rows)
    accs = [rows[n]["acc"] for n in names]
    errs = [
        [rows[n]["acc"] - rows[n]["lo"] for n in names],
        [rows[n]["hi"] - rows[n]["acc"] for n in names],
    ]
    ax.bar(names, accs, yerr=errs, capsize=4, color="#4c72b0")
    for i, name in enumerate(names):
        base = rows[name]["majority_baseline"]
        ax.hlines(base, i - 0.4, i + 0.4, colors="k", linestyles="--")
    ax.set(ylabel="attribute inference accuracy (strongest probe)", ylim=(0, 1))
    ax.set_title("AIA vs majority baseline (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_tradeoff(points: list[dict[str, float]], path: Path) -> Path:
    """Privacy-utility curve of a lambda sweep: task accuracy vs AIA accuracy."""
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    points = sorted(points, key=lambda p: p["lambda"])
    ax.plot([p["aia_acc"] for p in points], [p["test_acc"] for p in points], "o-")
    for p in points:
        ax.annotate(f"λ={p['lambda']:g}", (p["aia_acc"], p["test_acc"]), fontsize=7)
    ax.set(xlabel="attribute inference accuracy", ylabel="task test accuracy")
    ax.set_title("Talos privacy-utility trade-off", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Panels of :func:`plot_frontier`: (value key, interval key, y label).
FRONTIER_PANELS: tuple[tuple[str, str, str], ...] = (
    ("aia_excess", "aia_ci", "strongest AIA: accuracy - majority baseline"),
    ("mia_adv", "mia_ci", "MIA advantage (strongest attack)"),
)


def frontier_points(rows: list[dict[str, Any]], key: str, ci_key: str) -> list[dict[str, Any]]:
    """The rows one frontier panel can draw: those with ``task_acc`` and ``key`` not None.

    Returns:
        ``{"label", "x", "y", "xerr": (below, above), "yerr": (below, above)}`` per drawable
        row, in input order; a missing interval gives zero-length bars, and an interval that
        does not contain its point (a percentile bootstrap can do that) is cut at the point.
    """
    points = []
    for row in rows:
        x, y = row.get("task_acc"), row.get(key)
        if x is None or y is None:
            continue
        points.append(
            {
                "label": str(row.get("label", "?")),
                "x": float(x),
                "y": float(y),
                "xerr": _bar(float(x), row.get("task_ci")),
                "yerr": _bar(float(y), row.get(ci_key)),
            }
        )
    return points


def _bar(value: float, interval: Any) -> tuple[float, float]:
    if interval is None or interval[0] is None or interval[1] is None:
        return (0.0, 0.0)
    return (max(0.0, value - float(interval[0])), max(0.0, float(interval[1]) - value))


def plot_frontier(rows: list[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Privacy-utility frontier of models and defence settings: task accuracy on x; on y the
    strongest attribute inference's excess over the majority baseline (left) and the
    membership advantage (right); 0 on y is "no leak".

    Args:
        rows: One dict per model/setting: ``label``, ``task_acc``, ``task_ci`` (lo, hi),
            ``aia_excess``, ``aia_ci``, ``mia_adv``, ``mia_ci``; any value may be None (a
            panel skips rows it cannot place and says which).
        path: Where the PNG goes (folders are created).
        title: Figure title.

    Returns:
        ``path``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), sharex=True)
    colours = plt.get_cmap("tab10")
    index = {str(row.get("label", "?")): i for i, row in enumerate(rows)}
    for ax, (key, ci_key, ylabel) in zip(axes, FRONTIER_PANELS):
        points = frontier_points(rows, key, ci_key)
        for p in points:
            colour = colours(index[p["label"]] % 10)
            ax.errorbar(
                p["x"],
                p["y"],
                xerr=[[p["xerr"][0]], [p["xerr"][1]]],
                yerr=[[p["yerr"][0]], [p["yerr"][1]]],
                fmt="o",
                color=colour,
                capsize=3,
            )
            ax.annotate(
                p["label"], (p["x"], p["y"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set(xlabel="task accuracy (target test quarter)", ylabel=ylabel)
        drawn = {p["label"] for p in points}
        missing = [
            str(row.get("label", "?")) for row in rows if str(row.get("label", "?")) not in drawn
        ]
        if missing:
            ax.text(
                0.01,
                0.01,
                "not shown (no value): " + ", ".join(missing),
                fontsize=6,
                transform=ax.transAxes,
                va="bottom",
            )
        if not points:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title or "privacy-utility frontier", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
