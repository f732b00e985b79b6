"""LiRA: the statistic, the query set and the Gaussian tests against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from lightning_talos.attacks.lira import (
    Signals,
    augmented_queries,
    gaussian_fit,
    lira_attack,
    lira_scores,
    logit_confidence,
    query_logits,
    query_offsets,
)
from lightning_talos.attacks.metrics import best_threshold, threshold_metrics


def _log_pdf(x: float, mean: float, var: float) -> float:
    return -((x - mean) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)


# Two examples, four references. Example 0: IN refs 0, 1 -> scores 3, 5; OUT refs 2, 3 -> 0, 2.
# Example 1: IN refs 1, 3 -> 2, 6; OUT refs 0, 2 -> -1, 1.
_REFS = np.array([[3.0, -1.0], [5.0, 2.0], [0.0, 1.0], [2.0, 6.0]])  # [K=4, N=2]
_INCL = np.array([[True, False], [True, True], [False, False], [False, True]])
_PHI = np.array([4.0, 2.0])


def test_online_per_example_gaussians_by_hand() -> None:
    # ex 0: IN mean 4 var 2, OUT mean 1 var 2; ex 1: IN mean 4 var 8, OUT mean 0 var 2.
    expected = [
        _log_pdf(4, 4, 2) - _log_pdf(4, 1, 2),  # = 9/4
        _log_pdf(2, 4, 8) - _log_pdf(2, 0, 2),  # = 3/4 - log 2
    ]
    assert expected[0] == pytest.approx(2.25)
    assert expected[1] == pytest.approx(0.75 - math.log(2))
    scores = lira_scores(Signals(_PHI, _REFS, _INCL), online=True, global_variance_below=0)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_online_pooled_variance_by_hand() -> None:
    # Pooled within-example variances: IN (2 + 8) / (1 + 1) = 5, OUT (2 + 2) / (1 + 1) = 2.
    expected = [_log_pdf(4, 4, 5) - _log_pdf(4, 1, 2), _log_pdf(2, 4, 5) - _log_pdf(2, 0, 2)]
    scores = lira_scores(Signals(_PHI, _REFS, _INCL), online=True, global_variance_below=5)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_offline_one_sided_by_hand() -> None:
    refs = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])  # OUT only: ex 0 mean 1 var 1; ex 1 2, 4
    phi = np.array([2.0, 1.0])
    per_example = lira_scores(Signals(phi, refs), global_variance_below=0)
    np.testing.assert_allclose(per_example, [1.0, -0.5], rtol=1e-12)  # (phi - mean) / std
    pooled = lira_scores(Signals(phi, refs), global_variance_below=4)  # (2 + 8) / (2 + 2) = 2.5
    s = math.sqrt(2.5)
    np.testing.assert_allclose(pooled, [1 / s, -1 / s], rtol=1e-12)
    # The one-sided p-value Pr[Z > phi] of the hand fit: 1 - Phi(score) for one query.
    np.testing.assert_allclose(norm.sf(phi, [1.0, 2.0], [1.0, 2.0]), 1 - norm.cdf(per_example))


def test_offline_score_does_not_saturate() -> None:
    # Members far above a tight OUT distribution keep distinct scores (Phi would round to 1).
    refs = np.array([[0.0, 0.0], [0.1, 0.1], [-0.1, -0.1]])
    scores = lira_scores(Signals(np.array([50.0, 60.0]), refs), global_variance_below=0)
    assert norm.cdf(scores[0]) == norm.cdf(scores[1]) == 1.0
    assert scores[1] > scores[0]


def test_offline_uses_only_out_references_and_queries_average() -> None:
    # Offline on online references = offline on the OUT references alone.
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(6, 5, 2))
    incl = np.zeros((6, 5), dtype=bool)
    incl[:3] = True
    phi = rng.normal(size=(5, 2))
    a = lira_scores(Signals(phi, refs, incl), global_variance_below=0)
    b = lira_scores(Signals(phi, refs[3:]), global_variance_below=0)
    np.testing.assert_allclose(a, b)
    # Two queries: the mean of the per-query scores.
    per_query = [
        lira_scores(Signals(phi[:, q], refs[3:, :, q]), global_variance_below=0) for q in (0, 1)
    ]
    np.testing.assert_allclose(b, (per_query[0] + per_query[1]) / 2)
    ref = ((phi - refs[3:].mean(0)) / refs[3:].std(0, ddof=1)).mean(1)
    np.testing.assert_allclose(b, ref, rtol=1e-10)


def test_missing_groups_raise() -> None:
    with pytest.raises(ValueError, match="no reference"):  # online, example without IN refs
        lira_scores(Signals(_PHI, _REFS, np.zeros((4, 2), bool)), online=True)
    with pytest.raises(ValueError, match="pooled"):  # K = 1: no variance at all
        lira_scores(Signals(_PHI, _REFS[:1]))
    with pytest.raises(ValueError, match="per-example"):
        lira_scores(Signals(_PHI, _REFS[:1]), global_variance_below=0)
    with pytest.raises(ValueError, match="expected model"):
        lira_scores(Signals(_PHI, _REFS[:, :1]))
    with pytest.raises(ValueError, match="finite"):
        lira_scores(Signals(np.array([np.nan, 0.0]), _REFS))


def test_gaussian_fit_floors_the_std() -> None:
    refs = np.ones((3, 2, 1))
    mean, std = gaussian_fit(refs, np.ones((3, 2), bool), pooled=False, min_std=1e-3)
    np.testing.assert_array_equal(mean, 1.0)
    np.testing.assert_array_equal(std, 1e-3)


def test_logit_confidence_is_log_odds_and_finite() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1000.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    p = torch.softmax(logits[:2].double(), 1)[[0, 1], labels[:2]].numpy()
    phi = logit_confidence(logits, labels)
    np.testing.assert_allclose(phi[:2], np.log(p / (1 - p)), rtol=1e-12)
    assert phi[2] == pytest.approx(1000.0 - math.log(2.0))  # p_y rounds to 1, phi does not
    # [N, Q, C] logits with [N] labels: one label per example, broadcast over queries.
    stacked = torch.stack([logits, logits.flip(0)], dim=1)
    np.testing.assert_allclose(logit_confidence(stacked, labels)[:, 0], phi)
    with pytest.raises(ValueError, match="labels"):
        logit_confidence(logits, torch.tensor([0, 1, 3]))


def test_query_set_flips_and_shifts() -> None:
    assert query_offsets(flip=True, shifts=(-1, 0, 1))[0] == (False, 0, 0)
    assert len(query_offsets(flip=True, shifts=(-1, 0, 1))) == 18
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    q = augmented_queries(x, flip=True, shifts=(0, 2))
    offsets = query_offsets(flip=True, shifts=(0, 2))
    assert q.shape == (8, 2, 3, 6, 6)
    torch.testing.assert_close(q[0], x)
    for (f, dx, dy), img in zip(offsets, q):
        src = x.flip(-1) if f else x
        # interior pixels move by (dx, dy): out[y, x] = in[y - dy, x - dx]
        torch.testing.assert_close(img[..., 2:4, 2:4], src[..., 2 - dy : 4 - dy, 2 - dx : 4 - dx])
    with pytest.raises(ValueError):
        augmented_queries(x, shifts=(0, 6))
    with pytest.raises(ValueError):
        query_offsets(shifts=())


def test_query_logits_matches_per_query_calls() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.rand(7, 3, 4, 4)
    out = query_logits(net, x, flip=True, shifts=(0, 1), batch_size=3)
    queries = augmented_queries(x, flip=True, shifts=(0, 1))
    assert out.shape == (7, 8, 5)
    for q in range(8):
        torch.testing.assert_close(out[:, q], net(queries[q]), rtol=1e-5, atol=1e-6)


def test_attack_threshold_from_shadow_or_default() -> None:
    rng = np.random.default_rng(1)
    k, n = 8, 200
    member = np.arange(n) < n // 2
    refs = rng.normal(size=(k, n))
    phi = rng.normal(size=n) + 1.5 * member  # members sit high
    target = Signals(phi, refs, None, member)
    out = lira_attack(target, n_bootstrap=0)
    assert out["threshold"] == 0.0 and out["threshold_from"] == "default"
    assert out["auc"] > 0.75 and out["references"] == k and out["queries"] == 1
    shadow = Signals(rng.normal(size=n) + 1.5 * member, rng.normal(size=(k, n)), None, member)
    calibrated = lira_attack(target, shadow=shadow, n_bootstrap=0)
    expected = best_threshold(lira_scores(shadow), member)
    assert calibrated["threshold"] == expected and calibrated["threshold_from"] == "shadow"
    assert calibrated["auc"] == out["auc"]  # the threshold changes only the hard decisions
    for key in (
        "acc",
        "balanced_acc",
        "advantage",
        "tpr_at_1pct_fpr",
        "tpr_at_0p1pct_fpr",
        "ci95",
        "roc",
    ):
        assert key in calibrated
    with pytest.raises(ValueError, match="both"):
        threshold_metrics(phi, member, default_threshold=0.0, shadow_scores=phi)
