"""The report's section "Claim 1 under stronger attacks": LiRA, RMIA and the encoder attacks.

For each attack family, the supervised, contrastive and Talos models at AUC and TPR at 1% and
0.1% FPR, one log-log ROC figure of every such attack, and claim 1's verdict on that family
alone: :func:`~lightning_talos.analysis.claims.judge_claims` run on the results with each
model's membership entries cut down to the family's attacks, so the rule (supervised minus
contrastive attack accuracy, 95% interval above 0, for every attack of the family) and its
intervals are the claims module's own. A family that one of the two models lacks (the encoder
attacks have no supervised counterpart) gets no verdict.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from lightning_talos.analysis.claims import judge_claims
from lightning_talos.analysis.plots import plot_roc
from lightning_talos.stages.references import ENCODER_ENTRIES
from lightning_talos.stages.registry import PAPER_ATTACKS, PAPER_METHODS, method_labels

MIA = PAPER_ATTACKS[0]
_, CONTRASTIVE, _ = PAPER_METHODS
#: Attack family -> its ``mia`` entries.
FAMILIES = {"LiRA": ("lira",), "RMIA": ("rmia",), "Encoder-level": ENCODER_ENTRIES}
FIGURE = "roc_stronger.png"


def _entries(results: dict[str, Any], method: str) -> dict[str, Any]:
    entry = results.get(method)
    mia = entry.get(MIA) if isinstance(entry, dict) else None
    return mia if isinstance(mia, dict) else {}


def family_verdict(results: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Claim 1 judged on the attacks ``names`` only (every seed's results cut down alike).

    Returns:
        The claim as :func:`~lightning_talos.analysis.claims.judge_claims` gives it
        (``verdict``, ``reason``, ``tests``).
    """

    def cut(run: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(run)
        for method in PAPER_METHODS:
            mia = _entries(out, method)
            if mia:
                out[method][MIA] = {k: v for k, v in mia.items() if k in names}
        return out

    filtered = cut(results)
    if results.get("per_seed"):
        filtered["per_seed"] = [cut(r) for r in results["per_seed"]]
    return judge_claims(filtered)["1"]


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


def stronger_attacks_section(results: dict[str, Any], root: Path) -> str:
    """Markdown of the section and its figure ``roc_stronger.png`` in ``root`` ("" when the
    run has none of these attacks)."""
    present = _present(results)
    if not present:
        return ""
    labels = method_labels()
    header = "| family | attack | " + " | ".join(labels[m] for m in PAPER_METHODS) + " |"
    lines = [
        "## Claim 1 under stronger attacks",
        "",
        "Per-example attacks calibrated with reference models (LiRA, RMIA) and attacks on the "
        "encoder itself (EncoderMI-style view similarity; LiRA on it with references). Cells: "
        "AUC / TPR at 1% FPR / TPR at 0.1% FPR on the target. The verdict is claim 1's rule "
        "on the family's attacks only (accuracy intervals, as for the paper's attacks).",
        "",
        header,
        "|" + "---|" * (2 + len(PAPER_METHODS)),
    ]
    curves = {}
    for family, names in present.items():
        for name in names:
            cells = []
            for method in PAPER_METHODS:
                entry = _entries(results, method).get(name)
                cells.append(_cell(entry))
                if entry and entry.get("roc"):
                    curves[f"{labels[method]}: {name}"] = entry
            lines.append(f"| {family} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for family, names in present.items():
        claim = family_verdict(results, tuple(names))
        lines.append(f"- **{family}**: {claim['verdict']} ({claim['reason']}).")
    note = _encoder_vs_classifier(results)
    if note:
        lines += ["", note]
    if curves:
        plot_roc(curves, root / FIGURE, title="Stronger attacks (log-log)")
        lines += ["", f"![{Path(FIGURE).stem}]({FIGURE})"]
    return "\n".join(lines) + "\n"
