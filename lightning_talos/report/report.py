"""``report.md`` from ``results.json``: the paper-style table, figures, and the three claims
stated from the numbers with their margins and intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_talos.errors import UserError
from lightning_talos.pipeline.stages import PAPER_METHODS, method_labels
from lightning_talos.report.plots import plot_aia_bars, plot_roc, plot_tradeoff

METHODS = PAPER_METHODS
LABELS = method_labels()
#: How many points of task accuracy Talos may lose and still "keep" utility.
UTILITY_TOLERANCE = 0.03


def load_results(root: Path) -> dict[str, Any]:
    """Read ``<root>/results.json``.

    Raises:
        UserError: when it is missing or not JSON.
    """
    path = root / "results.json"
    if not path.is_file():
        raise UserError(f"no results.json in {root}: run `lightning-talos audit` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None


def best_attack(mia: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The membership attack with the highest accuracy on the target."""
    if not mia:
        return None
    name = max(mia, key=lambda k: mia[k]["acc"])
    return name, mia[name]


def strongest_probe(aia: dict[str, Any] | None) -> dict[str, Any] | None:
    """The attribute probe with the highest accuracy, with the baseline attached."""
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


def table(results: dict[str, Any]) -> str:
    """The paper-style table: one row per model; each MIA cell is acc / AUC / TPR@0.1%FPR."""
    spread = results.get("spread", {})
    attacks: list[str] = []
    for method in METHODS:
        for name in _get(results, method, "mia") or {}:
            if name not in attacks:
                attacks.append(name)
    head = ["model", "task acc", "gap", *[f"{a} (acc/AUC/TPR@0.1%)" for a in attacks],
            "AIA acc (strongest)", "AIA baseline"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in METHODS:
        entry = results.get(method)
        if not entry:
            continue
        s = spread.get(method) or {}
        row = [
            LABELS[method],
            _fmt(_get(entry, "utility", "test_acc"), _get(s, "utility", "test_acc")),
            _fmt(_get(entry, "utility", "gap"), _get(s, "utility", "gap")),
        ]
        for name in attacks:
            a = _get(entry, "mia", name)
            row.append(
                "–" if a is None else
                f"{a['acc']:.3f} / {a['auc']:.3f} / {a['tpr_at_0p1pct_fpr']:.3f}"
            )  # fmt: skip
        probe = strongest_probe(entry.get("aia"))
        row.append(f"{_fmt(probe['acc'])} ({probe['name']})" if probe else "–")
        row.append(_fmt(probe["majority_baseline"]) if probe else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def claims(results: dict[str, Any]) -> list[str]:
    """The paper's three claims, each judged from this run's numbers."""
    sup, con, tal = (results.get(m) or {} for m in METHODS)
    return [_claim_mia(sup, con), _claim_aia(sup, con), _claim_talos(con, tal)]


def _separated(high: dict[str, Any], low: dict[str, Any]) -> bool:
    return high["ci95"]["acc"][0] > low["ci95"]["acc"][1]


def _claim_mia(sup: dict[str, Any], con: dict[str, Any]) -> str:
    s, c = best_attack(sup.get("mia")), best_attack(con.get("mia"))
    if not s or not c:
        return "1. Membership inference: not measured (missing MIA results)."
    margin = s[1]["acc"] - c[1]["acc"]
    verdict = _verdict(margin > 0, _separated(s[1], c[1]))
    return (
        f"1. **Contrastive models leak less membership: {verdict}.** Strongest attack on the "
        f"supervised model: {s[0]} at {s[1]['acc']:.3f} {_ci(s[1])}; on the contrastive "
        f"model: {c[0]} at {c[1]['acc']:.3f} {_ci(c[1])} (margin {margin:+.3f}). Train-test "
        f"gaps: supervised {_fmt(_get(sup, 'utility', 'gap'))}, contrastive "
        f"{_fmt(_get(con, 'utility', 'gap'))}."
    )


def _claim_aia(sup: dict[str, Any], con: dict[str, Any]) -> str:
    s, c = strongest_probe(sup.get("aia")), strongest_probe(con.get("aia"))
    if not s or not c:
        return "2. Attribute inference: not measured (this dataset has no sensitive attribute)."
    margin = c["acc"] - s["acc"]
    verdict = _verdict(margin > 0, _separated(c, s))
    return (
        f"2. **Contrastive models leak more attributes: {verdict}.** Strongest probe on the "
        f"contrastive model: {c['name']} at {c['acc']:.3f} {_ci(c)}; on the supervised model: "
        f"{s['name']} at {s['acc']:.3f} {_ci(s)} (margin {margin:+.3f}; majority baseline "
        f"{c['majority_baseline']:.3f})."
    )


def _claim_talos(con: dict[str, Any], tal: dict[str, Any]) -> str:
    c, t = strongest_probe(con.get("aia")), strongest_probe(tal.get("aia"))
    if not c or not t:
        return "3. Talos: not measured (no Talos results)."
    base = c["majority_baseline"]
    lowered = t["acc"] < c["acc"]
    drop = _get(con, "utility", "test_acc") - _get(tal, "utility", "test_acc")
    kept = drop <= UTILITY_TOLERANCE
    mia_c, mia_t = best_attack(con.get("mia")), best_attack(tal.get("mia"))
    mia_ok = mia_c is None or mia_t is None or mia_t[1]["acc"] <= mia_c[1]["ci95"]["acc"][1]
    verdict = _verdict(lowered and kept and mia_ok, _separated(c, t) and kept and mia_ok)
    parts = (
        f"attribute inference lowered: {_yes(lowered)}"
        f"{' (intervals separated)' if _separated(c, t) else ''}; "
        f"task accuracy kept within {UTILITY_TOLERANCE}: {_yes(kept)}; "
        f"membership inference not worse: {_yes(mia_ok)}"
    )
    text = (
        f"3. **Talos lowers attribute inference while keeping utility and membership privacy: "
        f"{verdict}** ({parts}). Strongest probe: Talos {t['acc']:.3f} {_ci(t)} ({t['name']}) vs "
        f"contrastive {c['acc']:.3f} {_ci(c)}, baseline {base:.3f} (excess over the baseline "
        f"{t['acc'] - base:+.3f} vs {c['acc'] - base:+.3f}). Task accuracy "
        f"{_get(tal, 'utility', 'test_acc'):.3f} vs {_get(con, 'utility', 'test_acc'):.3f} "
        f"(drop {drop:+.3f}, tolerance {UTILITY_TOLERANCE})."
    )
    if mia_c and mia_t:
        text += (
            f" Strongest MIA: Talos {mia_t[1]['acc']:.3f} vs contrastive {mia_c[1]['acc']:.3f} "
            f"{_ci(mia_c[1])}."
        )
    return text


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _verdict(direction: bool, separated: bool) -> str:
    if direction and separated:
        return "holds (margin outside the 95% intervals)"
    if direction:
        return "direction holds, but the 95% intervals overlap"
    return "does not hold on this run"


def figures(results: dict[str, Any], root: Path) -> list[Path]:
    """roc.png (best MIA per model, log-log) and aia.png (AIA vs baseline)."""
    out: list[Path] = []
    curves = {}
    for method in METHODS:
        best = best_attack(_get(results, method, "mia"))
        if best and best[1].get("roc"):
            curves[f"{LABELS[method]}: {best[0]}"] = best[1]
    if curves:
        out.append(plot_roc(curves, root / "roc.png", title="Strongest MIA per model"))
    bars = {}
    for method in METHODS:
        probe = strongest_probe(_get(results, method, "aia"))
        if probe:
            lo, hi = probe["ci95"]["acc"]
            bars[LABELS[method]] = {"acc": probe["acc"], "lo": lo, "hi": hi,
                                    "majority_baseline": probe["majority_baseline"]}  # fmt: skip
    if bars:
        out.append(plot_aia_bars(bars, root / "aia.png"))
    return out


def render(results: dict[str, Any], figure_paths: list[Path]) -> str:
    meta = results.get("meta", {})
    seeds = meta.get("seeds", [])
    lines = [
        f"# Privacy audit: {meta.get('dataset')} / {meta.get('backbone')}",
        "",
        f"Seeds {seeds}; image size {meta.get('image_size')}; quarter size "
        f"{meta.get('quarter_size')}; commit {meta.get('git_commit')}.",
        "Numbers are on the target model (attacks calibrated on the shadow); 95% bootstrap "
        "intervals in brackets." + (" Cells show mean±std over seeds." if len(seeds) > 1 else ""),
        "",
        table(results),
        "",
        _resolution_note(results),
        "",
        "## The paper's claims on this run",
        "",
        *claims(results),
        "",
        "## Figures",
        "",
        *[f"![{p.stem}]({p.name})" for p in figure_paths],
        "",
    ]
    return "\n".join(lines)


def _resolution_note(results: dict[str, Any]) -> str:
    """Say how finely the low-FPR columns can be read: below 1/N non-members they cannot."""
    sizes = sorted(
        {a["n_nonmembers"] for m in METHODS for a in (_get(results, m, "mia") or {}).values()
         if a.get("n_nonmembers")}
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
    path.write_text(render(results, figures(results, root)))
    return path


def tradeoff_points(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Talos (lambda, AIA accuracy of the strongest probe, task accuracy) of each run."""
    points = []
    for results in runs:
        probe = strongest_probe(_get(results, "talos", "aia"))
        test_acc = _get(results, "talos", "utility", "test_acc")
        lam = _get(results, "meta", "talos_lambda")
        if probe and test_acc is not None and lam is not None:
            points.append({"lambda": lam, "aia_acc": probe["acc"], "test_acc": test_acc})
    return points


def compare(roots: list[Path]) -> str:
    """Headline numbers of several runs side by side (markdown).

    When the runs differ in ``talos.lambda`` (a sweep: one ``run.name`` per lambda), the
    privacy-utility curve is drawn to ``tradeoff.png`` beside the first run.
    """
    runs = [load_results(root) for root in roots]
    points = tradeoff_points(runs)
    if len({p["lambda"] for p in points}) > 1:
        plot_tradeoff(points, roots[0].parent / "tradeoff.png")
    head = "| run | model | task acc | gap | best MIA acc | best MIA AUC | AIA acc | baseline |"
    lines = [head, "|" + "---|" * 8]
    for root, results in zip(roots, runs):
        for method in METHODS:
            entry = results.get(method)
            if not entry:
                continue
            best = best_attack(entry.get("mia"))
            probe = strongest_probe(entry.get("aia"))
            lines.append(
                f"| {root} | {LABELS[method]} | {_fmt(_get(entry, 'utility', 'test_acc'))} | "
                f"{_fmt(_get(entry, 'utility', 'gap'))} | "
                f"{_fmt(best[1]['acc'] if best else None)} | "
                f"{_fmt(best[1]['auc'] if best else None)} | "
                f"{_fmt(probe['acc'] if probe else None)} | "
                f"{_fmt(probe['majority_baseline'] if probe else None)} |"
            )
    return "\n".join(lines)
