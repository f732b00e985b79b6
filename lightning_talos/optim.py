"""Optimisers, parameter groups and learning-rate schedules.

LARS is written here (after You et al. 2017, "Large Batch Training of Convolutional Networks")
because lightning-bolts, which ships one, pins Lightning < 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "lars")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (LARS).

    For a parameter ``w`` with gradient ``g``, weight decay ``wd`` and momentum ``m``::

        trust = eta * ||w|| / (||g|| + wd * ||w||)     (1 if ||w|| == 0 or ||g|| == 0)
        d     = trust * (g + wd * w)
        buf   = m * buf + d                              (buf = d at the first step)
        w     = w - lr * buf

    Parameters flagged as excluded skip both the weight decay and the trust ratio (plain SGD with
    momentum); by the usual convention those are biases and normalisation weights, which with
    ``exclude_bias_and_norm=True`` are recognised as the tensors with ``ndim <= 1``. A param
    group may also set ``"lars_exclude": True/False`` explicitly (as :func:`param_groups` does),
    which takes precedence.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        momentum: Momentum factor.
        weight_decay: L2 weight decay (inside the trust ratio, as in LARS).
        eta: Trust coefficient.
        exclude_bias_and_norm: Treat 1-D tensors as biases/norm weights and exclude them.

    Raises:
        ValueError: If a setting is out of range.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        exclude_bias_and_norm: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if eta <= 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "exclude_bias_and_norm": exclude_bias_and_norm,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta, mom = group["weight_decay"], group["eta"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                excluded = group.get("lars_exclude")
                if excluded is None:
                    excluded = group["exclude_bias_and_norm"] and p.ndim <= 1
                if not excluded:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        eta * w_norm / (g_norm + wd * w_norm),
                        torch.ones_like(w_norm),
                    )
                    g = (g + wd * p) * trust
                state = self.state[p]
                if mom > 0:
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()
                    else:
                        state["momentum_buffer"].mul_(mom).add_(g)
                    g = state["momentum_buffer"]
                p.add_(g, alpha=-group["lr"])
        return loss


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed group and a no-decay group (biases and norm layers).

    Args:
        module: Model whose trainable parameters (``requires_grad``) are grouped.
        weight_decay: Decay for the first group.

    Returns:
        Up to two groups: ``{"params", "weight_decay": weight_decay, "lars_exclude": False}`` and
        ``{"params", "weight_decay": 0.0, "lars_exclude": True}``; empty groups are dropped.
    """
    decay: list[Tensor] = []
    no_decay: list[Tensor] = []
    seen: set[int] = set()
    for mod in module.modules():
        is_norm = isinstance(mod, _NORM_TYPES)
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if is_norm or name.endswith("bias") or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    params_or_groups: Iterable[Tensor] | Iterable[dict[str, Any]],
    *,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> Optimizer:
    """Build an optimiser by short name.

    ``weight_decay`` is the default: a group's own ``"weight_decay"`` (e.g. 0 for the
    no-decay group of :func:`param_groups`) wins. ``adamw`` uses decoupled decay; ``adam`` adds
    L2 to the gradient as the released code did.

    Args:
        params_or_groups: Parameters or parameter groups.
        name: One of :data:`OPTIMIZERS`.
        lr: Learning rate.
        weight_decay: Default weight decay.
        momentum: Momentum for ``sgd`` and ``lars`` (ignored by Adam variants).

    Returns:
        The optimiser.

    Raises:
        ValueError: If ``name`` is unknown or ``lr``/``weight_decay`` is negative.
    """
    if lr < 0 or weight_decay < 0:
        raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
    params = list(params_or_groups)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _check_steps(total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}], got {warmup_steps}")


def warmup_cosine(
    step: int, *, total_steps: int, warmup_steps: int, min_factor: float = 0.0
) -> float:
    """Learning-rate factor: linear warm-up, then one cosine decay over the whole run.

    ``factor(s) = (s + 1) / warmup_steps`` for ``s < warmup_steps`` (so step 0 is small but not
    zero and the last warm-up step reaches 1), then
    ``min_factor + (1 - min_factor) * (1 + cos(pi * p)) / 2`` with
    ``p = (s - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1]: 1 at the end of
    warm-up, ``min_factor`` at ``total_steps`` and after. Unlike the released code (a cosine with
    a period of one epoch, restarting every epoch) the decay spans all ``total_steps``.

    Args:
        step: Optimiser step, from 0.
        total_steps: Steps in the run (``trainer.estimated_stepping_batches``).
        warmup_steps: Warm-up steps (0 for none).
        min_factor: Final factor.

    Returns:
        The multiplicative factor for the base learning rate.

    Raises:
        ValueError: If the step counts or ``min_factor`` are out of range.
    """
    _check_steps(total_steps, warmup_steps)
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer,
    *,
    schedule: str,
    total_steps: int,
    warmup_steps: int,
    min_factor: float = 0.0,
) -> LambdaLR:
    """Per-step scheduler (use ``interval="step"`` in Lightning).

    Args:
        optimizer: The optimiser.
        schedule: ``"cosine"`` (:func:`warmup_cosine`) or ``"constant"`` (the same linear
            warm-up, then factor 1).
        total_steps: Steps in the run, from ``trainer.estimated_stepping_batches``.
        warmup_steps: Warm-up steps.
        min_factor: Final factor of the cosine.

    Returns:
        A ``LambdaLR`` to be stepped after every optimiser step.

    Raises:
        ValueError: If ``schedule`` is unknown or the step counts are out of range.
    """
    _check_steps(total_steps, warmup_steps)
    if schedule == "cosine":

        def factor(step: int) -> float:
            return warmup_cosine(
                step, total_steps=total_steps, warmup_steps=warmup_steps, min_factor=min_factor
            )

    elif schedule == "constant":

        def factor(step: int) -> float:
            return (step + 1) / warmup_steps if step < warmup_steps else 1.0

    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    return LambdaLR(optimizer, factor)
