"""The NumPy attack MLP against PyTorch: gradients, optimiser steps and whole training runs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_talos.attacks.small_mlp import SGD, Adam, SmallMLP, single_thread, train_epochs
from lightning_talos.models.heads import MLP


def _torch_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_dim, hidden, out_dim)


def _data(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.int64) + (classes > 2) * (x[:, 1] > 1)
    return x, y


def test_seeded_copies_torch_initialisation() -> None:
    ours = SmallMLP.seeded(5, (7, 6), 3, seed=4)
    ref = _torch_mlp(5, (7, 6), 3, seed=4)
    for a, b in zip(ours.params, ref.parameters()):
        np.testing.assert_array_equal(a, b.detach().numpy())


@pytest.mark.parametrize("hidden", [(), (16,), (32, 32)])
def test_loss_and_gradients_equal_autograd(hidden: tuple[int, ...]) -> None:
    x, y = _data(40, 5, 3, seed=1)
    ref = _torch_mlp(5, hidden, 3, seed=0)
    ours = SmallMLP.from_torch(ref)
    loss, grads = ours.gradients(x, y)
    ref_loss = F.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
    ref_loss.backward()
    ref_loss = ref_loss.detach()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-5)
    for g, p in zip(grads, ref.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("ours_opt", "make_torch"),
    [
        (lambda: Adam(lr=1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2)),
        (lambda: SGD(lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
        (lambda: SGD(lr=0.1, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    ],
    ids=["adam", "sgd", "sgd-momentum"],
)
def test_training_run_follows_torch(
    ours_opt: Callable[[], Adam | SGD], make_torch: Callable[..., torch.optim.Optimizer]
) -> None:
    """Same init, same generator, same batches: 5 epochs end at the same weights."""
    x, y = _data(150, 4, 2, seed=2)
    ref = _torch_mlp(4, (8, 8), 2, seed=3)
    ours = SmallMLP.from_torch(ref)
    with single_thread():
        epochs = list(
            train_epochs(
                ours, ours_opt(), x, y, epochs=5, batch_size=32,
                generator=torch.Generator().manual_seed(7),
            )
        )  # fmt: skip
    assert epochs == [1, 2, 3, 4, 5]
    optimizer = make_torch(ref.parameters())
    generator = torch.Generator().manual_seed(7)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(5):
        order = torch.randperm(len(tx), generator=generator)
        for idx in order.split(32):
            optimizer.zero_grad()
            F.cross_entropy(ref(tx[idx]), ty[idx]).backward()
            optimizer.step()
    moved = max(
        float(np.abs(a - b.detach().numpy()).max())
        for a, b in zip(SmallMLP.seeded(4, (8, 8), 2, seed=3).params, ref.parameters())
    )
    assert moved > 1e-2  # training really changed the weights
    for a, b in zip(ours.params, ref.parameters()):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_array_equal(ours.logits(x).argmax(1), ref(tx).argmax(1).numpy())


def test_copy_is_independent() -> None:
    mlp = SmallMLP.from_torch(nn.Sequential(nn.Linear(3, 2)))
    snapshot = mlp.copy()
    mlp.weights[0] += 1.0
    assert not np.allclose(mlp.weights[0], snapshot.weights[0])
