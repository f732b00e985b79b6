"""Gradient reversal layer (Ganin & Lempitsky 2015) used by Talos."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = lambda_
        # view_as: a new autograd node even though the values are unchanged.
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambda_ * grad, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """Identity in the forward pass, gradient times ``-lambda_`` in the backward pass.

    Args:
        x: Any tensor, e.g. the embedding ``[B, d]``.
        lambda_: Reversal strength; ``0`` blocks the gradient, ``1`` plainly negates it.

    Returns:
        A tensor equal to ``x``.
    """
    return _GradReverse.apply(x, float(lambda_))


class GradientReversal(nn.Module):
    """Module wrapper of :func:`grad_reverse`.

    ``lambda_`` is a plain mutable float attribute, read at every forward pass, so a schedule
    (e.g. a callback ramping it up) can change it during training.

    Args:
        lambda_: Initial reversal strength.

    Raises:
        ValueError: If ``lambda_`` is negative.
    """

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        if lambda_ < 0:
            raise ValueError(f"lambda_ must be >= 0, got {lambda_}")
        self.lambda_ = float(lambda_)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` unchanged; its gradient is multiplied by ``-lambda_``."""
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"
