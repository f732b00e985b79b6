"""The paper's three claims judged from ``results.json``'s numbers: :func:`judge_claims`.

Rules, fixed before any number is seen:

* **A declared basis, never chosen from results.** Each claim is judged on the attacks and
  probes declared before anything runs (``claims.membership_attacks``, ``claims.attribute_probes``,
  recorded in ``meta.claims_basis``; the paper's by default: NN, the four metric attacks and
  label-only; the MLP, logistic and kNN probes). The verdict is **holds** when it is shown for
  every declared item (an intersection-union test: each comparison is a 95% test, and requiring
  all of them keeps the claim's error rate at 5% without a multiple-comparison correction, while
  picking the strongest attack on the target's own numbers would bias it upwards); **does not
  hold** when some declared item shows the opposite (its interval entirely on the wrong side of
  the line: below 0, or above the utility tolerance); **inconclusive** when nothing contradicts it
  but some item's interval overlaps the line; **not evaluated** when evidence is missing (a
  declared attack or probe without results for both models, or no intervals). A refutation
  outranks missing evidence. Every other attack family that ran (augmentation, LiRA, RMIA,
  encoder-level) gets its own verdict for claims 1 and 3 under ``families`` (claim 3 under a
  family: its attribute and utility tests with that family as the membership evidence), so
  nothing is hidden and nothing outside the basis moves the headline. An encoder that hides the
  attribute from one kind of probe only (Elazar & Goldberg 2018) does not pass claim 3.
* **Intervals.** With one seed, a comparison of two models is "shown" when their 95% bootstrap
  intervals (over the evaluation sample) are separated; the difference is reported with the
  interval ``[lo_a - hi_b, hi_a - lo_b]``, which excludes 0 exactly when they are separated.
  The utility drop of claim 3 uses a paired bootstrap over the target-test quarter (both models
  are scored on the same samples), from the per-sample correctness the attack stages record.
  Such a verdict is single-seed: it says nothing about training randomness. With several seeds
  the comparison uses a Student-t interval over the seeds' differences (one difference per seed,
  mean +- t_{0.975, k-1} s / sqrt(k)). Each seed draws its own splits and trains its own models,
  so each seed's difference carries both the training noise and the evaluation-sample noise,
  independently across seeds: the spread between seeds covers both levels. It is chosen over a
  two-level bootstrap because with the 2-5 seeds an audit affords, resampling seeds sees only a
  handful of distinct sets and gives intervals that are too narrow; the t-interval is exact for
  normal seed-level differences and honest about having few of them (wide for k = 2 or 3).
* **Claim 3 needs its evidence.** Missing MIA, AIA or utility numbers give "not evaluated".
  "Attribute inference lowered" needs separated intervals for every probe (raised: the
  opposite); "utility kept" needs the drop's whole interval at or below
  :data:`UTILITY_TOLERANCE` (a non-inferiority test; the whole interval above it is the
  opposite); the paper states no tolerance for membership, so "membership not worse" is shown
  unless some attack's Talos-minus-contrastive interval lies entirely above 0 (the opposite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import stdtrit

from lightning_talos.analysis.names import PAPER_ATTACKS, PAPER_METHODS

SUPERVISED, CONTRASTIVE, TALOS = PAPER_METHODS
MIA, AIA = PAPER_ATTACKS
#: The models as the reasons name them.
_NAMES = {SUPERVISED: SUPERVISED, CONTRASTIVE: CONTRASTIVE, TALOS: "Talos"}

VERDICTS = ("holds", "does not hold", "inconclusive", "not evaluated")
#: The paper's basis (``claims.*`` defaults): its membership attacks (NN, the four metric
#: attacks, label-only) and the attribute probes the report runs.
DEFAULT_BASIS = {
    "membership_attacks": ["nn", "metric", "label_only"],
    "attribute_probes": ["mlp", "logistic", "knn"],
}
#: Display names of the configured attacks, in the order their verdict lines are shown.
FAMILY_LABELS = {
    "nn": "NN",
    "metric": "metric",
    "label_only": "label-only",
    "augmentation": "augmentation",
    "lira": "LiRA",
    "rmia": "RMIA",
    "encoder": "encoder-level",
}
#: How many points of task accuracy Talos may lose and still "keep" utility.
UTILITY_TOLERANCE = 0.03
#: Bootstrap resamples of the paired utility drop (the draw is seeded: the judge is pure).
N_BOOTSTRAP = 4000
STATEMENTS = {
    "1": "Contrastive models leak less membership than supervised models",
    "2": "Contrastive models leak more attributes than supervised models",
    "3": "Talos lowers attribute inference while keeping utility and membership privacy",
}

Estimate = tuple[float, list[float]]  # (value, [lo, hi] 95% interval over the sample)


def encode_correct(predicted: Any, labels: Any) -> str:
    """Per-sample correctness as a compact string of ``0``/``1`` characters.

    Args:
        predicted: ``[N]`` predicted labels (array or CPU tensor).
        labels: ``[N]`` true labels.

    Returns:
        A string of length ``N``; character ``i`` is ``1`` when sample ``i`` is correct.
    """
    correct = np.asarray(predicted).ravel() == np.asarray(labels).ravel()
    return (correct.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def decode_correct(text: str) -> np.ndarray:
    """The inverse of :func:`encode_correct`: ``bool [N]``.

    Raises:
        ValueError: If ``text`` holds a character other than ``0`` and ``1``.
    """
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")
    if codes.size and codes.max() > 1:
        raise ValueError("test_correct must hold only the characters 0 and 1")
    return codes.astype(bool)


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def seed_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed results a verdict rests on: ``per_seed`` when present, else the run."""
    per_seed = results.get("per_seed")
    return list(per_seed) if per_seed else [results]


