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
