"""LiRA, the likelihood-ratio attack with reference models (Carlini et al., IEEE S&P 2022).

Per example, the attack compares the attacked model's *logit-scaled confidence* of the true
label, ``phi = log(p_y / (1 - p_y))``, with the distribution of the same statistic over
reference models that did (IN) or did not (OUT) train on the example, each modelled as a
Gaussian:

* online (IN and OUT references): ``score = log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
* offline (OUT references only): the one-sided test of ``phi`` against ``Z ~ N(mu_out, s_out)``
  (members sit high): its p-value is ``Pr[Z > phi] = 1 - Phi(t)`` with
  ``t = (phi - mu_out) / s_out``, and the score is ``t`` itself, which ranks examples exactly
  as the paper's ``Phi(t) = Pr[Z < phi]`` does but never saturates (``Phi(t)`` rounds to 1 in
  float64 beyond ``t ~ 8``, where an overfit model's members and a tiny per-example variance
  put many of them).

Queries: the statistic is read on a fixed set of augmented copies of each example (horizontal
flip and small shifts, :func:`augmented_queries`), the same copies for the attacked model and
every reference. Each query ``q`` gets its own Gaussians (a diagonal multivariate fit) and the
score is the mean over queries of the per-query score: online the mean log likelihood ratio
(the authors' code); offline the mean ``t``, Stouffer's combination of the per-query one-sided
tests (``Phi(sqrt(Q) * score)`` is the combined ``1 - p``).

Variance: with few references a per-example variance is noisy, so below
``global_variance_below`` references one variance per query (and per IN/OUT group) is pooled
over all examples: the within-example sample variance with ``sum_i (n_i - 1)`` degrees of
freedom (never the spread of the per-example means). The means stay per example.

Everything here is NumPy on arrays the pipeline has already computed; no model is touched
except in :func:`query_logits`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lightning_talos.attacks.metrics import threshold_metrics

Predict = Callable[[Tensor], Tensor]
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------- queries
def query_offsets(
    *, flip: bool = True, shifts: Sequence[int] = (0,)
) -> list[tuple[bool, int, int]]:
    """The fixed query set: ``(flip, dx, dy)`` for every flip x shift x shift, in a fixed order.

    Args:
        flip: Include the horizontally flipped copy of every shift.
        shifts: Pixel offsets per axis (e.g. ``(-2, 0, 2)``); ``(0,)`` = no shift.

    Returns:
        ``Q = (1 + flip) * len(shifts) ** 2`` tuples; the first is the unshifted original when
        ``0`` is in ``shifts``.

    Raises:
        ValueError: If ``shifts`` is empty or has duplicates.
    """
    shifts = [int(s) for s in shifts]
    if not shifts or len(set(shifts)) != len(shifts):
        raise ValueError(f"shifts must be non-empty and distinct, got {shifts}")
    shifts = sorted(shifts, key=lambda s: (abs(s), s))  # 0 first
    flips = (False, True) if flip else (False,)
    return [(f, dx, dy) for f in flips for dx in shifts for dy in shifts]


def _shift(x: Tensor, dx: int, dy: int) -> Tensor:
    """Translate ``[..., H, W]`` by ``(dx, dy)`` pixels with reflect padding (as Carlini et al.)."""
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    flat = x.reshape(-1, *x.shape[-3:])
    padded = F.pad(flat, (p, p, p, p), mode="reflect")
    out = padded[..., p - dy : p - dy + h, p - dx : p - dx + w]
    return out.reshape(x.shape)


def augmented_queries(images: Tensor, *, flip: bool = True, shifts: Sequence[int] = (0,)) -> Tensor:
    """The query set of a batch (deterministic: no random draws, same for every model).

    Args:
        images: ``[B, C, H, W]`` images, as the model's eval transform gives them.
        flip: Add horizontally flipped copies (the training augmentation of every recipe here).
        shifts: Pixel offsets per axis, reflect-padded; each must be smaller than ``H`` and ``W``.

    Returns:
        ``[Q, B, C, H, W]`` in the order of :func:`query_offsets`.

    Raises:
        ValueError: If ``images`` is not 4-D or a shift is out of range.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(images.shape)}")
    offsets = query_offsets(flip=flip, shifts=shifts)
    if max(abs(s) for _, s, _ in offsets) >= min(images.shape[-2:]):
        raise ValueError(f"shifts {list(shifts)} too large for images {tuple(images.shape)}")
    flipped = images.flip(-1) if flip else images
    return torch.stack([_shift(flipped if f else images, dx, dy) for f, dx, dy in offsets])