def t_interval(differences: list[float]) -> list[float]:
    """Student-t 95% interval of the mean of ``k >= 2`` seed-level differences.

    ``mean +- t_{0.975, k-1} * s / sqrt(k)`` with ``s`` the sample standard deviation.

    Raises:
        ValueError: If fewer than two differences are given.
    """
    k = len(differences)
    if k < 2:
        raise ValueError(f"a t-interval needs at least 2 seeds, got {k}")
    d = np.asarray(differences, dtype=float)
    half = float(stdtrit(k - 1, 0.975) * d.std(ddof=1) / math.sqrt(k))
    return [float(d.mean()) - half, float(d.mean()) + half]


def _compare(pairs: list[tuple[Estimate, Estimate]], names: tuple[str, str]) -> dict[str, Any]:
    """Difference ``a - b`` of two models' numbers with its 95% interval (see module doc).

    Args:
        pairs: One ``(a, b)`` pair of estimates per seed.
        names: The models' names, for the ``values`` field.

    Returns:
        ``models`` (``[a, b]``: the difference is ``a - b``), ``values`` (mean over seeds of
        each), ``difference``, ``ci95``, ``seeds``, ``method`` and, with several seeds,
        ``per_seed`` (each seed's difference).
    """
    diffs = [a[0] - b[0] for a, b in pairs]
    out: dict[str, Any] = {
        "models": list(names),
        "values": {
            names[0]: float(np.mean([a[0] for a, _ in pairs])),
            names[1]: float(np.mean([b[0] for _, b in pairs])),
        },
        "difference": float(np.mean(diffs)),
        "seeds": len(pairs),
    }
    if len(pairs) == 1:
        (value_a, (lo_a, hi_a)), (value_b, (lo_b, hi_b)) = pairs[0]
        out["ci95"] = [lo_a - hi_b, hi_a - lo_b]
        out["method"] = "separation of the two 95% bootstrap intervals, one seed"
    else:
        out["ci95"] = t_interval(diffs)
        out["per_seed"] = diffs
        out["method"] = f"t-interval over {len(pairs)} seeds' differences"
    return out


def _estimate(entry: Any) -> Estimate | None:
    """``(acc, ci95.acc)`` of an attack or probe entry, or None when absent or malformed."""
    acc, ci = _get(entry, "acc"), _get(entry, "ci95", "acc")
    if not isinstance(acc, (int, float)) or not isinstance(ci, list) or len(ci) != 2:
        return None
    return float(acc), [float(ci[0]), float(ci[1])]


