"""The declared basis of each claim, the four verdicts, and one verdict line per other attack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lightning_talos.analysis.claims import attack_family, claims_basis, judge_claims
from lightning_talos.config.load import compose
from lightning_talos.errors import UserError
from lightning_talos.report.report import claims, compare, write_report
from lightning_talos.stages.results import aggregate, validate_results
from tests.unit.test_claims import attack, model, results


def _claim1(sup_nn: float, con_nn: float, **meta: Any) -> dict[str, Any]:
    """Claim 1 with metric_entropy clearly shown and nn at the given accuracies (half 0.01)."""
    sup = model({"nn": sup_nn, "metric_entropy": 0.75}, {"mlp": 0.6, "knn": 0.58}, 0.7)
    con = model({"nn": con_nn, "metric_entropy": 0.54}, {"mlp": 0.9, "knn": 0.88}, 0.8)
    r = results(supervised=sup, contrastive=con)
    r["meta"].update(meta)
    return judge_claims(r)["1"]


@pytest.mark.parametrize(
    ("sup_nn", "con_nn", "verdict", "outcome"),
    [
        (0.80, 0.55, "holds", "shown"),  # [0.79, 0.81] vs [0.54, 0.56]: +[0.23, 0.27]
        (0.55, 0.80, "does not hold", "opposite"),  # reversed: -[0.27, 0.23], all below 0
        (0.56, 0.55, "inconclusive", "unclear"),  # [-0.01, +0.03] straddles 0
    ],
)
def test_four_verdicts_one_seed(sup_nn: float, con_nn: float, verdict: str, outcome: str) -> None:
    claim = _claim1(sup_nn, con_nn)
    assert claim["verdict"] == verdict
    assert claim["tests"]["membership"]["items"]["nn"]["outcome"] == outcome
    assert claim["tests"]["membership"]["items"]["metric_entropy"]["outcome"] == "shown"


def test_declared_attack_without_results_is_not_evaluated() -> None:
    basis = {"membership_attacks": ["nn", "metric", "label_only"], "attribute_probes": ["mlp"]}
    claim = _claim1(0.80, 0.55, claims_basis=basis)
    assert claim["verdict"] == "not evaluated"
    assert "label_only" in claim["reason"]
    # a refutation outranks missing evidence: the reversed nn decides
    assert _claim1(0.55, 0.80, claims_basis=basis)["verdict"] == "does not hold"


def _multi_seed(differences: list[float]) -> dict[str, Any]:
    runs = []
    for seed, diff in enumerate(differences):
        sup = model({"nn": 0.55 + diff, "metric_entropy": 0.75}, {"mlp": 0.6, "knn": 0.58}, 0.7)
        runs.append(results(seed, supervised=sup))
    return aggregate(runs)["claims"]["1"]


@pytest.mark.parametrize(
    ("differences", "verdict"),
    [
        ([0.10, 0.12, 0.14], "holds"),  # t-interval [0.070, 0.170]
        ([-0.10, -0.12, -0.14], "does not hold"),  # [-0.170, -0.070]
        ([0.10, 0.12, -0.10], "inconclusive"),  # mean 0.04, s 0.122: straddles 0
    ],
)
def test_four_verdicts_over_seeds_use_t_intervals(differences: list[float], verdict: str) -> None:
    claim = _multi_seed(differences)
    nn = claim["tests"]["membership"]["items"]["nn"]
    assert nn["method"] == "t-interval over 3 seeds' differences"
    assert nn["per_seed"] == pytest.approx(differences)
    assert claim["verdict"] == verdict and claim["seeds"] == 3


def test_missing_evidence_over_seeds_is_not_evaluated() -> None:
    runs = [results(seed) for seed in range(2)]
    for run in runs:
        run["contrastive"]["mia"] = None
    claim = aggregate(runs)["claims"]["1"]
    assert claim["verdict"] == "not evaluated"
    assert "supervised and the contrastive model" in claim["reason"]


def _with_augmentation(sup: float, con: float, talos: float) -> dict[str, Any]:
    r = results()
    for method, acc in (("supervised", sup), ("contrastive", con), ("talos", talos)):
        r[method]["mia"]["augmentation"] = attack(acc)
    r["claims"] = judge_claims(r)
    return r


def test_an_attack_outside_the_basis_gets_its_own_line_and_leaves_the_headline() -> None:
    # The demo's case: the augmentation attack at chance on both models.
    r = _with_augmentation(0.519, 0.512, 0.510)
    one, three = r["claims"]["1"], r["claims"]["3"]
    assert one["verdict"] == "holds"
    assert "augmentation" not in one["tests"]["membership"]["items"]
    assert one["basis"] == {"membership_attacks": ["nn", "metric"]}
    line = one["families"]["augmentation"]
    assert line["label"] == "augmentation" and line["verdict"] == "inconclusive"
    assert set(line["tests"]["membership"]["items"]) == {"augmentation"}
    assert three["families"]["augmentation"]["verdict"] == "holds"  # not above contrastive
    # the family line reports what it shows, here the opposite for claim 1
    reversed_line = _with_augmentation(0.40, 0.60, 0.60)["claims"]["1"]["families"]
    assert reversed_line["augmentation"]["verdict"] == "does not hold"
    assert validate_results(r) == []


def test_every_other_family_has_a_line_in_a_fixed_order() -> None:
    r = results()
    for method in ("supervised", "contrastive", "talos"):
        r[method]["mia"]["rmia"] = attack(0.6)
        r[method]["mia"]["augmentation"] = attack(0.5)
    for method in ("contrastive", "talos"):  # encoder attacks: no supervised counterpart
        r[method]["mia"]["encoder_similarity"] = attack(0.6)
    verdicts = judge_claims(r)
    assert list(verdicts["1"]["families"]) == ["augmentation", "rmia", "encoder"]
    assert verdicts["1"]["families"]["encoder"]["verdict"] == "not evaluated"
    assert verdicts["3"]["families"]["encoder"]["verdict"] == "holds"
    assert verdicts["3"]["families"]["rmia"]["label"] == "RMIA"


def test_report_compare_and_readme_show_the_family_lines(tmp_path: Path) -> None:
    r = _with_augmentation(0.519, 0.512, 0.510)
    (tmp_path / "results.json").write_text(json.dumps(r))
    text = write_report(tmp_path).read_text()
    assert "claim 1 under augmentation: inconclusive**" in text
    assert "declared basis: membership attacks: nn, metric" in text
    assert "| holds (augmentation: inconclusive) |" in compare([tmp_path])
    assert "claim 3 under augmentation: holds" in "\n".join(claims(r))


def test_entries_map_to_their_configured_attack() -> None:
    assert attack_family("metric_modified_entropy") == "metric"
    assert attack_family("encoder_lira") == "encoder"
    assert attack_family("label_only") == "label_only"
    assert claims_basis({"meta": {}})["membership_attacks"] == ["nn", "metric", "label_only"]


def test_the_basis_is_declared_in_the_config() -> None:
    cfg = compose([])
    assert [str(a) for a in cfg.claims.membership_attacks] == ["nn", "metric", "label_only"]
    assert [str(p) for p in cfg.claims.attribute_probes] == ["mlp", "logistic", "knn"]
    assert [str(a) for a in compose(["claims.membership_attacks=[nn]"]).claims.membership_attacks]
    for bad, match in (("claims.membership_attacks=[]", "at least one"),
                       ("claims.attribute_probes=[mlp,mlp]", "twice")):  # fmt: skip
        with pytest.raises(UserError, match=match):
            compose([bad])
