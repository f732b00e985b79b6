"""The defences' registry entries, their results records and the frontier's numbers, without
training: epsilon lists become one method per value, results validation reads the records,
the frontier's points are exact functions of the entries, and the LEACE clean-up zeroes only
rounding residue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from lightning_talos.analysis.frontier import frontier_row, membership_attacks, wilson
from lightning_talos.config.load import compose
from lightning_talos.defences.leace import ConceptEraser
from lightning_talos.errors import UserError
from lightning_talos.report.frontier import rows as frontier_rows
from lightning_talos.stages.defences import without_rounding_residue
from lightning_talos.stages.registry import (
    DP_SUPERVISED,
    LEACE,
    REGISTRY,
    audited_methods,
    dp_epsilons,
    entry_methods,
    stage_for_command,
    unregister,
)
from lightning_talos.stages.results import _defence_problems
from lightning_talos.stages.wandb_log import frontier_table


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Remove the variants a test registers (the registry is global)."""
    before = set(REGISTRY.train) | set(REGISTRY.methods)
    yield
    for name in (set(REGISTRY.train) | set(REGISTRY.methods)) - before:
        unregister(name)


def test_defences_are_not_audited_by_default(clean_registry: None) -> None:
    names = [m.name for m in audited_methods(compose([]), with_attribute=True)]
    assert LEACE not in names and DP_SUPERVISED not in names
    assert len(names) == 3


def test_epsilon_list_gives_one_method_and_stage_per_value(clean_registry: None) -> None:
    cfg = compose([f"methods=[supervised,{LEACE},{DP_SUPERVISED}]", "dp.epsilon=[1,8,0.5]"])
    methods = audited_methods(cfg, with_attribute=True)
    made = [m.name for m in methods[2:]]
    assert made == [f"{DP_SUPERVISED}_eps1", f"{DP_SUPERVISED}_eps8", f"{DP_SUPERVISED}_eps0p5"]
    assert [m.model_stage for m in methods[2:]] == made  # folders carry the epsilon
    assert REGISTRY.methods[made[1]].label.endswith("eps=8")
    # the single-stage command picks a variant by its method; the rebuild names the list
    stage = stage_for_command(
        compose(["dp.epsilon=[1,8,0.5]", f"method={made[1]}"]), "dp_supervised"
    )
    assert stage.name == made[1]
    assert "dp.epsilon=[1,8,0.5]" in stage.rebuild(cfg, "target")
    # one value: the method itself, one folder without the epsilon
    one = audited_methods(
        compose([f"methods=[{DP_SUPERVISED}]", "dp.epsilon=8"]), with_attribute=True
    )
    assert [m.name for m in one] == [DP_SUPERVISED]


@pytest.mark.parametrize("value", ["0", "-1", "[]", "[1,1]", "abc", "[1,x]"])
def test_bad_epsilon_is_one_user_error(value: str) -> None:
    with pytest.raises(UserError, match="dp.epsilon"):
        dp_epsilons(compose([f"dp.epsilon={value}"]))


def test_entry_methods_include_variants_nobody_registered() -> None:
    results = {"supervised": {}, f"{DP_SUPERVISED}_eps4": {}, "meta": {}, "other_eps4": {}}
    names = entry_methods(results)
    assert f"{DP_SUPERVISED}_eps4" in names
    assert "meta" not in names and "other_eps4" not in names


def test_dp_record_needs_its_numbers() -> None:
    good = {"defence": "dp_sgd", "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0,
            "noise_multiplier": 2.0, "sample_rate": 0.1}  # fmt: skip
    assert _defence_problems(good, "m.defence") == []
    assert _defence_problems({**good, "epsilon": None}, "m.defence") == [
        "m.defence.epsilon must be a number"
    ]
    assert _defence_problems("dp", "m.defence") == [
        "m.defence must be an object naming its defence"
    ]


def _attack(bal: float, lo: float, hi: float) -> dict[str, object]:
    return {"acc": bal, "balanced_acc": bal, "ci95": {"acc": [lo, hi], "auc": [0.5, 0.5]}}


