"""Autograd-aware helpers for gathering negatives across processes.

Gradient bookkeeping (the bug that recurred in bolts, solo-learn and lightly): every rank ``r``
computes its own loss ``L_r`` from the gathered global batch, so ``L_r`` depends on the inputs of
*all* ranks. :func:`gather` uses ``torch.distributed.nn.functional.all_gather``, whose backward
*sums* the incoming gradients over ranks, so rank ``r``'s local input receives
``g_r = sum_{r'} dL_{r'}/dx_r``. DDP then *averages* parameter gradients over the ``W`` ranks,
which yields the gradient of ``(1/W) * sum_r L_r``: with equal per-rank batches and ``L_r`` the
mean over rank ``r``'s anchors, exactly the gradient of the single-process loss on the global
batch. A gather whose backward returns only the local slice (no sum) misses the cross terms;
one that sums and is then averaged again is off by a factor ``W``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.distributed.nn.functional import all_gather as _all_gather_autograd


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes; 1 when ``torch.distributed`` is not initialised."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank; 0 when ``torch.distributed`` is not initialised."""
    return dist.get_rank() if is_initialized() else 0


def gather_sizes(n: int, device: torch.device | str) -> list[int]:
    """All ranks' first-dimension sizes.

    Args:
        n: This rank's size.
        device: Device for the small collective (must suit the backend: CUDA for NCCL).

    Returns:
        ``[n_0, ..., n_{W-1}]``; ``[n]`` when not distributed.
    """
    if world_size() == 1:
        return [n]
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    # No gradient flows through sizes, so the plain (non-autograd) collective is right here.
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def gather(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, with gradients back to every rank's input.

    Per-rank sizes may differ (e.g. a smaller last batch without ``drop_last``): the sizes are
    gathered first, every rank pads to the largest size, gathers, and strips the padding. The
    padding rows get no gradient. The backward pass sums gradient contributions over ranks (see
    the module docstring for why this is the correct convention under DDP).

    Args:
        x: Local tensor ``[n_r, ...]``; trailing dims, dtype and device equal on all ranks.
        sizes: All ranks' sizes if already known (from :func:`gather_sizes`), saving one
            collective; every rank must pass them or none.

    Returns:
        ``[sum_r n_r, ...]`` in rank order; ``x`` itself when not distributed.
    """
    if world_size() == 1:
        return x
    if sizes is None:
        sizes = gather_sizes(x.shape[0], x.device)
    max_n = max(sizes)
    if max_n == 0:
        return x.new_empty((0, *x.shape[1:]))
    pad = max_n - x.shape[0]
    padded = x
    if pad > 0:
        # F.pad pads dims from the last one backwards; (0, 0) per trailing dim, then (0, pad).
        padded = F.pad(x, (0, 0) * (x.dim() - 1) + (0, pad))
    parts = _all_gather_autograd(padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)
