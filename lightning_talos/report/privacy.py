"""Membership AUC against epochs, from the stages' ``privacy_history.json``
(``trainer.privacy_audit_every_n_epochs``, ``callbacks.PrivacyAudit``)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightning_talos.callbacks.privacy import HISTORY_FILE  # noqa: E402

#: The attack drawn: the loss (fixed in advance, never picked on the target's numbers).
ATTACK = "loss"


def histories(root: Path) -> dict[str, list[dict[str, float]]]:
    """``{stage folder: history}`` of every target stage of a run that recorded one."""
    out = {}
    for path in sorted(root.glob(f"*-target/{HISTORY_FILE}")):
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a half-written or foreign file is not drawn
        if isinstance(rows, list) and rows and all(f"{ATTACK}/auc" in r for r in rows):
            out[path.parent.name] = rows
    return out


def plot_privacy_history(root: Path, path: Path | None = None) -> Path | None:
    """Draw ``<ATTACK>/auc`` against the epoch for each model into ``privacy.png``.

    Returns:
        The figure's path, or ``None`` when no stage recorded a history.
    """
    found = histories(root)
    if not found:
        return None
    path = path or root / "privacy.png"
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, rows in found.items():
        epochs = [int(r["epoch"]) + 1 for r in rows]
        ax.plot(epochs, [r[f"{ATTACK}/auc"] for r in rows], marker="o", ms=3, label=name)
    ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance")
    ax.set(xlabel="epochs trained", ylabel=f"membership AUC ({ATTACK} attack)",
           title="Membership leakage during training")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
