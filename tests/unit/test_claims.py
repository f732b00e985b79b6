"""Verdict rules (analysis/claims.py), results.json validation and the report that reads them."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_talos.analysis.claims import (
    UTILITY_TOLERANCE,
    decode_correct,
    encode_correct,
    judge_claims,
    paired_bootstrap,
    single_seed_drop,
    t_interval,
)
from lightning_talos.errors import UserError
from lightning_talos.report.report import claims, compare, write_report
from lightning_talos.stages.results import SCHEMA_VERSION, aggregate, validate_results

#: The fixture's declared basis: the attacks and probes its models have.
BASIS = {"membership_attacks": ["nn", "metric"], "attribute_probes": ["mlp", "knn"]}


def attack(acc: float, half: float = 0.01) -> dict[str, Any]:
    return {"acc": acc, "balanced_acc": acc, "auc": acc, "advantage": 0.1,
            "tpr_at_1pct_fpr": 0.02, "tpr_at_0p1pct_fpr": 0.0, "n_nonmembers": 100,
            "ci95": {"acc": [acc - half, acc + half], "auc": [acc - half, acc + half]}}  # fmt: skip


def probe(acc: float, half: float = 0.01) -> dict[str, Any]:
    return {"acc": acc, "balanced_acc": acc, "macro_f1": acc,
            "ci95": {"acc": [acc - half, acc + half]}}  # fmt: skip


def model(mia: dict[str, float] | None, aia: dict[str, float] | None, test_acc: float) -> dict:
    utility = {"train_acc": 0.95, "test_acc": test_acc, "gap": 0.95 - test_acc}
    return {
        "utility": utility,
        "mia": None if mia is None else {k: attack(v) for k, v in mia.items()},
        "aia": None
        if aia is None
        else {
            **{k: probe(v) for k, v in aia.items()},
            "majority_baseline": 0.5,
            "strongest": max(aia, key=aia.get),
        },  # fmt: skip
    }


def results(seed: int = 0, **methods: dict) -> dict[str, Any]:
    """A valid single-seed results dict; defaults satisfy all three claims by wide margins."""
    out = {
        "schema": SCHEMA_VERSION,
        "supervised": model({"nn": 0.80, "metric_entropy": 0.75}, {"mlp": 0.60, "knn": 0.58}, 0.7),
        "contrastive": model({"nn": 0.55, "metric_entropy": 0.54}, {"mlp": 0.90, "knn": 0.88}, 0.8),
        "talos": model({"nn": 0.54, "metric_entropy": 0.54}, {"mlp": 0.62, "knn": 0.60}, 0.8),
        "meta": {
            "dataset": "synthetic",
            "backbone": "small_cnn",
            "seeds": [seed],
            "split_hash": str(seed),
            "git_commit": None,
            "versions": {},
            "wall_time_s": {},
            "quarter_size": 2000,
            "talos_lambda": 1.0,
            "claims_basis": dict(BASIS),
        },  # fmt: skip
    }
    out.update(methods)
    out["claims"] = judge_claims(out)
    return out


def test_default_fixture_holds_everywhere_on_one_seed() -> None:
    verdicts = results()["claims"]
    assert [verdicts[k]["verdict"] for k in "123"] == ["holds"] * 3
    assert all(verdicts[k]["seeds"] == 1 for k in "123")


@pytest.mark.parametrize("missing", ["mia", "aia"])
def test_claim_3_without_mia_or_aia_is_not_evaluated(missing: str) -> None:
    talos = model({"nn": 0.54}, {"mlp": 0.62}, 0.8)
    talos[missing] = None
    claim = results(talos=talos)["claims"]["3"]
    assert claim["verdict"] == "not evaluated"
    assert claim["tests"]["membership" if missing == "mia" else "attribute"]["passes"] is None
    assert "Talos" in claim["reason"]


def test_claim_3_without_utility_size_is_not_evaluated() -> None:
    r = results()
    del r["meta"]["quarter_size"]  # no per-sample correctness either: no utility interval
    assert judge_claims(r)["3"]["verdict"] == "not evaluated"


def test_every_attack_decides_none_chosen_on_the_target() -> None:
    # The old rule compared the best attack per model: supervised nn 0.80 vs contrastive's best
    # 0.56 would "hold". One attack that shows nothing (0.53 vs 0.56) now stops the claim.
    sup = model({"nn": 0.80, "metric_entropy": 0.53}, {"mlp": 0.6}, 0.7)
    con = model({"nn": 0.55, "metric_entropy": 0.56}, {"mlp": 0.9}, 0.8)
    claim = results(supervised=sup, contrastive=con)["claims"]["1"]
    assert claim["verdict"] == "does not hold"
    items = claim["tests"]["membership"]["items"]
    assert set(items) == {"nn", "metric_entropy"}  # every attack shown
    assert items["nn"]["passes"] and not items["metric_entropy"]["passes"]
    assert "metric_entropy" in claim["reason"]


def test_an_attack_s_judgement_ignores_the_other_attacks_numbers() -> None:
    base = results()["claims"]["1"]["tests"]["membership"]["items"]["nn"]
    rng = np.random.default_rng(0)
    for _ in range(5):  # any numbers for the other attack: nn's comparison is unchanged
        sup = model({"nn": 0.80, "metric_entropy": rng.uniform(0.4, 1.0)}, None, 0.7)
        con = model({"nn": 0.55, "metric_entropy": rng.uniform(0.4, 1.0)}, None, 0.8)
        item = results(supervised=sup, contrastive=con)["claims"]["1"]["tests"]["membership"]
        assert item["items"]["nn"] == base


def test_order_of_attacks_does_not_change_the_verdict() -> None:
    r = results()
    for method in ("supervised", "contrastive", "talos"):
        r[method]["mia"] = dict(reversed(list(r[method]["mia"].items())))
    for key in "123":
        assert judge_claims(r)[key]["verdict"] == results()["claims"][key]["verdict"]


def test_separated_and_overlapping_intervals_one_seed() -> None:
    # separated: [0.79, 0.81] vs [0.54, 0.56]: the difference interval is [0.23, 0.27]
    item = results()["claims"]["1"]["tests"]["membership"]["items"]["nn"]
    assert item["ci95"] == pytest.approx([0.23, 0.27])
    assert item["difference"] == pytest.approx(0.25) and item["passes"]
    # overlapping: [0.55, 0.57] vs [0.54, 0.56] -> [-0.01, 0.03], direction right, not shown
    sup = model({"nn": 0.56, "metric_entropy": 0.75}, None, 0.7)
    con = model({"nn": 0.55, "metric_entropy": 0.54}, None, 0.8)
    claim = results(supervised=sup, contrastive=con)["claims"]["1"]
    nn = claim["tests"]["membership"]["items"]["nn"]
    assert nn["ci95"] == pytest.approx([-0.01, 0.03]) and not nn["passes"]
    assert nn["outcome"] == "unclear"
    assert claim["verdict"] == "inconclusive" and "nn" in claim["reason"]


def test_lowered_needs_separated_intervals() -> None:
    # Talos 0.89 vs contrastive 0.90: lower, but the intervals overlap: not "lowered"
    talos = model({"nn": 0.54, "metric_entropy": 0.54}, {"mlp": 0.89, "knn": 0.60}, 0.8)
    claim = results(talos=talos)["claims"]["3"]
    assert claim["verdict"] == "inconclusive"
    assert not claim["tests"]["attribute"]["items"]["mlp"]["passes"]
    assert claim["tests"]["attribute"]["items"]["knn"]["passes"]
    # Talos 0.95 vs 0.90: raised, intervals separated: the opposite of "lowered"
    talos["aia"]["mlp"] = probe(0.95)
    claim = results(talos=talos)["claims"]["3"]
    assert claim["verdict"] == "does not hold"
    assert claim["tests"]["attribute"]["items"]["mlp"]["outcome"] == "opposite"


def test_membership_worse_only_with_separated_increase() -> None:
    talos = model({"nn": 0.56, "metric_entropy": 0.54}, {"mlp": 0.6, "knn": 0.6}, 0.8)
    assert results(talos=talos)["claims"]["3"]["verdict"] == "holds"  # overlapping: not worse
    talos["mia"]["nn"] = attack(0.60)
    claim = results(talos=talos)["claims"]["3"]
    assert claim["verdict"] == "does not hold"
    assert not claim["tests"]["membership"]["items"]["nn"]["passes"]


def test_t_interval_from_hand_computed_numbers() -> None:
    # mean 0.12, s = 0.02, t_{0.975, 2} = 4.302653: half-width 4.302653 * 0.02 / sqrt(3)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert t_interval([0.10, 0.12, 0.14]) == pytest.approx([0.12 - half, 0.12 + half], abs=1e-6)
    with pytest.raises(ValueError):
        t_interval([0.1])


def test_three_seed_verdict_uses_the_spread_between_seeds() -> None:
    # Seed-level nn differences 0.10, 0.12, 0.14 (supervised 0.65/0.67/0.69 vs 0.55):
    # interval [0.0703, 0.1697] whatever the per-seed bootstrap intervals say.
    runs = []
    for seed, sup_nn in enumerate((0.65, 0.67, 0.69)):
        sup = model({"nn": sup_nn, "metric_entropy": 0.75}, {"mlp": 0.6, "knn": 0.58}, 0.7)
        runs.append(results(seed, supervised=sup))
    merged = aggregate(runs)
    claim = merged["claims"]["1"]
    nn = claim["tests"]["membership"]["items"]["nn"]
    assert claim["seeds"] == 3 and nn["seeds"] == 3
    assert nn["per_seed"] == pytest.approx([0.10, 0.12, 0.14])
    assert nn["ci95"] == pytest.approx([0.070317, 0.169683], abs=1e-5)
    assert claim["verdict"] == "holds"
    # a seed that disagrees widens the interval past 0: the verdict follows the spread
    runs[2]["supervised"]["mia"]["nn"] = attack(0.45)
    assert aggregate(runs)["claims"]["1"]["verdict"] == "inconclusive"
    # every seed reversed (differences -0.10, -0.12, -0.14): the opposite, over seeds
    for run, sup_nn in zip(runs, (0.45, 0.43, 0.41)):
        run["supervised"]["mia"]["nn"] = attack(sup_nn)
    reversed_claim = aggregate(runs)["claims"]["1"]
    assert reversed_claim["tests"]["membership"]["items"]["nn"]["ci95"][1] < 0
    assert reversed_claim["verdict"] == "does not hold"
    text = "\n".join(claims(merged))
    assert "verdict over 3 seeds" in text and "single-seed" not in text


def test_aggregate_keeps_per_seed_numbers_and_averages_no_sample_data() -> None:
    runs = [results(s) for s in range(2)]
    for run, text in zip(runs, ("1100", "1010")):
        run["talos"]["utility"]["test_correct"] = text
    merged = aggregate(runs)
    assert merged["per_seed"] == runs
    assert "test_correct" not in merged["talos"]["utility"]
    assert merged["claims"]["3"]["tests"]["utility"]["items"]["task"]["seeds"] == 2
    assert validate_results(merged) == []


def test_single_seed_wording() -> None:
    text = "\n".join(claims(results()))
    assert text.count("single-seed verdict") == 3
    assert "metric_entropy" in text and "knn" in text  # every attack and probe shown


def test_correctness_round_trip() -> None:
    predicted, labels = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])
    text = encode_correct(predicted, labels)
    assert text == "1010"
    assert decode_correct(text).tolist() == [True, False, True, False]
    with pytest.raises(ValueError):
        decode_correct("0120")


def test_paired_bootstrap_matches_the_closed_form_spread() -> None:
    rng = np.random.default_rng(1)
    first = rng.random(4000) < 0.8
    second = np.where(rng.random(4000) < 0.9, first, ~first)  # 10% of answers flipped
    d = first.astype(int) - second.astype(int)
    sd = d.std() / math.sqrt(len(d))
    lo, hi = paired_bootstrap(first, second)
    assert lo == pytest.approx(d.mean() - 1.96 * sd, abs=0.3 * sd)
    assert hi == pytest.approx(d.mean() + 1.96 * sd, abs=0.3 * sd)


def test_utility_kept_needs_the_whole_drop_interval_within_tolerance() -> None:
    n = 1000
    contrastive = np.ones(n, dtype=bool)
    talos = contrastive.copy()
    talos[:10] = False  # drop 0.01: interval well below 0.03
    item = single_seed_drop(_util(contrastive), _util(talos))
    assert item is not None and item["difference"] == pytest.approx(0.01)
    assert item["ci95"][1] < UTILITY_TOLERANCE
    talos[:25] = False  # drop 0.025 <= 0.03, but the interval reaches past it: not "kept"
    r = results()
    r["contrastive"]["utility"] = _util(contrastive)
    r["talos"]["utility"] = _util(talos)
    claim = judge_claims(r)["3"]
    task = claim["tests"]["utility"]["items"]["task"]
    assert task["difference"] == pytest.approx(0.025)
    assert task["ci95"][1] > UTILITY_TOLERANCE and not task["passes"]
    assert claim["verdict"] == "inconclusive"  # the interval straddles the tolerance
    talos[:80] = False  # drop 0.08: the whole interval above the tolerance, the opposite
    r["talos"]["utility"] = _util(talos)
    claim = judge_claims(r)["3"]
    assert claim["tests"]["utility"]["items"]["task"]["ci95"][0] > UTILITY_TOLERANCE
    assert claim["verdict"] == "does not hold"


def test_utility_without_per_sample_correctness_uses_independent_proportions() -> None:
    item = single_seed_drop({"test_acc": 0.8}, {"test_acc": 0.8}, 2000)
    assert item is not None
    half = 1.96 * math.sqrt(2 * 0.8 * 0.2 / 2000)
    assert item["ci95"] == pytest.approx([-half, half])


def _util(correct: np.ndarray) -> dict[str, Any]:
    acc = float(correct.mean())
    return {"train_acc": 1.0, "test_acc": acc, "gap": 1.0 - acc,
            "test_correct": encode_correct(correct.astype(int), np.ones(len(correct)))}  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["talos"]["mia"]["nn"].update(acc="high"), "talos.mia.nn.acc"),
        (lambda r: r["claims"]["3"].update(verdict="maybe"), "claims.3.verdict"),
        (lambda r: r.pop("claims"), "claims missing"),
        (lambda r: r["supervised"]["aia"]["mlp"].update(ci95={}), "supervised.aia.mlp.ci95"),
        (lambda r: r["contrastive"]["utility"].update(test_correct="12"), "test_correct"),
        (lambda r: r.update(schema=1), "schema must be"),
    ],
)
def test_validation_names_the_bad_field(edit: Any, field: str) -> None:
    r = results()
    edit(r)
    problems = validate_results(r)
    assert problems and field in problems[0]


def test_broken_results_leave_report_and_figures_untouched(tmp_path: Path) -> None:
    r = results()
    (tmp_path / "results.json").write_text(json.dumps(r))
    write_report(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.*")}
    assert {"report.md", "aia.png"} <= set(before)
    broken = copy.deepcopy(r)
    broken["talos"]["aia"]["mlp"]["acc"] = None
    (tmp_path / "results.json").write_text(json.dumps(broken))
    with pytest.raises(UserError, match=r"talos\.aia\.mlp\.acc must be a number"):
        write_report(tmp_path)
    for name in ("report.md", "aia.png"):
        assert (tmp_path / name).read_bytes() == before[name]
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="top level"):
        compare([tmp_path])


def test_report_and_compare_read_the_verdicts_from_results(tmp_path: Path) -> None:
    r = results()
    r["claims"]["2"]["verdict"] = "does not hold"  # the report repeats, it does not re-judge
    (tmp_path / "results.json").write_text(json.dumps(r, sort_keys=True))  # as write_json does
    text = write_report(tmp_path).read_text()
    assert "leak more attributes than supervised models: does not hold**" in text
    # the models in the order of the difference, whatever the key order of the file
    assert "- nn: supervised 0.800 vs contrastive 0.550, difference +0.250" in text
    assert "| holds | does not hold | holds |" in compare([tmp_path])


def test_an_attack_on_one_model_only_is_shown_not_judged() -> None:
    talos = model({"nn": 0.54}, {"mlp": 0.62, "knn": 0.60}, 0.8)
    r = results(talos=talos)
    membership = r["claims"]["3"]["tests"]["membership"]
    assert set(membership["items"]) == {"nn"}
    assert membership["unmatched"] == ["metric_entropy"]
    assert "not judged, on one model only: metric_entropy" in "\n".join(claims(r))


def test_a_nan_number_shows_nothing_and_is_refused_by_validation() -> None:
    talos = model({"nn": float("nan"), "metric_entropy": 0.54}, {"mlp": 0.6, "knn": 0.6}, 0.8)
    r = results(talos=talos)
    assert not r["claims"]["3"]["tests"]["membership"]["items"]["nn"]["passes"]
    assert r["claims"]["3"]["verdict"] == "inconclusive"  # shows nothing either way
    assert validate_results(r)[0] == "talos.mia.nn.acc must be a number"


def test_one_seed_without_bootstrap_intervals_is_not_evaluated() -> None:
    r = results()
    r["meta"]["bootstrap"] = {"mia": 0, "aia": 1000}
    verdicts = judge_claims(r)
    assert verdicts["1"]["verdict"] == "not evaluated"
    assert "mia.bootstrap=0" in verdicts["1"]["reason"]
    assert verdicts["2"]["verdict"] == "holds"
    assert verdicts["1"]["tests"]["membership"]["items"]["nn"]["passes"]  # still shown
