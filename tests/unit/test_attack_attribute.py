"""Attribute-inference probes against embeddings that do or do not encode the attribute."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_talos.attacks.attribute import attribute_metrics, run_probes


def _embeddings(n: int, encode: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 16]`` Gaussian embeddings; with ``encode`` each attribute adds its own direction."""
    rng = np.random.default_rng(seed)
    # Imbalanced attribute (majority class ~50%), so the baseline is well above 1/K.
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    x = rng.normal(size=(n, 16))
    if encode:
        directions = np.random.default_rng(99).normal(size=(3, 16))
        x += 1.5 * directions[y]
    return x, y


@pytest.mark.parametrize("encode", [True, False])
def test_probes_against_majority_baseline(encode: bool) -> None:
    train_x, train_y = _embeddings(400, encode, 0)
    test_x, test_y = _embeddings(400, encode, 1)
    out = run_probes(
        train_x,
        train_y,
        test_x,
        test_y,
        3,
        mlp_kwargs={"epochs": 10, "hidden": (32, 32), "batch_size": 32},
        n_bootstrap=200,
    )
    assert out["strongest"] in ("mlp", "logistic", "knn")
    for name in ("mlp", "logistic", "knn"):
        r = out[name]
        assert r["n"] == 400
        lo, hi = r["ci95"]["acc"]
        assert lo <= r["acc"] <= hi
        if encode:
            assert r["acc"] > r["majority_baseline"] + 0.2
        else:
            assert r["acc"] < r["majority_baseline"] + 0.05
    best = out[out["strongest"]]["acc"]
    assert best == max(out[name]["acc"] for name in ("mlp", "logistic", "knn"))


def test_attribute_metrics_hand_case() -> None:
    true = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    pred = np.array([0, 0, 1, 0, 2, 1, 0, 0])
    out = attribute_metrics(pred, true, 3, majority_from=np.array([1, 1, 0]), n_bootstrap=0)
    assert out["acc"] == pytest.approx(6 / 8)
    assert out["balanced_acc"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["majority_baseline"] == pytest.approx(2 / 8)  # train majority is class 1
    assert out["ci95"]["acc"] == [0.75, 0.75] and out["n"] == 8
    with pytest.raises(ValueError, match="non-empty"):
        attribute_metrics(pred[:3], true, 3, majority_from=true)
