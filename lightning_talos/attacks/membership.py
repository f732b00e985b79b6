"""Posterior-based membership inference: metric-based (Song & Mittal) and NN-based (ML-Leaks).

Both attacks are calibrated on a SHADOW model's outputs (members = shadow-train, non-members =
shadow-test) and evaluated, unchanged, on the TARGET model's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lightning_talos.attacks.metrics import best_threshold, membership_metrics, rank_auc
from lightning_talos.attacks.outputs import ModelOutputs
from lightning_talos.attacks.small_mlp import Adam, SmallMLP, single_thread, train_epochs

METRICS = ("correctness", "confidence", "entropy", "modified_entropy")

# Smallest probability fed to a log: overconfident models emit posteriors of exactly 0 or 1
# (the released code produced -inf/NaN there and crashed on Talos models).
_EPS = 1e-30


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    """A tensor or array as a float64/int NumPy array on the CPU."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def metric_scores(
    posteriors: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, eps: float = _EPS
) -> dict[str, np.ndarray]:
    """Song & Mittal's per-sample membership scores, each oriented so higher = member.

    Args:
        posteriors: ``[N, C]`` softmax outputs.
        labels: ``[N]`` true labels.
        eps: Clamp for probabilities inside logarithms, so posteriors of exactly 0 or 1 give
            finite scores.

    Returns:
        ``correctness`` (1.0 if argmax == label), ``confidence`` (``p_y``), ``entropy`` (the
        NEGATIVE Shannon entropy) and ``modified_entropy`` (the NEGATIVE of Mentr, i.e.
        ``(1 - p_y) log p_y + sum_{i != y} p_i log(1 - p_i)``, which is <= 0), each ``[N]``
        float64.

    Raises:
        ValueError: If shapes disagree or a label is out of range.
    """
    p = _numpy(posteriors).astype(np.float64)
    y = _numpy(labels).astype(np.int64).ravel()
    if p.ndim != 2 or len(y) != len(p):
        raise ValueError(f"expected posteriors [N, C] and labels [N], got {p.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got [{y.min()}, {y.max()}]")
    rows = np.arange(len(y))
    p_y = p[rows, y]
    log_p = np.log(np.clip(p, eps, 1.0))
    log_1mp = np.log(np.clip(1.0 - p, eps, 1.0))
    is_y = np.zeros_like(p, dtype=bool)
    is_y[rows, y] = True
    others = np.where(is_y, 0.0, p * log_1mp).sum(axis=1)
    return {
        "correctness": (p.argmax(axis=1) == y).astype(np.float64),
        "confidence": p_y,
        "entropy": (p * log_p).sum(axis=1),
        "modified_entropy": (1.0 - p_y) * log_p[rows, y] + others,
    }


def fit_class_thresholds(
    scores: np.ndarray, labels: np.ndarray, is_member: np.ndarray, num_classes: int
) -> np.ndarray:
    """Per-true-class thresholds maximising balanced accuracy (see ``best_threshold``).

    A class with no shadow samples, or whose shadow samples are all members or all non-members,
    gets the global threshold fitted on all samples.

    Args:
        scores: ``[N]`` shadow scores, higher = member.
        labels: ``[N]`` true labels.
        is_member: ``[N]`` 0/1 shadow membership.
        num_classes: Number of classes ``C``.

    Returns:
        ``[C]`` float64 thresholds.

    Raises:
        ValueError: If the shadow data lacks members or non-members altogether.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    is_member = np.asarray(is_member).astype(bool).ravel()
    fallback = best_threshold(scores, is_member)
    thresholds = np.full(num_classes, fallback)
    for c in range(num_classes):
        mask = labels == c
        if is_member[mask].any() and not is_member[mask].all():
            thresholds[c] = best_threshold(scores[mask], is_member[mask])
    return thresholds


def _stack(outputs: ModelOutputs) -> tuple[Tensor, Tensor, np.ndarray]:
    """Posteriors ``[N, C]``, labels ``[N]`` and membership ``[N]`` (members first)."""
    posteriors = torch.cat([outputs.members.posteriors, outputs.nonmembers.posteriors])
    labels = torch.cat([outputs.members.labels, outputs.nonmembers.labels])
    is_member = np.r_[np.ones(len(outputs.members)), np.zeros(len(outputs.nonmembers))]
    return posteriors, labels, is_member.astype(bool)


def _raw(
    outputs: ModelOutputs, metric: str, **metric_kwargs
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw metric scores ``[N]``, true labels ``[N]`` and membership ``[N]`` of one model."""
    posteriors, labels, is_member = _stack(outputs)
    raw = metric_scores(posteriors, labels, **metric_kwargs)[metric]
    return raw, labels.cpu().numpy(), is_member


