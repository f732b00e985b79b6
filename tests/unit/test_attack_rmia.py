"""RMIA: the pairwise likelihood-ratio score against hand computations (K = 2, three z)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_talos.attacks.lira import Signals
from lightning_talos.attacks.rmia import (
    marginal_probability,
    rmia_attack,
    rmia_scores,
    true_class_probability,
    tune_offline_a,
)

# Two candidates x and three population points z; two references (rows).
_PX = np.array([0.9, 0.4])
_REFS_X = np.array([[0.6, 0.5], [0.4, 0.3]])  # OUT means 0.5, 0.4
_PZ = np.array([0.5, 0.2, 0.8])
_REFS_Z = np.array([[0.5, 0.4, 0.9], [0.7, 0.2, 0.7]])  # means 0.6, 0.3, 0.8


def test_offline_score_by_hand() -> None:
    # a = 0.5: Pr(.) = (1.5 * mean_OUT + 0.5) / 2.
    # Pr(x) = 0.625, 0.55 -> r(x) = 1.44, 0.7273
    # Pr(z) = 0.7, 0.475, 0.85 -> r(z) = 0.7143, 0.4211, 0.9412
    # LR(x0, z) = 2.016, 3.42, 1.53; LR(x1, z) = 1.018, 1.727, 0.773
    x, z = Signals(_PX, _REFS_X), Signals(_PZ, _REFS_Z)
    np.testing.assert_allclose(rmia_scores(x, z, a=0.5, gamma=2.0), [2 / 3, 0.0])
    np.testing.assert_allclose(rmia_scores(x, z, a=0.5, gamma=1.0), [1.0, 2 / 3])
    np.testing.assert_allclose(rmia_scores(x, z, a=0.5, gamma=3.5), [0.0, 0.0])


def test_online_and_per_point_out_references_by_hand() -> None:
    # Online: Pr = plain mean over both references: Pr(x) = 0.5, 0.4 -> r(x) = 1.8, 1.0;
    # r(z) = 0.5/0.6, 0.2/0.3, 0.8/0.8 = 0.833, 0.667, 1.0 -> LR(x0) = 2.16, 2.7, 1.8.
    incl = np.array([[True, False], [False, True]])
    x = Signals(_PX, _REFS_X, incl)
    z = Signals(_PZ, _REFS_Z)
    np.testing.assert_allclose(rmia_scores(x, z, online=True, gamma=2.0), [2 / 3, 0.0])
    # Offline with inclusion: x0 is IN reference 0, so only reference 1 (0.4) enters; a = 1
    # means no correction: Pr(x) = 0.4, 0.5 -> r(x) = 2.25, 0.8; r(z) (a = 1) = 0.833, 0.667, 1
    # -> LR(x0, z) = 2.7, 3.375, 2.25; LR(x1, z) = 0.96, 1.2, 0.8.
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0, gamma=2.5), [2 / 3, 0.0])
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0, gamma=3.0), [1 / 3, 0.0])
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0, gamma=1.0), [1.0, 1 / 3])


def test_matches_brute_force_pairs_with_queries() -> None:
    rng = np.random.default_rng(0)
    k, n, m, q = 3, 20, 15, 2
    x = Signals(rng.uniform(size=(n, q)), rng.uniform(size=(k, n, q)))
    z = Signals(rng.uniform(size=(m, q)), rng.uniform(size=(k, m, q)))
    a, gamma = 0.3, 1.7
    got = rmia_scores(x, z, a=a, gamma=gamma)

    def ratio(p: np.ndarray, refs: np.ndarray) -> np.ndarray:
        return p / (((1 + a) * refs.mean(0) + (1 - a)) / 2)

    rx, rz = ratio(x.model, x.references), ratio(z.model, z.references)
    lr = rx[:, None, :] / rz[None, :, :]  # [N, M, Q]
    np.testing.assert_allclose(got, (lr > gamma).mean(axis=(1, 2)))


def test_one_reference_is_enough() -> None:
    x = Signals(_PX, _REFS_X[:1])
    z = Signals(_PZ, _REFS_Z[:1])
    # a = 1, K = 1: r(x) = 1.5, 0.8; r(z) = 1.0, 0.5, 0.889
    # -> LR(x0, z) = 1.5, 3, 1.6875; LR(x1, z) = 0.8, 1.6, 0.9.
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0, gamma=1.65), [2 / 3, 0.0])
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0, gamma=1.55), [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="OUT reference"):
        rmia_scores(Signals(_PX, _REFS_X[:1], np.array([[True, False]])), z)


def test_marginal_probability_interpolates() -> None:
    refs = np.array([[[0.2]], [[0.6]]])
    out = np.zeros((2, 1), bool)
    assert marginal_probability(refs, out, online=False, a=1.0)[0, 0] == pytest.approx(0.4)
    assert marginal_probability(refs, out, online=False, a=0.0)[0, 0] == pytest.approx(0.7)


def test_bad_settings_raise() -> None:
    x, z = Signals(_PX, _REFS_X), Signals(_PZ, _REFS_Z)
    with pytest.raises(ValueError, match="a must"):
        rmia_scores(x, z, a=1.5)
    with pytest.raises(ValueError, match="gamma"):
        rmia_scores(x, z, gamma=0.0)
    with pytest.raises(ValueError, match="probabilities"):
        rmia_scores(Signals(_PX + 1, _REFS_X), z)
    with pytest.raises(ValueError, match="same references"):
        rmia_scores(x, Signals(_PZ, _REFS_Z[:1]))


def test_true_class_probability() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [3.0, -1.0]]])  # [N=2, Q=2, C]
    labels = torch.tensor([0, 1])
    p = true_class_probability(logits, labels)
    expected = torch.softmax(logits.double(), -1)[[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1]]
    np.testing.assert_allclose(p.ravel(), expected.numpy())
    p2 = true_class_probability(logits, labels, temperature=2.0)
    assert p2[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_attack_result_keys_and_shadow_threshold() -> None:
    rng = np.random.default_rng(2)
    k, n, m = 4, 100, 50
    member = np.arange(n) < n // 2
    px = np.clip(rng.uniform(0.2, 0.8, size=n) + 0.2 * member, 0, 1)
    target = Signals(px, rng.uniform(0.2, 0.8, size=(k, n)), None, member)
    pop = Signals(rng.uniform(0.2, 0.8, size=m), rng.uniform(0.2, 0.8, size=(k, m)))
    out = rmia_attack(target, pop, n_bootstrap=0)
    assert out["threshold"] == 0.5 and out["threshold_from"] == "default"
    assert out["auc"] > 0.7 and out["references"] == k and out["population"] == m
    shadow_out = rmia_attack(target, pop, shadow=target, shadow_population=pop, n_bootstrap=0)
    assert shadow_out["threshold_from"] == "shadow"
    assert shadow_out["balanced_acc"] >= out["balanced_acc"]  # in-sample best threshold
    with pytest.raises(ValueError, match="both"):
        rmia_attack(target, pop, shadow=target)


def test_a_ratio_equal_to_gamma_does_not_count() -> None:
    # The authors count LR(x, z) > 1 (strictly): x identical to z beats only the other z.
    refs = np.array([[0.5, 0.5]])
    x = Signals(np.array([0.5]), refs[:, :1])
    z = Signals(np.array([0.5, 0.25]), refs)
    np.testing.assert_allclose(rmia_scores(x, z, a=1.0), [0.5])


def _pairs_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    pos, neg = scores[truth], scores[~truth]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float(wins.mean())


def test_tune_offline_a_by_brute_force_on_the_references_only() -> None:
    rng = np.random.default_rng(3)
    k, n, m = 4, 24, 10
    incl = np.zeros((k, n), dtype=bool)
    incl[0], incl[2] = rng.permutation(n) < n // 2, rng.permutation(n) < n // 2
    incl[1], incl[3] = ~incl[0], ~incl[2]  # complementary pairs, as the plan draws them
    # members get a higher true-class probability under the reference that trained on them
    refs = np.clip(rng.uniform(0.2, 0.7, size=(k, n)) + 0.25 * incl, 0, 1)
    incl_z = np.zeros((k, m), dtype=bool)
    refs_z = rng.uniform(0.2, 0.7, size=(k, m))
    got = tune_offline_a(Signals(refs[0], refs, incl), Signals(refs_z[0], refs_z, incl_z))

    def brute(a: float) -> float:  # mean over pseudo-targets of the pairwise-counted AUC
        aucs = []
        for j in range(k):
            others = [i for i in range(k) if i != j]
            out = ~incl[others]
            p_x = ((1 + a) * (refs[others] * out).sum(0) / out.sum(0) + 1 - a) / 2
            p_z = ((1 + a) * refs_z[others].mean(0) + 1 - a) / 2
            lr = (refs[j] / p_x)[:, None] / (refs_z[j] / p_z)[None, :]
            aucs.append(_pairs_auc((lr > 1.0).mean(1), incl[j]))
        return float(np.mean(aucs))

    expected = [brute(a) for a in got["grid"]]
    np.testing.assert_allclose(got["auc"], expected)
    assert got["a"] == got["grid"][int(np.argmax(expected))]
    assert got["pseudo_targets"] == k and got["grid"] == [round(0.1 * i, 1) for i in range(11)]
    with pytest.raises(ValueError, match="3 references"):
        tune_offline_a(Signals(refs[0], refs[:2], incl[:2]), Signals(refs_z[0], refs_z[:2]))


def test_rmia_settings_are_checked_before_anything_runs() -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.errors import UserError

    assert compose([]).mia.rmia_a == "auto" and compose([]).mia.rmia_gamma == 1.0
    with pytest.raises(UserError, match="mia.rmia_a"):
        compose(["mia.rmia_a=1.5"])
    with pytest.raises(UserError, match="at least 3"):
        compose(["attacks=[rmia]", "mia.references=2"])
    assert compose(["attacks=[rmia]", "mia.references=2", "mia.rmia_a=0.3"]).mia.rmia_a == 0.3
