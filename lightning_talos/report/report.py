"""``report.md`` from ``results.json``: the paper-style table, figures, and the three claims as
judged in ``results.json``'s ``claims`` (every attack and probe they rest on).

``results.json`` is validated before anything is written: a bad file is one ``UserError`` line
naming the field, and no report or figure is overwritten."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_talos.analysis.plots import plot_aia_bars, plot_roc, plot_tradeoff
from lightning_talos.errors import UserError
from lightning_talos.report.frontier import frontier_compare, frontier_section
from lightning_talos.report.privacy import plot_privacy_history
from lightning_talos.report.profile import profile_table
from lightning_talos.report.stronger import stronger_attacks_section
from lightning_talos.stages.registry import (
    PAPER_ATTACKS,
    PAPER_METHODS,
    method_labels,
    method_names,
)
from lightning_talos.stages.results import check_results

_, _, DEFENCE = PAPER_METHODS
MIA, AIA = PAPER_ATTACKS


def load_results(root: Path) -> dict[str, Any]:
    """Read and validate ``<root>/results.json``.

    Raises:
        UserError: when it is missing, not JSON, or does not match the schema (names the field).
    """
    path = root / "results.json"
    if not path.is_file():
        raise UserError(f"no results.json in {root}: run `lightning-talos audit` first")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    return check_results(results, path)


def best_attack(mia: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The membership attack with the highest accuracy on the target.

    For display only (figures, ``compare``): no verdict is decided on it.
    """
    if not mia:
        return None
    name = max(mia, key=lambda k: mia[k]["acc"])
    return name, mia[name]


def strongest_probe(aia: dict[str, Any] | None) -> dict[str, Any] | None:
    """The attribute probe with the highest accuracy, with the baseline attached.

    For display only (figures, the lambda trade-off): no verdict is decided on it.
    """
    if not aia:
        return None
    name = aia.get("strongest") or max(
        (k for k in aia if isinstance(aia[k], dict)), key=lambda k: aia[k]["acc"]
    )
    return {"name": name, **aia[name], "majority_baseline": aia["majority_baseline"]}


