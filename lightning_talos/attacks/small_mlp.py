"""The attack MLPs trained in NumPy: the same model, loss, optimisers and batches as PyTorch.

The attack and probe MLPs are tiny (``3-32-32-2`` for the NN attack) and the protocol fixes
their optimiser steps (100 epochs at batch 256 or 512), so in eager PyTorch every step is
dominated by per-operation overhead: about 1 ms per step of the NN attack on the development
CPU, of which the arithmetic is a few microseconds. NumPy's per-operation cost is several times
lower, and the gradients of a ReLU MLP under mean cross-entropy are four lines. The weights are
initialised by :class:`~lightning_talos.models.heads.MLP` from the seed, the batches come from
the same ``torch.randperm`` draws, and the optimisers follow ``torch.optim.Adam`` and
``torch.optim.SGD`` to the formula; the tests check gradients and whole training runs against
PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from lightning_talos.models.heads import MLP


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one BLAS and one torch intra-op thread, then restore both.

    These matrices have a few thousand entries: thread synchronisation costs more than the
    arithmetic (measured 4x slower with two threads on a busy 2-core machine).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class SmallMLP:
    """A ReLU MLP as float32 arrays: ``weights[i]`` ``[out, in]`` and ``biases[i]`` ``[out]``.

    Hidden layers are ``Linear + ReLU``, the last layer is a bare ``Linear`` (logits), as in
    :class:`~lightning_talos.models.heads.MLP`.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @classmethod
    def from_torch(cls, mlp: nn.Module) -> SmallMLP:
        """Copy the ``nn.Linear`` layers of a torch MLP, in order."""
        linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        return cls(
            [m.weight.detach().cpu().numpy().astype(np.float32) for m in linears],
            [m.bias.detach().cpu().numpy().astype(np.float32) for m in linears],
        )

    @classmethod
    def seeded(cls, in_dim: int, hidden: Sequence[int], out_dim: int, seed: int) -> SmallMLP:
        """PyTorch's initialisation of :class:`MLP` under ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls.from_torch(MLP(in_dim, hidden, out_dim))

    @property
    def params(self) -> list[np.ndarray]:
        """Weights and biases interleaved, the order of ``nn.Module.parameters()``."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def copy(self) -> SmallMLP:
        return SmallMLP([w.copy() for w in self.weights], [b.copy() for b in self.biases])

    def _forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Inputs of every layer and the logits."""
        inputs = [x]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            inputs.append(np.maximum(inputs[-1] @ w.T + b, 0.0))
        return inputs, inputs[-1] @ self.weights[-1].T + self.biases[-1]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``[N, in]`` float32 -> ``[N, out]`` logits."""
        return self._forward(np.asarray(x, dtype=np.float32))[1]

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Mean cross-entropy of ``logits(x)`` against integer targets ``y`` and its gradients.

        Returns:
            ``(loss, grads)`` with ``grads`` in the order of :attr:`params`.
        """
        inputs, logits = self._forward(x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
        delta = exp / total  # d loss / d logits = (softmax - onehot) / N
        delta[rows, y] -= 1.0
        delta /= len(y)
        grads: list[np.ndarray] = []
        for i in range(len(self.weights) - 1, -1, -1):
            grads += [delta.sum(axis=0), delta.T @ inputs[i]]  # bias, weight (reversed below)
            if i:
                delta = (delta @ self.weights[i]) * (inputs[i] > 0)
        return loss, grads[::-1]


@dataclass
class Adam:
    """``torch.optim.Adam`` without weight decay or amsgrad, for :class:`SmallMLP` params."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    _m: list[np.ndarray] = field(default_factory=list, repr=False)
    _v: list[np.ndarray] = field(default_factory=list, repr=False)
    _t: int = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Update ``params`` in place."""
        if not self._m:
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
        self._t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1**self._t)
        root_c2 = np.sqrt(1.0 - b2**self._t)
        for p, g, m, v in zip(params, grads, self._m, self._v):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_c2 + self.eps)


@dataclass
class SGD:
    """``torch.optim.SGD`` (optional momentum, no dampening or Nesterov) for :class:`SmallMLP`."""

    lr: float = 0.01
    momentum: float = 0.0
    _buf: list[np.ndarray] = field(default_factory=list, repr=False)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Update ``params`` in place."""
        if self.momentum and not self._buf:
            self._buf = [g.copy() for g in grads]  # torch: the first buffer is the gradient
        elif self.momentum:
            for buf, g in zip(self._buf, grads):
                buf *= self.momentum
                buf += g
        for p, d in zip(params, self._buf or grads):
            p -= self.lr * d


def train_epochs(
    model: SmallMLP,
    optimizer: Adam | SGD,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> Iterator[int]:
    """Mini-batch cross-entropy training; yields after each epoch.

    Each epoch draws ``torch.randperm(len(x), generator=generator)`` and takes consecutive
    slices of it as batches, the batches of a PyTorch loop over the same generator.

    Args:
        model: the MLP, updated in place.
        optimizer: :class:`Adam` or :class:`SGD`.
        x: ``[N, F]`` float32 inputs.
        y: ``[N]`` integer targets.
        epochs: number of passes.
        batch_size: mini-batch size.
        generator: drives the shuffling.

    Yields:
        The 1-based epoch number just finished.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    params = model.params
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=generator).numpy()
        xs, ys = x[order], y[order]
        for start in range(0, len(x), batch_size):
            _, grads = model.gradients(
                xs[start : start + batch_size], ys[start : start + batch_size]
            )
            optimizer.step(params, grads)
        yield epoch
