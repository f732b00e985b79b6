"""Label-only membership inference: decision-boundary distance and augmentation robustness.

The attacker only sees the predicted label (the argmax of ``predict``). Members of an overfit
model tend to sit farther from the decision boundary and to keep their label under small
augmentations (Choquette-Choo et al. 2021; Li & Zhang 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lightning_talos.attacks.metrics import best_threshold, membership_metrics

Predict = Callable[[Tensor], Tensor]


@torch.no_grad()
def _labels(predict: Predict, x: Tensor, batch_size: int) -> Tensor:
    """Predicted labels ``[N]`` of ``x``, queried in batches."""
    parts = [predict(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).to(x.device) if parts else torch.empty(0, dtype=torch.long)


def _is_adv(predict: Predict, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """Bool ``[n]``: is the label of ``x`` different from ``y``."""
    return _labels(predict, x, batch_size) != y


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """Per-sample vector ``[n]`` broadcastable against images ``[n, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _norms(x: Tensor) -> Tensor:
    """Per-sample L2 norms ``[n]``."""
    return x.flatten(1).norm(dim=1)


def _binary_search(
    predict: Predict, x0: Tensor, x_adv: Tensor, y: Tensor, steps: int, batch_size: int
) -> Tensor:
    """Move each adversarial point along the segment towards ``x0`` onto the boundary.

    Keeps the invariant "``x0`` side is correctly labelled, ``high`` side is adversarial".

    Returns:
        The adversarial end of the final bracket, ``[n, ...]``.
    """
    low = torch.zeros(len(x0), device=x0.device)
    high = torch.ones(len(x0), device=x0.device)
    for _ in range(steps):
        mid = (low + high) / 2
        adv = _is_adv(predict, x0 + _expand(mid, x0) * (x_adv - x0), y, batch_size)
        high = torch.where(adv, mid, high)
        low = torch.where(adv, low, mid)
    return x0 + _expand(high, x0) * (x_adv - x0)


def _initial_adversarial(
    predict: Predict,
    x0: Tensor,
    y: Tensor,
    pool: Tensor,
    pool_labels: Tensor,
    tries: int,
    batch_size: int,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """A misclassified starting point per sample.

    First uniform noise (up to ``tries`` draws), then, for samples still without one, a random
    image of the pool whose predicted label differs from ``y`` (the Boundary-attack start; noise
    alone often lands in one class, which can be ``y``).

    Returns:
        ``(x_adv [n, ...], found [n] bool)``.
    """
    x_adv = x0.clone()
    found = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    for _ in range(tries):
        if found.all():
            break
        noise = torch.rand(x0.shape, generator=gen, device=x0.device)
        hit = ~found & _is_adv(predict, noise, y, batch_size)
        x_adv[hit], found = noise[hit], found | hit
    # Pool fallback: a random other-labelled image, chosen without per-sample query loops.
    keys = torch.rand((len(x0), len(pool)), generator=gen, device=x0.device)
    keys[pool_labels.unsqueeze(0) == y.unsqueeze(1)] = -1.0
    best, choice = keys.max(dim=1)
    use = ~found & (best >= 0)
    x_adv[use], found = pool[choice[use]], found | use
    return x_adv, found


def _gradient_direction(
    predict: Predict,
    x_b: Tensor,
    y: Tensor,
    delta: Tensor,
    samples: int,
    batch_size: int,
    gen: torch.Generator,
) -> Tensor:
    """Monte-Carlo estimate of the unit direction towards the adversarial side (HopSkipJump).

    ``grad = mean_b (phi_b - mean phi) u_b`` with ``phi_b = +1`` if ``x_b + delta u_b`` is
    adversarial else -1, ``u_b`` uniform on the sphere. Sums are accumulated one draw at a time
    so memory stays at a few copies of the batch.
    """
    s_phi_u = torch.zeros_like(x_b)
    s_u = torch.zeros_like(x_b)
    s_phi = torch.zeros(len(x_b), device=x_b.device)
    for _ in range(samples):
        u = torch.randn(x_b.shape, generator=gen, device=x_b.device)
        u = u / _expand(_norms(u).clamp_min(1e-12), u)
        probe = (x_b + _expand(delta, x_b) * u).clamp(0.0, 1.0)
        phi = _is_adv(predict, probe, y, batch_size).float() * 2 - 1
        s_phi_u += _expand(phi, u) * u
        s_u += u
        s_phi += phi
    mean_phi = s_phi / samples
    # Baseline subtraction reduces variance, but when all signs agree it would cancel everything.
    unanimous = mean_phi.abs() == 1
    baseline = torch.where(unanimous, torch.zeros_like(mean_phi), mean_phi)
    grad = (s_phi_u - _expand(baseline, s_u) * s_u) / samples
    return grad / _expand(_norms(grad).clamp_min(1e-12), grad)


def _step(
    predict: Predict,
    x_b: Tensor,
    grad: Tensor,
    y: Tensor,
    size: Tensor,
    halvings: int,
    batch_size: int,
) -> Tensor:
    """Geometric step-size search: halve each step until ``x_b + size * grad`` is adversarial.

    Samples that never succeed keep ``x_b`` (which is adversarial).
    """
    out = x_b.clone()
    pending = torch.ones(len(x_b), dtype=torch.bool, device=x_b.device)
    for _ in range(halvings + 1):
        cand = (x_b + _expand(size, x_b) * grad).clamp(0.0, 1.0)
        ok = pending & _is_adv(predict, cand, y, batch_size)
        out[ok] = cand[ok]
        pending &= ~ok
        if not pending.any():
            break
        size = size / 2
    return out


def _hsj_chunk(
    predict: Predict,
    x0: Tensor,
    y: Tensor,
    pool: Tensor,
    pool_labels: Tensor,
    gen: torch.Generator,
    cfg: dict,
) -> Tensor:
    """Boundary distances ``[n]`` of correctly classified samples processed together."""
    x_adv, found = _initial_adversarial(
        predict, x0, y, pool, pool_labels, cfg["init_tries"], cfg["batch_size"], gen
    )
    bs = cfg["binary_search_steps"]
    x_b = _binary_search(predict, x0, x_adv, y, bs, cfg["batch_size"])
    dim = x0[0].numel()
    used = cfg["init_tries"] + bs
    per_iteration = cfg["grad_samples"] + cfg["step_halvings"] + 1 + bs
    for t in range(1, cfg["num_iterations"] + 1):
        if used + per_iteration > cfg["max_queries"]:
            break
        used += per_iteration
        dist = _norms(x_b - x0)
        # HopSkipJump's L2 settings: probe radius delta = dist / d, first step dist / sqrt(t).
        delta = (dist / dim).clamp_min(1e-6)
        grad = _gradient_direction(
            predict, x_b, y, delta, cfg["grad_samples"], cfg["batch_size"], gen
        )
        stepped = _step(
            predict, x_b, grad, y, dist / math.sqrt(t), cfg["step_halvings"], cfg["batch_size"]
        )
        x_b = _binary_search(predict, x0, stepped, y, bs, cfg["batch_size"])
    dist = _norms(x_b - x0)
    return torch.where(found, dist, torch.full_like(dist, math.sqrt(dim)))


def boundary_distance(
    predict: Predict,
    images: Tensor,
    labels: Tensor,
    *,
    max_queries: int = 1000,
    num_iterations: int = 3,
    grad_samples: int = 20,
    init_tries: int = 10,
    binary_search_steps: int = 10,
    step_halvings: int = 8,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """L2 distance of each sample to the decision boundary, HopSkipJump-style (label-only).

    For correctly classified samples: find a misclassified starting point (uniform noise, else
    another-labelled image of ``images``), binary-search onto the boundary, then per iteration
    estimate the gradient direction from ``grad_samples`` sign queries around the boundary point,
    take a geometric step-size search along it and binary-search back onto the boundary. All
    points stay clipped to ``[0, 1]``. Samples are processed in chunks of ``batch_size`` in
    parallel; each query is one batched ``predict`` call.

    Query budget: each sample costs at most ``init_tries + binary_search_steps`` queries before
    the iterations and ``grad_samples + step_halvings + 1 + binary_search_steps`` per iteration;
    iterations stop before ``max_queries`` would be exceeded.

    Args:
        predict: Maps images ``[B, 3, S, S]`` to logits ``[B, C]`` (eval mode; only the argmax
            is used).
        images: ``float [N, 3, S, S]`` in ``[0, 1]``.
        labels: ``[N]`` true labels.
        max_queries: Per-sample query budget.
        num_iterations: HopSkipJump iterations.
        grad_samples: Sign queries per gradient estimate.
        init_tries: Uniform-noise draws tried for the starting point.
        binary_search_steps: Bisection steps of each boundary search.
        step_halvings: Maximum halvings in the step-size search.
        batch_size: Samples per chunk and per ``predict`` call.
        seed: Seed of all random draws.

    Returns:
        ``float64 [N]``: 0 for misclassified samples, ``sqrt(3 S S)`` (the largest distance in
        the unit cube) when no misclassified point was found.

    Raises:
        ValueError: If shapes disagree or a budget is not positive.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if min(batch_size, grad_samples, max_queries) < 1:
        raise ValueError("batch_size, grad_samples and max_queries must be positive")
    cfg = {
        "max_queries": max_queries,
        "num_iterations": num_iterations,
        "grad_samples": grad_samples,
        "init_tries": init_tries,
        "binary_search_steps": binary_search_steps,
        "step_halvings": step_halvings,
        "batch_size": batch_size,
    }
    labels = labels.to(images.device)
    gen = torch.Generator(device=images.device).manual_seed(seed)
    predicted = _labels(predict, images, batch_size)
    correct = predicted == labels
    dist = torch.zeros(len(images), dtype=torch.float64, device=images.device)
    idx = torch.nonzero(correct).flatten()
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        dist[chunk] = _hsj_chunk(
            predict, images[chunk], labels[chunk], images, predicted, gen, cfg
        ).double()
    return dist.cpu().numpy()


def _shift(x: Tensor, dx: int, dy: int) -> Tensor:
    """Translate images ``[N, C, H, W]`` by ``(dx, dy)`` pixels, filling with zeros."""
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


@torch.no_grad()
def augmentation_robustness(
    predict: Predict,
    images: Tensor,
    labels: Tensor,
    *,
    n_aug: int = 10,
    max_shift: int = 2,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Fraction of augmented copies still classified correctly (Choquette-Choo et al.).

    ``n_aug`` augmentations are drawn once from ``seed``, each a horizontal flip (p = 0.5)
    combined with a translation of up to ``max_shift`` pixels per axis (zero fill), and the same
    ``n_aug`` augmentations are applied to every sample. Costs ``n_aug`` forward passes.

    Args:
        predict: Maps images to logits (only the argmax is used).
        images: ``float [N, 3, S, S]``.
        labels: ``[N]`` true labels.
        n_aug: Number of augmented copies.
        max_shift: Largest translation in pixels.
        batch_size: Images per ``predict`` call.
        seed: Seed of the augmentation draws.

    Returns:
        ``float64 [N]`` in ``[0, 1]``.

    Raises:
        ValueError: If ``n_aug`` < 1 or ``max_shift`` < 0.
    """
    if n_aug < 1 or max_shift < 0:
        raise ValueError(f"need n_aug >= 1 and max_shift >= 0, got {n_aug}, {max_shift}")
    gen = torch.Generator().manual_seed(seed)
    flips = torch.rand(n_aug, generator=gen) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (n_aug, 2), generator=gen)
    labels = labels.to(images.device)
    hits = torch.zeros(len(images), dtype=torch.float64, device=images.device)
    for flip, (dx, dy) in zip(flips.tolist(), shifts.tolist()):
        x = _shift(images.flip(-1) if flip else images, dx, dy)
        hits += (_labels(predict, x, batch_size) == labels).double()
    return (hits / n_aug).cpu().numpy()


def label_only_attack(
    shadow_scores: np.ndarray,
    shadow_is_member: np.ndarray,
    target_scores: np.ndarray,
    target_is_member: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Global threshold calibrated on shadow label-only scores, applied to the target.

    Args:
        shadow_scores: ``[Ns]`` scores (boundary distances or robustness) of the shadow model.
        shadow_is_member: ``[Ns]`` 0/1 shadow membership.
        target_scores: ``[Nt]`` scores of the target model.
        target_is_member: ``[Nt]`` 0/1 target membership.
        n_bootstrap: Bootstrap resamples for the intervals.
        seed: Bootstrap seed.

    Returns:
        The :func:`membership_metrics` dict on the target plus ``threshold`` (float).

    Raises:
        ValueError: If a set lacks members or non-members.
    """
    threshold = best_threshold(shadow_scores, shadow_is_member)
    target_scores = np.asarray(target_scores, dtype=np.float64)
    out = membership_metrics(
        target_scores,
        target_is_member,
        target_scores >= threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    out["threshold"] = threshold
    return out