def attack_family(entry: str) -> str:
    """The configured attack (``attacks=[...]`` name) a ``mia`` entry belongs to:
    ``metric_entropy`` -> ``metric``, ``encoder_lira`` -> ``encoder``, else the entry itself."""
    for prefix in ("metric", "encoder"):
        if entry.startswith(prefix + "_"):
            return prefix
    return entry


def claims_basis(results: dict[str, Any]) -> dict[str, list[str]]:
    """The declared basis recorded in ``meta.claims_basis`` (the paper's when not recorded)."""
    recorded = _get(results, "meta", "claims_basis")
    basis = {key: list(value) for key, value in DEFAULT_BASIS.items()}
    if isinstance(recorded, dict):
        for key in basis:
            if isinstance(recorded.get(key), list):
                basis[key] = [str(v) for v in recorded[key]]
    return basis


def _names(runs: list[dict[str, Any]], methods: tuple[str, ...], kind: str) -> list[str]:
    """Attacks (``kind=MIA``) or probes (``AIA``) present for every method in some seed."""
    names: list[str] = []
    for run in runs:
        tables = [_get(run, m, kind) or {} for m in methods]
        for name, entry in tables[0].items():
            if (
                isinstance(entry, dict)
                and all(isinstance(t.get(name), dict) for t in tables)
                and name not in names
            ):
                names.append(name)
    return names


def _items(
    runs: list[dict[str, Any]], kind: str, a: str, b: str, keep: Callable[[str], bool]
) -> dict[str, dict[str, Any]]:
    """One comparison ``a - b`` per attack or probe of ``kind`` that ``keep`` admits, over the
    seeds having both."""
    items = {}
    for name in _names(runs, (a, b), kind):
        if not keep(name):
            continue
        pairs = []
        for run in runs:
            ea, eb = _estimate(_get(run, a, kind, name)), _estimate(_get(run, b, kind, name))
            if ea is not None and eb is not None:
                pairs.append((ea, eb))
        if pairs:
            items[name] = _compare(pairs, (a, b))
    return items


def _unmatched(
    runs: list[dict[str, Any]], kind: str, a: str, b: str, keep: Callable[[str], bool]
) -> list[str]:
    """Attacks or probes that one of the two models has and the other lacks (not judged)."""
    both = set(_names(runs, (a, b), kind))
    found = {n for r in runs for m in (a, b) for n in _names([r], (m,), kind) if keep(n)}
    return sorted(found - both - {"majority_baseline", "strongest"})


def _undeclared_missing(declared: list[str], items: dict[str, Any], family: Any) -> list[str]:
    """Declared attacks or probes with no judged item (no results for both models)."""
    have = {family(name) for name in items}
    return [name for name in declared if name not in have]


@dataclass(frozen=True)
class Rule:
    """How one test reads a difference interval ``[lo, hi]``.

    Args:
        text: The rule in words (shown in the report).
        shown: True when the interval shows the claim's side.
        opposite: True when the interval shows the other side.
    """

    text: str
    shown: Callable[[list[float]], bool]
    opposite: Callable[[list[float]], bool]


def _outcome(item: dict[str, Any], rule: Rule) -> str:
    ci = item["ci95"]
    if not all(math.isfinite(v) for v in ci):  # a NaN interval shows nothing either way
        return "unclear"
    if rule.shown(ci):
        return "shown"
    return "opposite" if rule.opposite(ci) else "unclear"


def _group(
    items: dict[str, dict[str, Any]],
    rule: Rule,
    missing: str,
    *,
    unmatched: list[str] | None = None,
    blocked: str | None = None,
    absent: list[str] | None = None,
) -> dict[str, Any]:
    """A test over every item, with its ``outcome``: ``opposite`` when some item shows the
    other side, else ``missing`` (no items, ``blocked`` or declared items ``absent``), else
    ``unclear`` when some item is unclear, else ``shown``. ``passes`` is True / False / None
    (not evaluated) for the same outcome.

    ``unmatched`` names attacks or probes only one model has: shown, never silently dropped.
    ``blocked`` (a reason) marks the test not evaluated although its items are shown: its
    intervals cannot be read (one seed without bootstrap).
    """
    for item in items.values():
        item["outcome"] = _outcome(item, rule)
        item["passes"] = item["outcome"] == "shown"
    group: dict[str, Any] = {"rule": rule.text, "items": items}
    if unmatched:
        group["unmatched"] = unmatched
    outcomes = {i["outcome"] for i in items.values()}
    reasons = [blocked] if blocked else []
    if not items:
        reasons.append(missing)
    if absent and items:  # with no items at all, `missing` already says it
        reasons.append(f"declared but without results for both models: {', '.join(absent)}")
    if "opposite" in outcomes and not blocked:
        group["outcome"] = "opposite"
    elif reasons:
        group["outcome"] = "missing"
        group["missing"] = "; ".join(reasons)
    else:
        group["outcome"] = "unclear" if "unclear" in outcomes else "shown"
    group["passes"] = {"shown": True, "missing": None}.get(group["outcome"], False)
    return group


