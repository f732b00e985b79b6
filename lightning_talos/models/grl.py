"""Gradient reversal layer (Ganin & Lempitsky 2015) used by Talos."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


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
