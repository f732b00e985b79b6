"""Membership metrics: thresholds, ROC summaries and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from lightning_talos.attacks.metrics import (
    best_threshold,
    membership_metrics,
    rank_auc,
    roc_points,
    tpr_at_fpr,
)


def _balanced_acc(scores: np.ndarray, is_member: np.ndarray, t: float) -> float:
    pred = scores >= t
    return 0.5 * (pred[is_member].mean() + (~pred[~is_member]).mean())


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    is_member = rng.random(n) < 0.5
    is_member[:2] = [True, False]
    # Rounded scores create many ties, the case a naive scan gets wrong.
    scores = np.round(rng.normal(size=n) + 0.7 * is_member, 1)
    t = best_threshold(scores, is_member)
    values = np.unique(scores)
    candidates = np.r_[values, (values[1:] + values[:-1]) / 2]
    brute = max(_balanced_acc(scores, is_member, c) for c in candidates)
    assert _balanced_acc(scores, is_member, t) == pytest.approx(brute)
    assert t not in values[1:] or t == values.min()  # between distinct values


def test_best_threshold_hand_case_and_weights() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.9])
    is_member = np.array([0, 0, 0, 1, 1, 1])
    assert best_threshold(scores, is_member) == pytest.approx(0.55)
    # Ties: a member and a non-member at 0.5 always share one decision.
    t = best_threshold(np.array([0.5, 0.5, 0.9, 0.1]), np.array([1, 0, 1, 0]))
    assert t == pytest.approx(0.7)
    # Weights: one heavy non-member at 0.85 moves the threshold above it.
    s = np.array([0.1, 0.2, 0.8, 0.85, 0.9])
    m = np.array([0, 0, 1, 0, 1])
    assert best_threshold(s, m) == pytest.approx(0.5)
    assert best_threshold(s, m, sample_weight=np.array([1, 1, 1, 10, 1])) == pytest.approx(0.875)


def test_one_class_raises() -> None:
    with pytest.raises(ValueError, match="both members and non-members"):
        membership_metrics(np.ones(4), np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="both members"):
        best_threshold(np.arange(3.0), np.zeros(3))


def test_constant_scores_give_auc_half() -> None:
    is_member = np.array([1, 0, 1, 0, 1, 0])
    out = membership_metrics(np.full(6, 0.3), is_member, np.ones(6), n_bootstrap=50)
    assert out["auc"] == 0.5
    assert out["advantage"] == pytest.approx(0.0)
    assert out["ci95"]["auc"] == [0.5, 0.5]
    assert out["n_members"] == 3 and out["n_nonmembers"] == 3


def test_rank_auc_equals_sklearn() -> None:
    rng = np.random.default_rng(1)
    is_member = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + is_member, 1)
    assert rank_auc(scores, is_member) == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)


def test_tpr_at_fpr_takes_the_best_point_without_interpolation() -> None:
    fpr = np.array([0.0, 0.0, 0.02, 0.02, 1.0])
    tpr = np.array([0.0, 0.3, 0.5, 0.7, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.0) == 0.3  # top of the vertical segment
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.3  # interpolating (0, .3)-(.02, .5) would give 0.4
    assert tpr_at_fpr(fpr, tpr, 0.02) == 0.7
    assert tpr_at_fpr(fpr, tpr, 0.51) == 0.7  # interpolation: 0.85
    assert tpr_at_fpr(fpr, tpr, 1.0) == 1.0


def test_tpr_at_low_fpr_through_a_tie() -> None:
    # Members .9 and .8, non-members .8 (tied with a member) and .1. ROC: (0, 0), (0, .5),
    # (.5, 1), (1, 1). Interpolating at 1% FPR would read .5 + .02 * .5 = .51; the best point
    # actually reachable with FPR <= 1% has TPR .5.
    out = membership_metrics(
        np.array([0.9, 0.8, 0.8, 0.1]), np.array([1, 1, 0, 0]), np.ones(4), n_bootstrap=0
    )
    assert out["tpr_at_1pct_fpr"] == 0.5 and out["tpr_at_0p1pct_fpr"] == 0.5
    roc = out["roc"]  # a step function: TPR .5 up to FPR .5 (interpolation would rise)
    assert all(t == 0.5 for f, t in zip(roc["fpr"], roc["tpr"]) if f < 0.5)
    assert roc["tpr"][-1] == 1.0 and out["auc"] == pytest.approx(0.875)


def test_membership_metrics_hand_case() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    is_member = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    pred = scores >= 0.55
    out = membership_metrics(scores, is_member, pred, n_bootstrap=0)
    assert out["acc"] == pytest.approx(0.8)
    assert out["precision"] == pytest.approx(0.75)
    assert out["recall"] == pytest.approx(0.75)
    assert out["balanced_acc"] == pytest.approx(0.5 * (0.75 + 5 / 6))
    assert out["auc"] == pytest.approx(roc_auc_score(is_member, scores))
    assert out["advantage"] == pytest.approx(1 - 1 / 3)  # threshold 0.35
    # ROC: (0, .5) after two members, then (1/6, .5): the best point with FPR <= 1% is (0, .5).
    assert out["tpr_at_1pct_fpr"] == pytest.approx(0.5)
    fpr, tpr = roc_points(scores, is_member)
    assert fpr[0] == 0 and tpr[-1] == 1 and len(fpr) == 11


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_membership_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    is_member = rng.random(400) < 0.45
    scores = np.round(rng.normal(size=400) + 0.7 * is_member, 1)  # many ties
    pred = rng.random(400) < 0.5
    out = membership_metrics(scores, is_member, pred, n_bootstrap=0)
    assert out["acc"] == pytest.approx(accuracy_score(is_member, pred), abs=1e-12)
    assert out["balanced_acc"] == pytest.approx(balanced_accuracy_score(is_member, pred), abs=1e-12)
    assert out["precision"] == pytest.approx(precision_score(is_member, pred), abs=1e-12)
    assert out["recall"] == pytest.approx(recall_score(is_member, pred), abs=1e-12)
    assert out["auc"] == pytest.approx(roc_auc_score(is_member, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    ours_fpr, ours_tpr = roc_points(scores, is_member)
    np.testing.assert_allclose(ours_fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(ours_tpr, tpr, atol=1e-12)
    assert out["advantage"] == pytest.approx(float(np.max(tpr - fpr)), abs=1e-12)
    none = membership_metrics(scores, is_member, np.zeros(400, bool), n_bootstrap=0)
    assert none["precision"] == 0.0 and none["recall"] == 0.0


def test_bootstrap_ci_contains_estimate_and_narrows() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 3200):
        is_member = np.arange(n) % 2 == 0
        scores = rng.normal(size=n) + 0.8 * is_member
        out = membership_metrics(scores, is_member, scores >= 0.4, n_bootstrap=300, seed=3)
        for key in ("acc", "auc"):
            lo, hi = out["ci95"][key]
            assert lo <= out[key] <= hi
        widths.append(out["ci95"]["auc"][1] - out["ci95"]["auc"][0])
        again = membership_metrics(scores, is_member, scores >= 0.4, n_bootstrap=300, seed=3)
        assert again["ci95"] == out["ci95"]
    assert widths[1] < widths[0] / 2
