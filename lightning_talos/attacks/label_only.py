"""Label-only membership inference: decision-boundary distance and augmentation robustness.

The attacker only sees the predicted label (the argmax of ``predict``). Members of an overfit
model tend to sit farther from the decision boundary and to keep their label under small
augmentations (Choquette-Choo et al. 2021; Li & Zhang 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lightning_talos.attacks.metrics import threshold_metrics

Predict = Callable[[Tensor], Tensor]

# Bisection steps after which float32 points stop moving (a guard, not a setting).
_MAX_BISECTIONS = 64


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


def _bisect(
    predict: Predict,
    x0: Tensor,
    x_adv: Tensor,
    y: Tensor,
    tolerance: float,
    abs_tolerance: float,
    batch_size: int,
) -> Tensor:
    """Move each adversarial point along the segment towards ``x0`` onto the boundary.

    Bisects the blend factor ``a`` of ``x0 + a (x_adv - x0)`` keeping the invariant "``low`` is
    labelled ``y``, ``high`` is adversarial", per sample until the bracket is narrower than
    ``max(tolerance * distance, abs_tolerance)`` in L2 units, where ``distance`` is the current
    estimate ``||x_high - x0||``: the boundary then lies within that width of the returned point
    along the segment. Only unfinished samples are queried, so a sample costs about
    ``log2(||x_adv - x0|| / width)`` queries.

    Returns:
        The adversarial end of each final bracket, ``[n, ...]``.
    """
    low = torch.zeros(len(x0), dtype=torch.float64, device=x0.device)
    high = torch.ones_like(low)
    seg_len = _norms(x_adv - x0).double().clamp_min(1e-30)
    # Beyond ~60 halvings the float32 points stop moving; the cap only guards that case.
    for _ in range(_MAX_BISECTIONS):
        width = torch.maximum(tolerance * high, abs_tolerance / seg_len)
        active = torch.nonzero(high - low > width).flatten()
        if len(active) == 0:
            break
        mid = (low[active] + high[active]) / 2
        start, seg = x0[active], x_adv[active] - x0[active]
        adv = _is_adv(predict, start + _expand(mid.to(x0.dtype), seg) * seg, y[active], batch_size)
        high[active] = torch.where(adv, mid, high[active])
        low[active] = torch.where(adv, low[active], mid)
    return x0 + _expand(high.to(x0.dtype), x0) * (x_adv - x0)


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
    adversarial else -1, ``u_b`` uniform on the sphere; after clipping the probe to ``[0, 1]``,
    ``u_b`` is replaced by the step actually taken, ``(probe - x_b) / delta``. Sums are
    accumulated one draw at a time so memory stays at a few copies of the batch.
    """
    s_phi_u = torch.zeros_like(x_b)
    s_u = torch.zeros_like(x_b)
    s_phi = torch.zeros(len(x_b), device=x_b.device)
    d = _expand(delta, x_b)
    for _ in range(samples):
        u = torch.randn(x_b.shape, generator=gen, device=x_b.device)
        probe = (x_b + d * u / _expand(_norms(u).clamp_min(1e-12), u)).clamp(0.0, 1.0)
        u = (probe - x_b) / d
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

    Only samples still searching are queried; those that never succeed keep ``x_b`` (which is
    adversarial).
    """
    out = x_b.clone()
    pending = torch.arange(len(x_b), device=x_b.device)
    for _ in range(halvings + 1):
        cand = (x_b[pending] + _expand(size[pending], grad) * grad[pending]).clamp(0.0, 1.0)
        ok = _is_adv(predict, cand, y[pending], batch_size)
        out[pending[ok]] = cand[ok]
        pending = pending[~ok]
        if len(pending) == 0:
            break
        size = size / 2
    return out


@dataclass(frozen=True)
class _Search:
    """The settings of one boundary search (see :func:`boundary_distance`)."""

    num_iterations: int
    grad_samples: int
    tolerance: float
    abs_tolerance: float
    init_tries: int
    step_halvings: int
    batch_size: int


def _hsj_chunk(
    predict: Predict,
    x0: Tensor,
    y: Tensor,
    pool: Tensor,
    pool_labels: Tensor,
    gen: torch.Generator,
    s: _Search,
) -> Tensor:
    """Boundary distances ``[n]`` of correctly classified samples processed together."""
    x_adv, found = _initial_adversarial(
        predict, x0, y, pool, pool_labels, s.init_tries, s.batch_size, gen
    )
    x_b = _bisect(predict, x0, x_adv, y, s.tolerance, s.abs_tolerance, s.batch_size)
    best = _norms(x_b - x0)
    sqrt_d = math.sqrt(x0[0].numel())
    for t in range(1, s.num_iterations + 1):
        dist = _norms(x_b - x0)
        # HopSkipJump's L2 coupling: probes of radius sqrt(d) * width move about `width` along
        # the boundary normal, as far as the bisection may have left x_b from the boundary, so
        # the probes straddle it (a much smaller radius would see only one side).
        delta = sqrt_d * torch.clamp(s.tolerance * dist, min=s.abs_tolerance)
        grad = _gradient_direction(predict, x_b, y, delta, s.grad_samples, s.batch_size, gen)
        stepped = _step(predict, x_b, grad, y, dist / math.sqrt(t), s.step_halvings, s.batch_size)
        x_b = _bisect(predict, x0, stepped, y, s.tolerance, s.abs_tolerance, s.batch_size)
        # Every x_b is a verified adversarial point, so the smallest distance seen is an upper
        # bound on the true one: keep it (an iteration may move away on a noisy estimate).
        best = torch.minimum(best, _norms(x_b - x0))
    return torch.where(found, best, torch.full_like(best, math.sqrt(x0[0].numel())))


def boundary_distance(
    predict: Predict,
    images: Tensor,
    labels: Tensor,
    *,
    num_iterations: int = 7,
    grad_samples: int = 100,
    tolerance: float | None = None,
    abs_tolerance: float = 1e-5,
    init_tries: int = 10,
    step_halvings: int = 8,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """L2 distance of each sample to the decision boundary, HopSkipJump-style (label-only).

    For correctly classified samples (Chen et al. 2020, L2 version): find a misclassified
    starting point (uniform noise, else another-labelled image of ``images``), bisect onto the
    boundary, then per iteration ``t`` estimate the gradient direction from ``grad_samples``
    sign queries on a sphere around the boundary point, take a geometric step-size search along
    it (first step ``dist / sqrt(t)``, halved until adversarial) and bisect back onto the
    boundary towards the sample. All points stay clipped to ``[0, 1]``. Samples are processed in
    chunks of ``batch_size`` in parallel; each query is one batched ``predict`` call.

    Every reported distance is that of a point verified to be misclassified (the smallest over
    the iterations), so it is an upper bound on the true distance; along its ray from the sample
    that point lies within ``max(tolerance * distance, abs_tolerance)`` of the boundary. The
    search is local: it converges to the nearest boundary point only with enough probes for
    the dimension, and on a multi-class model it can settle on a farther class's boundary.

    Queries per sample: up to ``init_tries`` for the start, then per bisection about
    ``log2(1 / tolerance)`` (more when the start is far from the boundary), and per iteration
    ``grad_samples`` + 1 to ``step_halvings + 1`` + one bisection: about 150 for 3 iterations of
    20 probes and 860 for 7 of 100 at 32 px.

    Args:
        predict: Maps images ``[B, 3, S, S]`` to logits ``[B, C]`` (eval mode; only the argmax
            is used).
        images: ``float [N, 3, S, S]`` in ``[0, 1]``.
        labels: ``[N]`` true labels.
        num_iterations: HopSkipJump iterations (gradient estimate + step + bisection each).
        grad_samples: Sign queries per gradient estimate.
        tolerance: Relative precision of every bisection: it stops when the bracket is at most
            ``tolerance`` times the current distance estimate. It also sets the probe radius of
            the gradient estimate, ``sqrt(d) * tolerance * dist``. ``None`` is HopSkipJump's
            ``d ** -1.5`` (``d = 3 S S``; 5.9e-6 at 32 px, about 17 halvings per bisection),
            which gives probes of radius ``dist / d``.
        abs_tolerance: Floor of the bracket width in L2 units on ``[0, 1]`` pixels (and so of
            the probe radius, ``sqrt(d) * abs_tolerance``): below about 1e-6 the float32 points
            and logits no longer resolve the boundary. 1e-5 is far below one 8-bit grey level
            (1/255 on one pixel).
        init_tries: Uniform-noise draws tried for the starting point.
        step_halvings: Maximum halvings in the step-size search.
        batch_size: Samples per chunk and per ``predict`` call.
        seed: Seed of all random draws.

    Returns:
        ``float64 [N]``: 0 for misclassified samples, ``sqrt(3 S S)`` (the largest distance in
        the unit cube) when no misclassified point was found.

    Raises:
        ValueError: If shapes disagree, a count is out of range, ``tolerance`` is not in
            ``(0, 1)`` or ``abs_tolerance`` is not positive.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if min(batch_size, grad_samples) < 1 or min(num_iterations, init_tries, step_halvings) < 0:
        raise ValueError(
            "batch_size and grad_samples must be >= 1, num_iterations, init_tries and "
            "step_halvings >= 0"
        )
    dim = images[0].numel() if len(images) else 1
    tol = dim**-1.5 if tolerance is None else float(tolerance)
    if not 0.0 < tol < 1.0 or not abs_tolerance > 0.0:
        raise ValueError(
            f"need 0 < tolerance < 1 and abs_tolerance > 0, got {tolerance}, {abs_tolerance}"
        )
    search = _Search(
        num_iterations, grad_samples, tol, abs_tolerance, init_tries, step_halvings, batch_size
    )
    labels = labels.to(images.device)
    gen = torch.Generator(device=images.device).manual_seed(seed)
    predicted = _labels(predict, images, batch_size)
    correct = predicted == labels
    dist = torch.zeros(len(images), dtype=torch.float64, device=images.device)
    idx = torch.nonzero(correct).flatten()
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        dist[chunk] = _hsj_chunk(
            predict, images[chunk], labels[chunk], images, predicted, gen, search
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
        :func:`~lightning_talos.attacks.metrics.threshold_metrics` on the target (``threshold``
        calibrated on the shadow).

    Raises:
        ValueError: If a set lacks members or non-members.
    """
    return threshold_metrics(
        target_scores,
        target_is_member,
        shadow_scores=shadow_scores,
        shadow_is_member=shadow_is_member,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