def test_frontier_row_is_the_strongest_attack_and_probe() -> None:
    entry = {
        "utility": {"test_acc": 0.75, "test_correct": "1110" * 25},
        "mia": {"nn": _attack(0.6, 0.55, 0.65), "metric_entropy": _attack(0.7, 0.66, 0.74)},
        "lira": _attack(0.8, 0.78, 0.82),  # another attack stage's single result
        "aia": {
            "majority_baseline": 0.5,
            "strongest": "mlp",
            "mlp": {"acc": 0.6, "ci95": {"acc": [0.55, 0.65]}},
            "logistic": {"acc": 0.7, "ci95": {"acc": [0.68, 0.72]}},
        },
        "defence": {
            "defence": "dp_sgd",
            "epsilon": 1.0,
            "delta": 1e-5,
            "max_grad_norm": 1.0,
            "noise_multiplier": 2.5,
        },  # fmt: skip
    }
    assert set(membership_attacks(entry)) == {"mia.nn", "mia.metric_entropy", "lira"}
    row = frontier_row(entry, "m")
    assert row["mia_attack"] == "lira"
    assert row["mia_adv"] == pytest.approx(0.6)
    assert row["mia_ci"] == pytest.approx((0.56, 0.64))
    assert row["aia_probe"] == "logistic"  # the highest accuracy, not the recorded strongest
    assert row["aia_excess"] == pytest.approx(0.2)
    assert row["aia_ci"] == pytest.approx((0.18, 0.22))
    assert row["task_ci"] == pytest.approx(wilson(75, 100))
    assert row["epsilon"] == 1.0 and row["noise_multiplier"] == 2.5


def test_wilson_reference_values() -> None:
    # Wilson (1927) 95% interval for 8/10: [0.4902, 0.9433]; 0/10: [0, 0.2775]
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    with pytest.raises(ValueError):
        wilson(3, 0)


def test_rounding_residue_is_zeroed_and_nothing_else_moves() -> None:
    torch.manual_seed(0)
    n, d = 400, 6
    z = torch.randint(0, 2, (n,))
    x = torch.randn(n, d) + z[:, None] * torch.tensor([1.0, 0.5, 0, 0, 0, 0])
    x[:, 5] = 0.0  # a dead unit
    fitted = ConceptEraser.fit(x, z)
    # plant the residue a float64 fit leaves in a dead row
    fitted.weight[5, :5] = 1e-19 * torch.arange(1, 6)
    fitted.bias[5] = 1e-19
    cleaned = without_rounding_residue(fitted)
    out = cleaned(x)
    assert bool((out[:, 5] == 0).all())  # the dead unit stays exactly constant
    assert torch.allclose(out[:, :5], fitted(x)[:, :5], atol=1e-6)
    means = [out[z == c].mean(0) for c in (0, 1)]
    assert torch.allclose(means[0], means[1], atol=1e-4)  # still erased


def test_wandb_frontier_table_has_one_row_per_model_with_interval_ends() -> None:
    entry = {
        "utility": {"test_acc": 0.5, "train_acc": 0.6, "gap": 0.1},
        "mia": {"nn": _attack(0.55, 0.5, 0.6)},
        "defence": {
            "defence": "dp_sgd",
            "epsilon": 2.0,
            "delta": 1e-5,
            "max_grad_norm": 1.0,
            "noise_multiplier": 1.5,
        },  # fmt: skip
    }
    columns, rows = frontier_table({f"{DP_SUPERVISED}_eps2": entry, "supervised": None})
    assert len(rows) == 1
    row = dict(zip(columns, rows[0]))
    assert row["label"] == f"{DP_SUPERVISED}_eps2"  # unregistered variant: its key
    assert row["mia_adv"] == pytest.approx(0.1)
    assert (row["mia_ci_lo"], row["mia_ci_hi"]) == pytest.approx((0.0, 0.2))
    assert row["task_ci_lo"] is None and row["aia_excess"] is None
    assert row["epsilon"] == 2.0 and row["noise_multiplier"] == 1.5


def test_unregistered_variant_is_labelled_from_its_record() -> None:
    entry = {"utility": {"test_acc": 0.5}, "defence": {"defence": "dp_sgd", "target_epsilon": 2.0}}
    (row,) = frontier_rows({f"{DP_SUPERVISED}_eps2": entry})
    assert row["label"] == f"{REGISTRY.methods[DP_SUPERVISED].label} eps=2"