def metric_attack(
    shadow: ModelOutputs,
    target: ModelOutputs,
    metric: str,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    **metric_kwargs,
) -> dict:
    """Song & Mittal's metric-based attack: calibrated on the shadow, applied to the target.

    ``correctness`` needs no calibration: a sample is called a member iff the model classifies it
    correctly, and its ROC/AUC is that of the 0/1 correctness score. The other metrics call a
    sample a member when its score reaches the threshold of its TRUE class, the thresholds
    fitted on the shadow outputs (:func:`fit_class_thresholds`); their ROC, AUC and TPR at low
    FPR are those of the raw metric value, as in the paper (one global threshold sweeping the
    raw score). ``margin_auc`` is the AUC of ``score - threshold[true class]`` instead: the
    ROC whose operating point at 0 is the per-class decision.

    Args:
        shadow: Shadow model outputs (calibration).
        target: Target model outputs (evaluation).
        metric: One of ``correctness``, ``confidence``, ``entropy``, ``modified_entropy``.
        n_bootstrap: Bootstrap resamples for the intervals.
        seed: Bootstrap seed.
        **metric_kwargs: Passed to :func:`metric_scores` (e.g. ``eps``).

    Returns:
        The :func:`~lightning_talos.attacks.metrics.membership_metrics` dict on the target, plus
        ``shadow`` (the same metrics on the shadow data: for the calibrated metrics the
        in-sample fit, without bootstrap intervals) and, except for ``correctness``,
        ``thresholds`` (list of ``C`` floats) and ``margin_auc`` (float).

    Raises:
        ValueError: If ``metric`` is unknown or a set lacks members or non-members.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    thresholds = None
    if metric != "correctness":
        raw, y, is_member = _raw(shadow, metric, **metric_kwargs)
        thresholds = fit_class_thresholds(raw, y, is_member, shadow.num_classes)
    result: dict = {}
    for name, outputs in (("target", target), ("shadow", shadow)):
        raw, y, is_member = _raw(outputs, metric, **metric_kwargs)
        predictions = raw >= (0.5 if thresholds is None else thresholds[y])
        # The shadow numbers are the in-sample fit, a diagnostic: no intervals for them.
        result[name] = membership_metrics(
            raw,
            is_member,
            predictions,
            n_bootstrap=n_bootstrap if name == "target" else 0,
            seed=seed,
        )
        if thresholds is not None:
            result[name]["margin_auc"] = rank_auc(raw - thresholds[y], is_member)
    out = result["target"]
    if thresholds is not None:
        out["thresholds"] = thresholds.tolist()
    out["shadow"] = result["shadow"]
    return out


def nn_features(
    posteriors: Tensor | np.ndarray, labels: Tensor | np.ndarray, top_k: int = 2
) -> Tensor:
    """ML-Leaks attack features: top-k sorted posteriors plus a "prediction is correct" bit.

    With ``C <= top_k`` (e.g. binary tasks) the whole sorted vector is used (``k = min(k, C)``).

    Args:
        posteriors: ``[N, C]`` softmax outputs.
        labels: ``[N]`` true labels.
        top_k: Number of largest posteriors to keep.

    Returns:
        ``float32 [N, min(top_k, C) + 1]``.

    Raises:
        ValueError: If ``top_k`` < 1.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    p = torch.as_tensor(posteriors).float().cpu()
    y = torch.as_tensor(labels).long().cpu()
    k = min(top_k, p.shape[1])
    top = torch.sort(p, dim=1, descending=True).values[:, :k]
    correct = (p.argmax(dim=1) == y).float().unsqueeze(1)
    return torch.cat([top, correct], dim=1)