def _no_intervals(runs: list[dict[str, Any]], kind: str) -> str | None:
    """Why one seed's ``kind`` numbers cannot be judged: their bootstrap was switched off."""
    if len(runs) == 1 and _get(runs[0], "meta", "bootstrap", kind) == 0:
        return f"{kind} intervals switched off ({kind}.bootstrap=0) on a single seed"
    return None


#: Interval entirely above 0: shown; entirely below 0: the opposite.
ABOVE_ZERO = (lambda ci: ci[0] > 0, lambda ci: ci[1] < 0)


def _baselines(runs: list[dict[str, Any]], methods: tuple[str, ...]) -> dict[str, float]:
    """Mean majority-class baseline of the attribute per model (for context)."""
    out = {}
    for method in methods:
        values = [_get(r, method, AIA, "majority_baseline") for r in runs]
        values = [v for v in values if isinstance(v, (int, float))]
        if values:
            out[method] = float(np.mean(values))
    return out


def _verdict(groups: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The claim's verdict and a one-line reason from its tests (see the module doc)."""

    def where(outcome: str) -> str:
        parts = []
        for name, g in groups.items():
            items = [i for i, v in g["items"].items() if v["outcome"] == outcome]
            if g["outcome"] == outcome:
                parts.append(f"{name} ({', '.join(items)})")
        return "; ".join(parts)

    outcomes = {g["outcome"] for g in groups.values()}
    if "opposite" in outcomes:
        return "does not hold", "the opposite is shown for " + where("opposite")
    if "missing" in outcomes:
        return "not evaluated", "; ".join(g["missing"] for g in groups.values() if "missing" in g)
    if "unclear" in outcomes:
        return "inconclusive", (
            "nothing contradicts it, but an interval overlaps the line for " + where("unclear")
        )
    return "holds", "shown for every " + " and every ".join(_unit(n) for n in groups)


def _unit(group: str) -> str:
    return {"membership": "attack", "attribute": "probe", "utility": "utility test"}[group]


def _claim(key: str, runs: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> dict:
    verdict, reason = _verdict(groups)
    counts = [i["seeds"] for g in groups.values() for i in g["items"].values()]
    return {
        "claim": STATEMENTS[key],
        "verdict": verdict,
        "reason": reason,
        "seeds": min(counts) if counts else len(runs),
        "tests": groups,
    }


def _membership_group(
    runs: list[dict[str, Any]], pair: tuple[str, str], rule: Rule, attacks: list[str]
) -> dict[str, Any]:
    """``pair[0] - pair[1]`` attack accuracy for the entries of the configured ``attacks``."""

    def keep(name: str) -> bool:
        return attack_family(name) in attacks

    items = _items(runs, MIA, *pair, keep)
    return _group(
        items,
        rule,
        f"no membership-inference results for both the {_NAMES[pair[0]]} and the "
        f"{_NAMES[pair[1]]} model",
        unmatched=_unmatched(runs, MIA, *pair, keep),
        blocked=_no_intervals(runs, MIA),
        absent=_undeclared_missing(attacks, items, attack_family),
    )


def _attribute_group(
    runs: list[dict[str, Any]], pair: tuple[str, str], rule: Rule, probes: list[str]
) -> dict[str, Any]:
    """``pair[0] - pair[1]`` probe accuracy for the declared ``probes``."""

    def keep(name: str) -> bool:
        return name in probes

    items = _items(runs, AIA, *pair, keep)
    group = _group(
        items,
        rule,
        f"no attribute-inference results for both the {_NAMES[pair[0]]} and the "
        f"{_NAMES[pair[1]]} model",
        unmatched=_unmatched(runs, AIA, *pair, keep),
        blocked=_no_intervals(runs, AIA),
        absent=_undeclared_missing(probes, items, lambda n: n),
    )
    group["majority_baseline"] = _baselines(runs, pair)
    return group


_CLAIM1 = Rule(
    "supervised minus contrastive attack accuracy: 95% interval above 0, for every attack",
    *ABOVE_ZERO,
)
_CLAIM2 = Rule(
    "contrastive minus supervised probe accuracy: 95% interval above 0, for every probe",
    *ABOVE_ZERO,
)
_CLAIM3_ATTRIBUTE = Rule(
    "contrastive minus Talos probe accuracy: 95% interval above 0 (lowered), for every probe",
    *ABOVE_ZERO,
)
_CLAIM3_UTILITY = Rule(
    f"contrastive minus Talos task accuracy: 95% interval at or below {UTILITY_TOLERANCE}",
    lambda ci: ci[1] <= UTILITY_TOLERANCE,
    lambda ci: ci[0] > UTILITY_TOLERANCE,
)
_CLAIM3_MEMBERSHIP = Rule(
    "Talos minus contrastive attack accuracy: 95% interval not entirely above 0, for every attack",
    lambda ci: not ci[0] > 0,
    lambda ci: ci[0] > 0,
)


def _claim_membership(runs: list[dict[str, Any]], attacks: list[str]) -> dict[str, Any]:
    group = _membership_group(runs, (SUPERVISED, CONTRASTIVE), _CLAIM1, attacks)
    return _claim("1", runs, {"membership": group})


def _claim_attribute(runs: list[dict[str, Any]], probes: list[str]) -> dict[str, Any]:
    group = _attribute_group(runs, (CONTRASTIVE, SUPERVISED), _CLAIM2, probes)
    return _claim("2", runs, {"attribute": group})


def _claim_talos(runs: list[dict[str, Any]], attacks: list[str], probes: list[str]) -> dict:
    attribute = _attribute_group(runs, (CONTRASTIVE, TALOS), _CLAIM3_ATTRIBUTE, probes)
    utility = _group(
        _utility_items(runs),
        _CLAIM3_UTILITY,
        "no task accuracy (or no target-test size) for both the contrastive and the Talos model",
    )
    utility["tolerance"] = UTILITY_TOLERANCE
    membership = _membership_group(runs, (TALOS, CONTRASTIVE), _CLAIM3_MEMBERSHIP, attacks)
    groups = {"attribute": attribute, "utility": utility, "membership": membership}
    return _claim("3", runs, groups)


def other_families(runs: list[dict[str, Any]], basis: list[str]) -> list[str]:
    """Configured attacks outside the basis that some model has results for, in a fixed order
    (:data:`FAMILY_LABELS`, then any other by name)."""
    found = {
        attack_family(name)
        for run in runs
        for method in PAPER_METHODS
        for name, entry in (_get(run, method, MIA) or {}).items()
        if isinstance(entry, dict)
    }
    found -= set(basis)
    order = list(FAMILY_LABELS)
    return sorted(found, key=lambda f: (order.index(f) if f in order else len(order), f))


def _with_families(
    claim: dict[str, Any], judge: Callable[[list[str]], dict], families: list[str]
) -> dict[str, Any]:
    """Claim ``claim`` plus one verdict per other attack family (``families``), each judged by
    ``judge`` on that family's attacks alone."""
    claim["families"] = {}
    for family in families:
        alone = judge([family])
        claim["families"][family] = {
            "label": FAMILY_LABELS.get(family, family),
            "verdict": alone["verdict"],
            "reason": alone["reason"],
            "tests": {"membership": alone["tests"]["membership"]},
        }
    return claim


def _utility_items(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The drop in task accuracy from the contrastive model to Talos (``{"task": ...}``)."""
    seeds = []
    for run in runs:
        c, t = _get(run, CONTRASTIVE, "utility"), _get(run, TALOS, "utility")
        if isinstance(_get(c, "test_acc"), (int, float)) and isinstance(
            _get(t, "test_acc"), (int, float)
        ):
            seeds.append((c, t, _get(run, "meta", "quarter_size")))
    if not seeds:
        return {}
    if len(seeds) > 1:
        pairs = [((c["test_acc"], [0.0, 0.0]), (t["test_acc"], [0.0, 0.0])) for c, t, _ in seeds]
        return {"task": _compare(pairs, (CONTRASTIVE, TALOS))}
    item = single_seed_drop(*seeds[0])
    return {"task": item} if item else {}


def single_seed_drop(
    contrastive: dict[str, Any], talos: dict[str, Any], quarter_size: Any = None
) -> dict[str, Any] | None:
    """Utility drop ``contrastive - talos`` test accuracy of one seed, with its 95% interval.

    A paired percentile bootstrap over the target-test samples when both utilities carry
    ``test_correct`` of equal length. Resampling pairs ``d_i = c_i - t_i`` in ``{-1, 0, 1}``
    is a multinomial draw of the three counts, so it is done exactly that way (O(resamples)).
    Without per-sample correctness (results from before it was recorded), a normal interval
    treating the two accuracies as independent proportions on ``quarter_size`` samples: wider
    than the paired one, since both models err on many of the same samples.

    Returns:
        The comparison record, or None when neither interval can be formed.
    """
    acc_c, acc_t = float(contrastive["test_acc"]), float(talos["test_acc"])
    out: dict[str, Any] = {
        "models": [CONTRASTIVE, TALOS],
        "values": {CONTRASTIVE: acc_c, TALOS: acc_t},
        "difference": acc_c - acc_t,
        "seeds": 1,
    }
    text_c, text_t = contrastive.get("test_correct"), talos.get("test_correct")
    if isinstance(text_c, str) and isinstance(text_t, str) and len(text_c) == len(text_t) > 0:
        c, t = decode_correct(text_c), decode_correct(text_t)
        out["ci95"] = paired_bootstrap(c, t)
        out["difference"] = float(c.mean() - t.mean())
        out["method"] = f"paired bootstrap over the {len(c)} target-test samples, one seed"
        return out
    if not isinstance(quarter_size, int) or quarter_size < 1:
        return None
    se = math.sqrt((acc_c * (1 - acc_c) + acc_t * (1 - acc_t)) / quarter_size)
    out["ci95"] = [out["difference"] - 1.96 * se, out["difference"] + 1.96 * se]
    out["method"] = (
        f"normal interval, independent proportions on {quarter_size} samples, one seed, "
        "per-sample correctness not recorded"
    )
    return out


def paired_bootstrap(
    first: np.ndarray, second: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> list[float]:
    """Percentile 95% bootstrap interval of ``mean(first) - mean(second)``, resampling pairs.

    Args:
        first: ``bool [N]`` correctness of the first model.
        second: ``bool [N]`` correctness of the second model on the same samples.
        n_bootstrap: Resamples.
        seed: Seed of the draw.

    Raises:
        ValueError: If the arrays differ in length or are empty.
    """
    first, second = np.asarray(first, dtype=int), np.asarray(second, dtype=int)
    if len(first) != len(second) or len(first) == 0:
        raise ValueError(f"need two equal, non-empty arrays, got {len(first)}, {len(second)}")
    d = first - second
    n = len(d)
    probs = [np.mean(d == -1), np.mean(d == 0), np.mean(d == 1)]
    counts = np.random.default_rng(seed).multinomial(n, probs, size=n_bootstrap)
    means = (counts[:, 2] - counts[:, 0]) / n
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def judge_claims(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The paper's three claims, judged by the rules of this module's docstring.

    Args:
        results: A ``results.json`` dict: one seed's, or an aggregate with ``per_seed``; its
            ``meta.claims_basis`` declares the attacks and probes (the paper's when absent).

    Returns:
        ``{"1": claim, "2": claim, "3": claim}``; each claim has ``claim`` (the statement),
        ``verdict`` (one of :data:`VERDICTS`), ``reason``, ``seeds`` (how many seeds it rests
        on), ``basis`` (the declared attacks or probes it rests on), ``tests`` ``{name: {"rule",
        "outcome", "passes" (None: not evaluated), "items": {attack or probe: {"models",
        "values", "difference", "ci95", "seeds", "method", "outcome", "passes"}}}}`` and, for
        claims 1 and 3, ``families`` ``{attack: {"label", "verdict", "reason", "tests"}}``: the
        claim judged on each other configured attack alone.
    """
    runs = seed_runs(results)
    basis = claims_basis(results)
    attacks, probes = basis["membership_attacks"], basis["attribute_probes"]
    families = other_families(runs, attacks)
    claims = {
        "1": _with_families(
            _claim_membership(runs, attacks),
            lambda chosen: _claim_membership(runs, chosen),
            families,
        ),
        "2": _claim_attribute(runs, probes),
        "3": _with_families(
            _claim_talos(runs, attacks, probes),
            lambda chosen: _claim_talos(runs, chosen, probes),
            families,
        ),
    }
    claims["1"]["basis"] = {"membership_attacks": attacks}
    claims["2"]["basis"] = {"attribute_probes": probes}
    claims["3"]["basis"] = {"membership_attacks": attacks, "attribute_probes": probes}
    return claims


def claim_problems(claims: Any) -> list[str]:
    """Problems of a ``claims`` entry against the shape :func:`judge_claims` writes."""
    if not isinstance(claims, dict):
        return ["claims missing (re-run `lightning-talos audit` to rebuild results.json)"]
    problems = []
    for key in STATEMENTS:
        claim = claims.get(key)
        where = f"claims.{key}"
        if not isinstance(claim, dict):
            problems.append(f"{where} missing")
            continue
        if claim.get("verdict") not in VERDICTS:
            problems.append(f"{where}.verdict must be one of {', '.join(VERDICTS)}")
        seeds = claim.get("seeds")
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            problems.append(f"{where}.seeds must be a positive integer")
        for field in ("claim", "reason"):
            if not isinstance(claim.get(field), str):
                problems.append(f"{where}.{field} must be a string")
        problems += _test_problems(claim.get("tests"), f"{where}.tests")
        problems += _family_problems(claim.get("families", {}), f"{where}.families")
    return problems


def _family_problems(families: Any, where: str) -> list[str]:
    if not isinstance(families, dict):
        return [f"{where} must be an object"]
    problems = []
    for name, family in families.items():
        if not isinstance(family, dict) or family.get("verdict") not in VERDICTS:
            problems.append(f"{where}.{name}.verdict must be one of {', '.join(VERDICTS)}")
            continue
        problems += _test_problems(family.get("tests"), f"{where}.{name}.tests")
    return problems


def _test_problems(tests: Any, where: str) -> list[str]:
    if not isinstance(tests, dict):
        return [f"{where} missing"]
    problems = []
    for name, group in tests.items():
        items = _get(group, "items")
        if not isinstance(group, dict) or not isinstance(group.get("rule"), str):
            problems.append(f"{where}.{name}.rule missing")
            continue
        if group.get("passes") not in (True, False, None):
            problems.append(f"{where}.{name}.passes must be true, false or null")
        if not isinstance(items, dict):
            problems.append(f"{where}.{name}.items missing")
            continue
        for item_name, item in items.items():
            problems += _item_problems(item, f"{where}.{name}.items.{item_name}")
    return problems


def _item_problems(item: Any, where: str) -> list[str]:
    if not isinstance(item, dict):
        return [f"{where} must be an object"]
    problems = []
    values, models = item.get("values"), item.get("models")
    if not isinstance(values, dict) or not all(_number(v) for v in values.values()):
        problems.append(f"{where}.values must map models to numbers")
    elif not (isinstance(models, list) and len(models) == 2 and all(m in values for m in models)):
        problems.append(f"{where}.models must name the two models of values")
    if not _number(item.get("difference")):
        problems.append(f"{where}.difference must be a number")
    ci = item.get("ci95")
    if not (isinstance(ci, list) and len(ci) == 2 and all(_number(v) for v in ci)):
        problems.append(f"{where}.ci95 must be [lo, hi]")
    if not isinstance(item.get("passes"), bool):
        problems.append(f"{where}.passes must be true or false")
    return problems


def _number(value: Any) -> bool:
    """A finite int or float (JSON's NaN and Infinity are refused)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