@torch.no_grad()
def query_logits(
    predict: Predict,
    images: Tensor,
    *,
    flip: bool = True,
    shifts: Sequence[int] = (0,),
    batch_size: int = 256,
) -> Tensor:
    """Logits of a model on every query of every image: the one cache LiRA and RMIA read.

    Args:
        predict: Maps images ``[b, C, H, W]`` to logits ``[b, classes]`` (eval mode).
        images: ``[N, C, H, W]``.
        flip: See :func:`augmented_queries`.
        shifts: See :func:`augmented_queries`.
        batch_size: Images per chunk (each chunk costs ``Q`` forward passes of this size).

    Returns:
        ``float32 [N, Q, classes]`` on the CPU.

    Raises:
        ValueError: If ``batch_size < 1`` or :func:`augmented_queries` refuses the input.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    for start in range(0, len(images), batch_size):
        queries = augmented_queries(images[start : start + batch_size], flip=flip, shifts=shifts)
        q, b = queries.shape[:2]
        logits = predict(queries.flatten(0, 1)).float().view(q, b, -1)
        parts.append(logits.transpose(0, 1).cpu())
    n_q = len(query_offsets(flip=flip, shifts=shifts))
    return torch.cat(parts) if parts else torch.empty(0, n_q, 0)


def logit_confidence(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> np.ndarray:
    """LiRA's statistic ``phi = log(p_y / (1 - p_y)) = logit_y - logsumexp_{j != y} logit_j``.

    Computed from logits, so it stays finite where ``p_y`` rounds to 0 or 1.

    Args:
        logits: ``[..., C]`` with ``C >= 2`` (e.g. ``[N, Q, C]`` from :func:`query_logits`).
        labels: True labels, broadcastable to ``logits.shape[:-1]`` (``[N, 1]`` for ``[N, Q, C]``;
            a 1-D ``[N]`` is taken as one label per example, the first axis).

    Returns:
        ``float64 [...]``, ``logits.shape[:-1]``.

    Raises:
        ValueError: If ``C < 2`` or a label is out of range.
    """
    z = torch.as_tensor(logits).detach().cpu().double()
    y = broadcast_labels(labels, z)
    z_y = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    others = z.scatter(-1, y.unsqueeze(-1), float("-inf"))
    return (z_y - torch.logsumexp(others, dim=-1)).numpy()


def broadcast_labels(labels: Tensor | np.ndarray, logits: Tensor) -> Tensor:
    """Labels as ``int64`` of shape ``logits.shape[:-1]`` (a 1-D ``[N]`` indexes axis 0).

    Raises:
        ValueError: If there are fewer than 2 classes or a label is out of range.
    """
    n_classes = logits.shape[-1]
    if n_classes < 2:
        raise ValueError(f"need logits [..., C] with C >= 2, got shape {tuple(logits.shape)}")
    y = torch.as_tensor(labels).detach().cpu().long()
    if y.dim() == 1 and logits.dim() > 2:
        y = y.view(-1, *([1] * (logits.dim() - 2)))
    y = y.expand(logits.shape[:-1])
    if y.numel() and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    return y


# ---------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Signals:
    """One attacked model's per-example statistic and the references' on the same examples.

    Attributes:
        model: ``[N, Q]`` (or ``[N]`` for one query) statistic of the attacked model.
        references: ``[K, N, Q]`` (or ``[K, N]``) the same statistic under each reference.
        inclusion: ``bool [K, N]``, ``True`` where reference ``k`` trained on example ``i``
            (:meth:`~lightning_talos.attacks.references.ReferencePlan.inclusion_of`); ``None``
            = no reference trained on any of them (target candidates in offline mode).
        is_member: ``bool [N]`` ground truth for the attacked model; ``None`` for population
            points (RMIA's ``z``).
    """

    model: np.ndarray
    references: np.ndarray
    inclusion: np.ndarray | None = None
    is_member: np.ndarray | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(model [N, Q], references [K, N, Q], inclusion bool [K, N])``, float64, checked.

        Raises:
            ValueError: If shapes disagree or a value is not finite.
        """
        model = np.asarray(self.model, dtype=np.float64)
        refs = np.asarray(self.references, dtype=np.float64)
        if model.ndim == 1:
            model = model[:, None]
        if refs.ndim == 2:
            refs = refs[:, :, None]
        if model.ndim != 2 or refs.ndim != 3 or refs.shape[1:] != model.shape:
            raise ValueError(
                "expected model [N, Q] and references [K, N, Q], got "
                f"{np.shape(self.model)} and {np.shape(self.references)}"
            )
        if not (np.all(np.isfinite(model)) and np.all(np.isfinite(refs))):
            raise ValueError("signals must be finite (got NaN or inf)")
        k, n = refs.shape[:2]
        if self.inclusion is None:
            inclusion = np.zeros((k, n), dtype=bool)
        else:
            inclusion = np.asarray(self.inclusion).astype(bool)
            if inclusion.shape != (k, n):
                raise ValueError(f"inclusion has shape {inclusion.shape}, expected {(k, n)}")
        return model, refs, inclusion

    def ground_truth(self, name: str) -> np.ndarray:
        """``is_member`` as ``bool [N]``.

        Raises:
            ValueError: If it is ``None`` (``name`` says which set, in the message).
        """
        if self.is_member is None:
            raise ValueError(f"{name} signals need is_member (ground truth) for the metrics")
        return np.asarray(self.is_member).astype(bool)


# ---------------------------------------------------------------------------------- fits
def gaussian_fit(
    references: np.ndarray, mask: np.ndarray, *, pooled: bool, min_std: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and (per-example or pooled) standard deviation of the masked scores.

    Args:
        references: ``[K, N, Q]`` reference statistics.
        mask: ``bool [K, N]``: which references enter example ``i``'s fit.
        pooled: One variance per query, pooled over examples:
            ``sum_i sum_k (x_kiq - mean_iq)^2 / sum_i (n_i - 1)``; otherwise each example's own
            sample variance (``ddof = 1``).
        min_std: Floor on the standard deviation (identical reference scores give 0).

    Returns:
        ``(mean [N, Q], std)`` with ``std`` ``[N, Q]``, or ``[1, Q]`` when ``pooled``.

    Raises:
        ValueError: If an example has no selected reference, or the variance has no degree of
            freedom (pooled: every example has one reference; per example: one has fewer than 2).
    """
    counts = mask.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(
            f"{int(np.sum(counts == 0))} examples have no reference in this group; "
            "LiRA needs at least one per example (more references, or offline mode)"
        )
    w = mask[:, :, None].astype(np.float64)
    mean = (references * w).sum(axis=0) / counts[:, None]
    squares = (((references - mean[None]) ** 2) * w).sum(axis=0)
    if pooled:
        dof = int(np.sum(counts - 1))
        if dof < 1:
            raise ValueError(
                "a pooled variance needs an example with >= 2 references in the group; "
                "use more references"
            )
        var = squares.sum(axis=0, keepdims=True) / dof
    else:
        if np.any(counts < 2):
            raise ValueError("a per-example variance needs >= 2 references per example")
        var = squares / (counts[:, None] - 1)
    return mean, np.maximum(np.sqrt(var), min_std)


def _log_normal_pdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - _LOG_SQRT_2PI


def lira_scores(
    signals: Signals,
    *,
    online: bool = False,
    global_variance_below: int = 64,
    min_std: float = 1e-6,
) -> np.ndarray:
    """LiRA membership scores (higher = member) of the attacked model's examples.

    Args:
        signals: The attacked model's statistic ``[N, Q]``, the references' ``[K, N, Q]`` and
            their inclusion ``[K, N]`` (e.g. :func:`logit_confidence` of :func:`query_logits`).
        online: Fit IN and OUT Gaussians and score the likelihood ratio; otherwise only the
            OUT references (``inclusion == False``) enter and the score is one-sided.
        global_variance_below: Use one pooled variance per query (and group) when the number
            of references ``K`` is below this (Carlini et al. fix the variance below 64).
        min_std: Floor on every standard deviation.

    Returns:
        ``float64 [N]``: online the mean over queries of the log likelihood ratio
        ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``; offline the mean over queries
        of ``t = (phi - mu_out) / s_out`` (one-sided: ``Phi(sqrt(Q) * score)`` is one minus the
        combined p-value ``Pr[Z > phi]``).

    Raises:
        ValueError: If shapes disagree, or a group lacks references (see :func:`gaussian_fit`).
    """
    model, refs, inclusion = signals.arrays()
    pooled = refs.shape[0] < global_variance_below
    mu_out, s_out = gaussian_fit(refs, ~inclusion, pooled=pooled, min_std=min_std)
    if not online:
        return ((model - mu_out) / s_out).mean(axis=1)
    mu_in, s_in = gaussian_fit(refs, inclusion, pooled=pooled, min_std=min_std)
    log_ratio = _log_normal_pdf(model, mu_in, s_in) - _log_normal_pdf(model, mu_out, s_out)
    return log_ratio.mean(axis=1)


# ---------------------------------------------------------------------------------- results
def lira_attack(
    target: Signals,
    *,
    shadow: Signals | None = None,
    online: bool = False,
    global_variance_below: int = 64,
    min_std: float = 1e-6,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """LiRA against the target, with the result keys of the other attacks.

    Args:
        target: Signals of the target model on its candidates (``is_member`` required).
        shadow: Optional signals of the shadow model on its own candidates, with the inclusion
            of those candidates in the references (offline: each shadow candidate is in the
            attacker's pool, so about half the references are OUT for it). Used only to
            calibrate the threshold of the hard decisions (see :func:`threshold_metrics`);
            without it the threshold is the natural 0: online "IN as likely as OUT", offline
            "``phi`` above the OUT mean" (p-value 1/2).
        online: See :func:`lira_scores`.
        global_variance_below: See :func:`lira_scores`.
        min_std: See :func:`lira_scores`.
        n_bootstrap: Bootstrap resamples for ``ci95``.
        seed: Bootstrap seed.

    Returns:
        The :func:`threshold_metrics` dict plus ``online`` (bool), ``references`` (K),
        ``queries`` (Q) and ``pooled_variance`` (bool).

    Raises:
        ValueError: If ground truth is missing, shapes disagree or a group lacks references.
    """
    settings = {
        "online": online,
        "global_variance_below": global_variance_below,
        "min_std": min_std,
    }
    scores = lira_scores(target, **settings)
    shadow_scores = shadow_member = None
    if shadow is not None:
        shadow_scores = lira_scores(shadow, **settings)
        shadow_member = shadow.ground_truth("shadow")
    _, refs, _ = target.arrays()
    out = threshold_metrics(
        scores,
        target.ground_truth("target"),
        default_threshold=0.0,
        shadow_scores=shadow_scores,
        shadow_is_member=shadow_member,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    out.update(
        online=online,
        references=int(refs.shape[0]),
        queries=int(refs.shape[2]),
        pooled_variance=bool(refs.shape[0] < global_variance_below),
    )
    return out