def _member_prob(model: SmallMLP, x: np.ndarray) -> np.ndarray:
    """Softmax probability of the member class (column 1), ``[N]`` float64."""
    logits = model.logits(x).astype(np.float64)
    return np.exp(-np.logaddexp(0.0, logits[:, 0] - logits[:, 1]))  # 1 / (1 + e^(l0 - l1))


def _balanced_acc(prob: np.ndarray, y: np.ndarray) -> float:
    """Balanced accuracy of ``prob >= 0.5`` against 0/1 targets."""
    pred = prob >= 0.5
    return float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1) if np.any(y == c)]))


def _split_validation(
    n: int, val_fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random train/validation index split of ``range(n)``."""
    order = torch.randperm(n, generator=generator)
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]


def nn_attack(
    shadow: ModelOutputs,
    target: ModelOutputs,
    *,
    top_k: int = 2,
    hidden: Sequence[int] = (32, 32),
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> dict:
    """ML-Leaks NN attack: an MLP ``(k+1)-32-32-2`` on sorted top-k posteriors + correctness bit.

    Trained with Adam and cross-entropy (in NumPy: :mod:`~lightning_talos.attacks.small_mlp`,
    several times faster than eager PyTorch for this size) on the shadow features (member = 1),
    holding out
    ``val_fraction`` of the shadow samples to pick the best epoch. The output layer has no
    activation (the released code's ReLU on the logits is a defect). Member score = softmax
    probability of the member class; decision = score >= 0.5. Deterministic for a seed: the
    initialisation runs under a forked, seeded global RNG and the split and shuffling use a
    dedicated ``torch.Generator``.

    Args:
        shadow: Shadow model outputs (training).
        target: Target model outputs (evaluation).
        top_k: Number of sorted posteriors used.
        hidden: Hidden widths of the MLP.
        epochs: Training epochs.
        lr: Adam learning rate.
        batch_size: Mini-batch size.
        val_fraction: Fraction of the shadow data held out for validation, in ``[0, 1)``; 0
            disables validation (``best_val`` is then the final model).
        seed: Seed of initialisation, split and shuffling.
        n_bootstrap: Bootstrap resamples for the intervals.

    Returns:
        ``{"final": metrics on the target after the last epoch, "best_val": metrics (without
        bootstrap intervals) of the weights with the best shadow-validation balanced accuracy,
        "best_epoch": int,
        "epochs": int, "val_balanced_acc": float (at best_epoch, NaN without validation)}``,
        each metrics entry a :func:`membership_metrics` dict.

    Raises:
        ValueError: If ``val_fraction`` is outside ``[0, 1)`` or a set lacks a class.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    features, is_member = _features(shadow, top_k)
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = _split_validation(len(features), val_fraction, generator)
    train_idx, val_idx = train_idx.numpy(), val_idx.numpy()
    model = SmallMLP.seeded(features.shape[1], hidden, 2, seed)
    best, best_epoch, best_val = model.copy(), epochs, float("nan")
    with single_thread():
        for epoch in train_epochs(
            model,
            Adam(lr=lr),
            features[train_idx],
            is_member[train_idx].astype(np.int64),
            epochs=epochs,
            batch_size=batch_size,
            generator=generator,
        ):
            if len(val_idx) == 0:
                continue
            val = _balanced_acc(_member_prob(model, features[val_idx]), is_member[val_idx])
            if not val <= best_val:  # first epoch (NaN) or a strict improvement
                best, best_epoch, best_val = model.copy(), epoch, val
        target_x, target_member = _features(target, top_k)

        def evaluate(mlp: SmallMLP, n_bootstrap: int) -> dict:
            prob = _member_prob(mlp, target_x)
            return membership_metrics(
                prob, target_member, prob >= 0.5, n_bootstrap=n_bootstrap, seed=seed
            )

        return {
            "final": evaluate(model, n_bootstrap),
            # a diagnostic beside the headline: no intervals
            "best_val": evaluate(best if len(val_idx) else model, 0),
            "best_epoch": best_epoch,
            "epochs": epochs,
            "val_balanced_acc": best_val,
        }


def _features(outputs: ModelOutputs, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """NN attack features ``[N, k+1]`` float32 and membership ``[N]`` of one model's outputs."""
    posteriors, labels, is_member = _stack(outputs)
    return nn_features(posteriors, labels, top_k).numpy(), is_member
