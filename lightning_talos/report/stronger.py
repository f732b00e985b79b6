"""The report's section "Claim 1 under stronger attacks": LiRA, RMIA and the encoder attacks.

For each attack family, the supervised, contrastive and Talos models at AUC and TPR at 1% and
0.1% FPR, one log-log ROC figure of every such attack, and claims 1 and 3 on that family alone
as ``results.json`` records them (``claims.<k>.families``, judged by
:func:`~lightning_talos.analysis.claims.judge_claims` with the family as the only membership
evidence). A family that one of the two models lacks (the encoder attacks have no supervised
counterpart) is "not evaluated" for claim 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_talos.analysis.plots import plot_roc
from lightning_talos.stages.references import ENCODER_ENTRIES
from lightning_talos.stages.registry import PAPER_ATTACKS, PAPER_METHODS, method_labels

MIA = PAPER_ATTACKS[0]
_, CONTRASTIVE, _ = PAPER_METHODS
#: Attack family -> its ``mia`` entries.
FAMILIES = {"LiRA": ("lira",), "RMIA": ("rmia",), "Encoder-level": ENCODER_ENTRIES}
#: Family -> its configured attack (``attacks=[...]``), the key of its verdicts.
CONFIGURED = {"LiRA": "lira", "RMIA": "rmia", "Encoder-level": "encoder"}
FIGURE = "roc_stronger.png"


def _entries(results: dict[str, Any], method: str) -> dict[str, Any]:
    entry = results.get(method)
    mia = entry.get(MIA) if isinstance(entry, dict) else None
    return mia if isinstance(mia, dict) else {}


def family_verdict(results: dict[str, Any], claim: str, family: str) -> dict[str, Any] | None:
    """Claim ``claim`` judged on the configured attack ``family`` alone, as recorded in
    ``results["claims"]`` (None when the family is in the claim's basis or absent).

    Returns:
        ``{"label", "verdict", "reason", "tests"}``.
    """
    entry = (results.get("claims") or {}).get(claim) or {}
    return (entry.get("families") or {}).get(family)


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr")
    return " / ".join(f"{entry[k]:.3f}" for k in keys)


def _present(results: dict[str, Any]) -> dict[str, list[str]]:
    """Family -> its attacks that some model has."""
    found = {}
    for family, names in FAMILIES.items():
        have = [n for n in names if any(n in _entries(results, m) for m in PAPER_METHODS)]
        if have:
            found[family] = have
    return found


def _encoder_vs_classifier(results: dict[str, Any]) -> str:
    """The contrastive model's best encoder-level vs best classifier-level attack (display)."""
    mia = _entries(results, CONTRASTIVE)
    encoder = {k: v for k, v in mia.items() if k in ENCODER_ENTRIES}
    classifier = {k: v for k, v in mia.items() if k not in ENCODER_ENTRIES}
    if not encoder or not classifier:
        return ""
    parts = []
    for key, label in (("auc", "AUC"), ("tpr_at_1pct_fpr", "TPR@1%FPR")):
        e = max(encoder, key=lambda k: encoder[k][key])
        c = max(classifier, key=lambda k: classifier[k][key])
        parts.append(f"{label} {encoder[e][key]:.3f} ({e}) vs {classifier[c][key]:.3f} ({c})")
    return (
        "On the contrastive model, the best encoder-level vs the best classifier-level attack "
        "(the maximum over attacks, for display; no verdict rests on it): " + "; ".join(parts) + "."
    )


def stronger_table(results: dict[str, Any]) -> list[str]:
    """The section's table (a row per attack, a column per model) and the verdict lines of
    claims 1 and 3 per family, as markdown lines ([] when the run has none of the attacks)."""
    present = _present(results)
    if not present:
        return []
    labels = method_labels()
    header = "| family | attack | " + " | ".join(labels[m] for m in PAPER_METHODS) + " |"
    lines = [header, "|" + "---|" * (2 + len(PAPER_METHODS))]
    for family, names in present.items():
        for name in names:
            cells = [_cell(_entries(results, method).get(name)) for method in PAPER_METHODS]
            lines.append(f"| {family} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for family in present:
        for claim in ("1", "3"):
            judged = family_verdict(results, claim, CONFIGURED[family])
            if judged:
                lines.append(
                    f"- **claim {claim} under {family}**: {judged['verdict']} ({judged['reason']})."
                )
    return lines


def stronger_attacks_section(results: dict[str, Any], root: Path) -> str:
    """Markdown of the section and its figure ``roc_stronger.png`` in ``root`` ("" when the
    run has none of these attacks)."""
    present = _present(results)
    if not present:
        return ""
    labels = method_labels()
    lines = [
        "## Claim 1 under stronger attacks",
        "",
        "Per-example attacks calibrated with reference models (LiRA, RMIA) and attacks on the "
        "encoder itself (EncoderMI-style view similarity; LiRA on it with references). Cells: "
        "AUC / TPR at 1% FPR / TPR at 0.1% FPR on the target. The verdicts are claims 1 and 3 "
        "judged on the family's attacks only (accuracy intervals, as for the paper's attacks).",
        "",
        *stronger_table(results),
    ]
    curves = {}
    for names in present.values():
        for name in names:
            for method in PAPER_METHODS:
                entry = _entries(results, method).get(name)
                if entry and entry.get("roc"):
                    curves[f"{labels[method]}: {name}"] = entry
    note = _encoder_vs_classifier(results)
    if note:
        lines += ["", note]
    if curves:
        plot_roc(curves, root / FIGURE, title="Stronger attacks (log-log)")
        lines += ["", f"![{Path(FIGURE).stem}]({FIGURE})"]
    return "\n".join(lines) + "\n"