def _fmt(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if not spread else f"{value:.3f}±{spread:.3f}"


def _ci(entry: dict[str, Any], key: str = "acc") -> str:
    lo, hi = entry["ci95"][key]
    return f"[{lo:.3f}, {hi:.3f}]"


def _get(tree: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _probes(aia: dict[str, Any] | None) -> list[str]:
    return [k for k, v in (aia or {}).items() if isinstance(v, dict)]


def table(results: dict[str, Any]) -> str:
    """The paper-style table: one row per model, every attack and every probe.

    Each MIA cell is acc / AUC / TPR@0.1%FPR; each AIA cell is the probe's accuracy.
    """
    spread = results.get("spread", {})
    attacks: list[str] = []
    probes: list[str] = []
    for method in method_names():
        for name in _get(results, method, MIA) or {}:
            if name not in attacks:
                attacks.append(name)
        for name in _probes(_get(results, method, AIA)):
            if name not in probes:
                probes.append(name)
    head = ["model", "task acc", "gap", *[f"{a} (acc/AUC/TPR@0.1%)" for a in attacks],
            *[f"AIA {p}" for p in probes], "AIA baseline"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in method_names():
        entry = results.get(method)
        if not entry:
            continue
        s = spread.get(method) or {}
        row = [
            method_labels()[method],
            _fmt(_get(entry, "utility", "test_acc"), _get(s, "utility", "test_acc")),
            _fmt(_get(entry, "utility", "gap"), _get(s, "utility", "gap")),
        ]
        for name in attacks:
            a = _get(entry, MIA, name)
            row.append(
                "–" if a is None else
                f"{a['acc']:.3f} / {a['auc']:.3f} / {a['tpr_at_0p1pct_fpr']:.3f}"
            )  # fmt: skip
        for name in probes:
            acc = _get(entry, AIA, name, "acc")
            row.append(_fmt(acc, _get(s, AIA, name, "acc")) if acc is not None else "–")
        row.append(_fmt(_get(entry, AIA, "majority_baseline")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def claims(results: dict[str, Any]) -> list[str]:
    """The paper's three claims as markdown, read from ``results["claims"]`` (see
    :func:`~lightning_talos.analysis.claims.judge_claims`): the verdict, how many seeds it rests
    on, and every attack and probe it was judged on."""
    verdicts = results.get("claims") or {}
    return [_claim_text(key, verdicts[key]) for key in sorted(verdicts)]


def seed_note(claim: dict[str, Any]) -> str:
    """How many seeds a verdict rests on, and what its intervals cover."""
    if claim["seeds"] == 1:
        return (
            "single-seed verdict: the intervals cover only the evaluation sample of one "
            "training seed"
        )
    return f"verdict over {claim['seeds']} seeds: t-intervals over the seeds' differences"


def _claim_text(key: str, claim: dict[str, Any]) -> str:
    lines = [
        f"{key}. **{claim['claim']}: {claim['verdict']}** ({seed_note(claim)}). "
        f"{claim['reason'][:1].upper()}{claim['reason'][1:]}."
    ]
    basis = claim.get("basis") or {}
    if basis:
        declared = "; ".join(f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in basis.items())
        lines.append(f"   - declared basis: {declared}")
    for name, test in claim["tests"].items():
        lines += _test_lines(name, test, "   ")
    for family in (claim.get("families") or {}).values():
        lines.append(
            f"   - **claim {key} under {family['label']}: {family['verdict']}** "
            f"({family['reason']})"
        )
        for name, test in family["tests"].items():
            lines += _test_lines(name, test, "     ")
    return "\n".join(lines)


def _test_lines(name: str, test: dict[str, Any], indent: str) -> list[str]:
    state = _STATES.get(test.get("outcome"), "")
    if not state:  # results written before outcomes were recorded
        state = {True: "shown", False: "not shown", None: "not evaluated"}[test.get("passes")]
    lines = [f"{indent}- {name}: {test['rule']}: **{state}**{_context(test)}"]
    for item_name, item in test["items"].items():
        lines.append(f"{indent}  - {item_name}: {_item_text(item)}")
    return lines


#: A test's outcome in words.
_STATES = {
    "shown": "shown",
    "opposite": "the opposite shown",
    "unclear": "not shown (an interval overlaps the line)",
    "missing": "not evaluated",
}


def _context(test: dict[str, Any]) -> str:
    out = ""
    unmatched = test.get("unmatched")
    if isinstance(unmatched, list) and unmatched:
        out += f" (not judged, on one model only: {', '.join(map(str, unmatched))})"
    baseline = test.get("majority_baseline")
    if isinstance(baseline, dict) and baseline:
        values = ", ".join(f"{m} {v:.3f}" for m, v in baseline.items() if _is_number(v))
        out += f" (majority-class baseline: {values})"
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _item_text(item: dict[str, Any]) -> str:
    values = " vs ".join(f"{m} {item['values'][m]:.3f}" for m in item["models"])
    lo, hi = item["ci95"]
    return (
        f"{values}, difference {item['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
        f"({item.get('method', '')}): {_ITEM_STATES.get(item.get('outcome'), _yes(item))}"
    )


_ITEM_STATES = {"shown": "yes", "opposite": "opposite", "unclear": "overlaps"}


def _yes(item: dict[str, Any]) -> str:
    return "yes" if item["passes"] else "no"


def figures(results: dict[str, Any], root: Path) -> list[Path]:
    """roc.png (best MIA per model, log-log) and aia.png (AIA vs baseline)."""
    out: list[Path] = []
    curves = {}
    for method in method_names():
        best = best_attack(_get(results, method, MIA))
        if best and best[1].get("roc"):
            curves[f"{method_labels()[method]}: {best[0]}"] = best[1]
    if curves:
        out.append(plot_roc(curves, root / "roc.png", title="Strongest MIA per model"))
    bars = {}
    for method in method_names():
        probe = strongest_probe(_get(results, method, AIA))
        if probe:
            lo, hi = probe["ci95"]["acc"]
            bars[method_labels()[method]] = {"acc": probe["acc"], "lo": lo, "hi": hi,
                                    "majority_baseline": probe["majority_baseline"]}  # fmt: skip
    if bars:
        out.append(plot_aia_bars(bars, root / "aia.png"))
    privacy = plot_privacy_history(root)  # trainer.privacy_audit_every_n_epochs
    if privacy is not None:
        out.append(privacy)
    return out


def render(results: dict[str, Any], figure_paths: list[Path]) -> str:
    meta = results.get("meta", {})
    seeds = meta.get("seeds", [])
    lines = [
        f"# Privacy audit: {meta.get('dataset')} / {meta.get('backbone')}",
        "",
        f"Seeds {seeds}; image size {meta.get('image_size')}; quarter size "
        f"{meta.get('quarter_size')}; commit {meta.get('git_commit')}.",
        "Numbers are on the target model (attacks calibrated on the shadow)."
        + (" Cells show mean±std over seeds." if len(seeds) > 1 else ""),
        "",
        table(results),
        "",
        _resolution_note(results),
        "",
        "## The paper's claims on this run",
        "",
        "Each claim is judged on the attacks and probes declared in the config before the run "
        "(`claims.*`; none is chosen on the target's numbers): it holds when shown for every "
        "one, does not hold when one shows the opposite, is inconclusive when an interval "
        "overlaps the line, and is not evaluated when evidence is missing. Every other attack "
        "gets its own verdict line (claims 1 and 3).",
        "",
        *claims(results),
        "",
        *_profile_section(results),
        "## Figures",
        "",
        *[f"![{p.stem}]({p.name})" for p in figure_paths],
        "",
    ]
    return "\n".join(lines)


def _profile_section(results: dict[str, Any]) -> list[str]:
    """The per-stage profile under its heading, or nothing when no stage recorded one."""
    profile = profile_table(results)
    return ["## Where the time went", "", profile, ""] if profile else []


def _resolution_note(results: dict[str, Any]) -> str:
    """Say how finely the low-FPR columns can be read: below 1/N non-members they cannot."""
    sizes = sorted(
        {int(a["n_nonmembers"]) for m in method_names()
         for a in (_get(results, m, MIA) or {}).values() if a.get("n_nonmembers")}
    )  # fmt: skip
    if not sizes:
        return ""
    return (
        f"Low-FPR columns: the attacks were scored on {', '.join(map(str, sizes))} non-members "
        f"each, so FPRs below 1/{sizes[0]} = {1 / sizes[0]:.4f} are read from the ROC's first "
        "point and are not resolved by this run; the label-only attacks query the model and run "
        "on a seeded subset (mia.label_only_samples)."
    )


def write_report(root: Path) -> Path:
    """Write ``report.md`` and its figures beside ``results.json``; returns the report path."""
    results = load_results(root)
    path = root / "report.md"
    path.write_text(
        render(results, figures(results, root))
        + frontier_section(results, root)
        + stronger_attacks_section(results, root)
    )
    return path


def verdict_cell(claim: dict[str, Any]) -> str:
    """A claim's verdict with its other attack families' verdicts beside it (one cell)."""
    families = claim.get("families") or {}
    others = "; ".join(f"{f['label']}: {f['verdict']}" for f in families.values())
    return claim["verdict"] + (f" ({others})" if others else "")


def tradeoff_points(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Talos (lambda, AIA accuracy of the strongest probe, task accuracy) of each run."""
    points = []
    for results in runs:
        probe = strongest_probe(_get(results, DEFENCE, AIA))
        test_acc = _get(results, DEFENCE, "utility", "test_acc")
        lam = _get(results, "meta", "talos_lambda")
        if probe and test_acc is not None and lam is not None:
            points.append({"lambda": lam, "aia_acc": probe["acc"], "test_acc": test_acc})
    return points


def compare(roots: list[Path]) -> str:
    """Headline numbers of several runs side by side (markdown).

    When the runs differ in ``talos.lambda`` (a sweep: one ``run.name`` per lambda), the
    privacy-utility curve is drawn to ``tradeoff.png`` beside the first run.
    """
    runs = [load_results(root) for root in roots]  # all validated before anything is drawn
    points = tradeoff_points(runs)
    if len({p["lambda"] for p in points}) > 1:
        plot_tradeoff(points, roots[0].parent / "tradeoff.png")
    head = "| run | model | task acc | gap | max MIA acc | max MIA AUC | max AIA acc | baseline |"
    lines = [head, "|" + "---|" * 8]
    for root, results in zip(roots, runs):
        for method in method_names():
            entry = results.get(method)
            if not entry:
                continue
            best = best_attack(entry.get(MIA))
            probe = strongest_probe(entry.get(AIA))
            label = method_labels()[method]
            lines.append(
                f"| {root} | {label} | {_fmt(_get(entry, 'utility', 'test_acc'))} | "
                f"{_fmt(_get(entry, 'utility', 'gap'))} | "
                f"{_fmt(best[1]['acc'] if best else None)} | "
                f"{_fmt(best[1]['auc'] if best else None)} | "
                f"{_fmt(probe['acc'] if probe else None)} | "
                f"{_fmt(probe['majority_baseline'] if probe else None)} |"
            )
    lines += ["", "| run | seeds | claim 1 | claim 2 | claim 3 |", "|---|---|---|---|---|"]
    for root, results in zip(roots, runs):
        verdicts = results["claims"]
        seeds = sorted({verdicts[k]["seeds"] for k in ("1", "2", "3")})
        cells = " | ".join(verdict_cell(verdicts[k]) for k in ("1", "2", "3"))
        lines.append(f"| {root} | {'/'.join(map(str, seeds))} | {cells} |")
    lines += frontier_compare(roots, runs)
    return "\n".join(lines)
