"""Attribute inference from embeddings: fresh probes trained on target-train, tested on target-test.

The paper's adversary is an MLP ``d-128-128-128-K`` (SGD); a linear and a kNN probe are added so
that an encoder that only hides the attribute from one kind of adversary (Elazar & Goldberg
2018) is still caught.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from lightning_talos.attacks.small_mlp import SGD, SmallMLP, single_thread, train_epochs

PROBES = ("mlp", "logistic", "knn")


def _arrays(x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features as float64 ``[N, d]`` and labels as int64 ``[N]`` NumPy arrays."""
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if y is not None:
        y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y).astype(np.int64)
    return x, y


def _standardise(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both sets with the TRAIN mean and standard deviation."""
    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x), scaler.transform(test_x)


def mlp_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    hidden: Sequence[int] = (128, 128, 128),
    lr: float = 0.01,
    momentum: float = 0.0,
    batch_size: int = 512,
    epochs: int = 100,
    standardize: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """The paper's attribute adversary: MLP ``d-128-128-128-K`` trained with SGD and cross-entropy.

    Trained in NumPy (:mod:`~lightning_talos.attacks.small_mlp`), with PyTorch's initialisation,
    batches and update rule.

    No activation on the output logits. ``standardize=True`` is a deviation from the paper: the
    features are standardised with the train statistics first, because plain SGD at lr 0.01
    barely moves on raw, unnormalised embeddings within 100 epochs and would understate the leak.
    Pass ``standardize=False`` for the paper's exact setting.

    Args:
        train_x: ``[N, d]`` training embeddings.
        train_y: ``[N]`` attribute labels in ``[0, num_classes)``.
        test_x: ``[M, d]`` test embeddings.
        num_classes: Number of attribute classes ``K``.
        hidden: Hidden widths.
        lr: SGD learning rate.
        momentum: SGD momentum (0 in the paper).
        batch_size: Mini-batch size.
        epochs: Training epochs.
        standardize: Standardise features with the train statistics.
        seed: Seed of initialisation and shuffling.

    Returns:
        ``int64 [M]`` predicted attributes.
    """
    train_x, train_y = _arrays(train_x, train_y)
    test_x, _ = _arrays(test_x)
    if standardize:
        train_x, test_x = _standardise(train_x, test_x)
    model = SmallMLP.seeded(train_x.shape[1], hidden, num_classes, seed)
    generator = torch.Generator().manual_seed(seed)
    with single_thread():
        for _ in train_epochs(
            model,
            SGD(lr=lr, momentum=momentum),
            train_x.astype(np.float32),
            train_y,
            epochs=epochs,
            batch_size=batch_size,
            generator=generator,
        ):
            pass
        return model.logits(test_x.astype(np.float32)).argmax(axis=1).astype(np.int64)


def logistic_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    inverse_l2: float = 1.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Multinomial logistic regression on standardised features.

    Args:
        train_x: ``[N, d]`` training embeddings.
        train_y: ``[N]`` attribute labels.
        test_x: ``[M, d]`` test embeddings.
        num_classes: Number of attribute classes (unused by the model; kept for a uniform API).
        inverse_l2: Inverse L2 regularisation strength (scikit-learn's ``C``).
        max_iter: L-BFGS iteration cap (generous: embeddings are several hundred wide).
        seed: Solver seed.

    Returns:
        ``int64 [M]`` predicted attributes.
    """
    train_x, train_y = _arrays(train_x, train_y)
    test_x, _ = _arrays(test_x)
    train_x, test_x = _standardise(train_x, test_x)
    model = LogisticRegression(C=inverse_l2, max_iter=max_iter, random_state=seed)
    return model.fit(train_x, train_y).predict(test_x).astype(np.int64)


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    k: int = 10,
) -> np.ndarray:
    """k-nearest-neighbour vote on L2-normalised features (cosine geometry, as SimCLR's).

    Args:
        train_x: ``[N, d]`` training embeddings.
        train_y: ``[N]`` attribute labels.
        test_x: ``[M, d]`` test embeddings.
        num_classes: Number of attribute classes (kept for a uniform API).
        k: Number of neighbours (capped at ``N``).

    Returns:
        ``int64 [M]`` predicted attributes.
    """
    train_x, train_y = _arrays(train_x, train_y)
    test_x, _ = _arrays(test_x)

    def normalise(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    model = KNeighborsClassifier(n_neighbors=min(k, len(train_x)))
    return model.fit(normalise(train_x), train_y).predict(normalise(test_x)).astype(np.int64)


def attribute_metrics(
    pred: np.ndarray,
    true: np.ndarray,
    num_classes: int,
    *,
    majority_from: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Accuracy of an attribute probe next to the majority-class baseline.

    Args:
        pred: ``[M]`` predicted attributes.
        true: ``[M]`` true attributes.
        num_classes: Number of attribute classes.
        majority_from: The TRAIN attributes; the baseline predicts their most frequent class.
        n_bootstrap: Bootstrap resamples for the accuracy interval (0: the point estimate).
        seed: Bootstrap seed.

    Returns:
        ``acc``, ``balanced_acc``, ``macro_f1`` (over the classes present in ``true`` or
        ``pred``), ``majority_baseline`` (test accuracy of the train majority class), ``ci95``
        ``{"acc": [lo, hi]}`` (percentile bootstrap), ``n``.

    Raises:
        ValueError: If ``pred`` and ``true`` differ in length or are empty.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    true = np.asarray(true).astype(np.int64).ravel()
    if len(pred) != len(true) or len(true) == 0:
        raise ValueError(f"need equal, non-empty pred and true, got {len(pred)} and {len(true)}")
    majority = int(np.bincount(np.asarray(majority_from).astype(np.int64).ravel()).argmax())
    correct = (pred == true).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = balanced_accuracy_score(true, pred)
    acc = float(accuracy_score(true, pred))
    return {
        "acc": acc,
        "balanced_acc": float(balanced),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "majority_baseline": float(np.mean(true == majority)),
        "ci95": {"acc": _bootstrap_mean(correct, n_bootstrap, seed) if n_bootstrap else [acc] * 2},
        "n": len(true),
    }


def _bootstrap_mean(values: np.ndarray, n_bootstrap: int, seed: int) -> list[float]:
    """Percentile 95% bootstrap interval of a mean, resampled in vectorised blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, 4_000_000 // len(values))
    means = []
    for start in range(0, n_bootstrap, block):
        idx = rng.integers(0, len(values), size=(min(block, n_bootstrap - start), len(values)))
        means.append(values[idx].mean(axis=1))
    lo, hi = np.percentile(np.concatenate(means), [2.5, 97.5])
    return [float(lo), float(hi)]


def run_probes(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    probes: Sequence[str] = PROBES,
    mlp_kwargs: dict | None = None,
    knn_k: int = 10,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Train each probe on (train_x, train_y) and score it on (test_x, test_y).

    Args:
        train_x: ``[N, d]`` target-train embeddings.
        train_y: ``[N]`` their sensitive attribute.
        test_x: ``[M, d]`` target-test embeddings.
        test_y: ``[M]`` their sensitive attribute.
        num_classes: Number of attribute classes.
        probes: Subset of ``("mlp", "logistic", "knn")``.
        mlp_kwargs: Extra keyword arguments for :func:`mlp_probe`.
        knn_k: Neighbours of the kNN probe.
        n_bootstrap: Bootstrap resamples for the intervals.
        seed: Seed of the probes and the bootstrap.

    Returns:
        ``{probe name: attribute_metrics dict, ..., "strongest": name of the highest-acc probe}``.

    Raises:
        ValueError: If a probe name is unknown or ``probes`` is empty.
    """
    unknown = set(probes) - set(PROBES)
    if unknown or not probes:
        raise ValueError(f"probes must be a non-empty subset of {PROBES}, got {list(probes)}")
    train_x, train_y = _arrays(train_x, train_y)
    test_x, test_y = _arrays(test_x, test_y)
    fits = {
        "mlp": lambda: mlp_probe(
            train_x, train_y, test_x, num_classes, seed=seed, **(mlp_kwargs or {})
        ),
        "logistic": lambda: logistic_probe(train_x, train_y, test_x, num_classes, seed=seed),
        "knn": lambda: knn_probe(train_x, train_y, test_x, num_classes, k=knn_k),
    }
    out: dict = {}
    for name in probes:
        out[name] = attribute_metrics(
            fits[name](),
            test_y,
            num_classes,
            majority_from=train_y,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    out["strongest"] = max(probes, key=lambda name: out[name]["acc"])
    return out
