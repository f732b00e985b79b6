"""``report.md`` and the log-log ROC of an ``audit-encoder`` run (``stages/external.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_talos.analysis.names import PAPER_ATTACKS
from lightning_talos.analysis.plots import plot_roc

MIA, AIA = PAPER_ATTACKS


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(entry: dict[str, Any], key: str) -> str:
    ci = (entry.get("ci95") or {}).get(key)
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _mia_rows(mia: dict[str, Any]) -> list[str]:
    rows = [
        "| attack | AUC [95% CI] | TPR@1%FPR [CI] | TPR@0.1%FPR [CI] | advantage | acc "
        "| threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in mia.items():
        rows.append(
            f"| {name} | {_num(e['auc'])}{_ci(e, 'auc')} "
            f"| {_num(e['tpr_at_1pct_fpr'])}{_ci(e, 'tpr_at_1pct_fpr')} "
            f"| {_num(e['tpr_at_0p1pct_fpr'])}{_ci(e, 'tpr_at_0p1pct_fpr')} "
            f"| {_num(e['advantage'])} | {_num(e.get('acc'))} | {e.get('threshold_from', '-')} |"
        )
    return rows


def _aia_rows(aia: dict[str, Any] | None) -> list[str]:
    if not aia:
        return ["The dataset has no sensitive attribute: no attribute inference."]
    if "skipped" in aia:
        return [f"Not measured: {aia['skipped']}."]
    rows = ["| probe | acc [95% CI] | balanced acc | majority baseline |", "|---|---|---|---|"]
    for name, p in aia.items():
        if isinstance(p, dict):
            rows.append(
                f"| {name} | {_num(p['acc'])}{_ci(p, 'acc')} | {_num(p['balanced_acc'])} "
                f"| {_num(p['majority_baseline'])} |"
            )
    return rows


def _utility(util: dict[str, Any]) -> str:
    if "skipped" in util:
        return f"Not measured: {util['skipped']}."
    return (
        "Task accuracy of a logistic probe fitted on the members' embeddings, scored on the "
        f"non-members: {_num(util['test_acc'])}{_ci(util, 'acc')} (majority baseline "
        f"{_num(util['majority_baseline'])})."
    )


def render_external(results: dict[str, Any], figure: str = "roc.png") -> str:
    """The markdown report of one external encoder audit."""
    ext, meta = results["external"], results["meta"]
    enc = meta["encoder"]
    util = ext["utility"]
    lines = [
        f"# Privacy audit of `{enc['checkpoint']}`",
        "",
        f"- encoder: {enc['loaded_as']}; embedding width {enc['dim']}; sha256 "
        f"`{enc['sha256'][:16]}`",
        f"- data: {meta['dataset']} at {meta['image_size']} px; {meta['n_members']} members, "
        f"{meta['n_nonmembers']} non-members; list hashes "
        + ", ".join(f"{k} `{v}`" for k, v in meta["lists_hash"].items()),
        f"- views per image: {meta['views']}; bootstrap resamples: {meta['bootstrap'][MIA]}",
        "",
        "## Membership inference (EncoderMI similarity of augmented views)",
        "",
        *_mia_rows(ext[MIA]),
        "",
        "AUC 0.5 is chance. Without a shadow encoder the score is threshold-free (no accuracy):",
        "a threshold chosen on the audited members would flatter the attack. With "
        f"{meta['n_nonmembers']} non-members, FPRs below 1/{meta['n_nonmembers']} are read "
        "from the ROC's first point and are not resolved.",
        "",
        f"![log-log ROC]({figure})",
        "",
        "## Attribute inference (probes fitted on members, scored on non-members)",
        "",
        *_aia_rows(ext[AIA]),
        "",
        "## Utility",
        "",
        _utility(util),
        "",
    ]
    return "\n".join(lines)


def write_external_report(out_dir: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``roc.png`` into ``out_dir``; returns both paths."""
    mia = results["external"][MIA]
    png = plot_roc(mia, out_dir / "roc.png", title="Membership of the encoder")
    report = out_dir / "report.md"
    report.write_text(render_external(results, png.name))
    return report, png
