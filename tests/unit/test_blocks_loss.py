"""NT-Xent against a float64 NumPy reference, closed forms, symmetry and bf16 autocast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_talos.losses.ntxent import NTXentLoss


def ntxent_reference(z0: np.ndarray, z1: np.ndarray, temperature: float) -> float:
    """SimCLR NT-Xent with explicit loops in float64.

    Anchor ``a`` among the ``2N`` embeddings ``[z0; z1]`` has positive ``(a + N) mod 2N`` and is
    contrasted against every ``k != a``.
    """
    u = np.concatenate([z0, z1]).astype(np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    n2 = u.shape[0]
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        logits = [float(u[a] @ u[k]) / temperature for k in range(n2) if k != a]
        m = max(logits)
        lse = m + math.log(sum(math.exp(v - m) for v in logits))
        total += lse - float(u[a] @ u[(a + n) % n2]) / temperature
    return total / n2


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.05, 0.07, 0.5, 1.0])
def test_matches_numpy_reference(batch: int, temperature: float) -> None:
    gen = torch.Generator().manual_seed(batch * 100 + int(temperature * 100))
    z0 = torch.randn(batch, 8, generator=gen)
    z1 = torch.randn(batch, 8, generator=gen)
    loss = NTXentLoss(temperature)(z0, z1)
    expected = ntxent_reference(z0.numpy(), z1.numpy(), temperature)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_closed_form_identical_views() -> None:
    # B=1, identical views: the positive is the only candidate, so the loss is -log(1) = 0.
    z = torch.tensor([[1.0, 2.0, 3.0]])
    assert NTXentLoss(0.07)(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # B=2, identical views of two orthogonal images: each anchor has positive similarity 1 and
    # two negatives of similarity 0, so loss = log(1 + 2 exp(-1/T)).
    t = 0.5
    z = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    expected = math.log(1 + 2 * math.exp(-1 / t))
    assert NTXentLoss(t)(z, z.clone()).item() == pytest.approx(expected, rel=1e-6)


def test_symmetric_in_views() -> None:
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    loss = NTXentLoss(0.1)
    torch.testing.assert_close(loss(z0, z1), loss(z1, z0))


def test_bf16_autocast_is_finite_and_close() -> None:
    gen = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(16, 32)
    x0, x1 = torch.randn(12, 16, generator=gen), torch.randn(12, 16, generator=gen)
    loss_fn = NTXentLoss(0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z0, z1 = head(x0), head(x1)
        assert z0.dtype == torch.bfloat16
        low = loss_fn(z0, z1)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    # The loss itself runs in float32, so it equals the float32 loss on the same bf16 values.
    ref = loss_fn(z0.float(), z1.float())
    torch.testing.assert_close(low, ref)
    # And it stays near the all-float32 loss (bf16 only rounds the projections).
    full = loss_fn(head(x0), head(x1))
    assert low.item() == pytest.approx(full.item(), rel=0.05)


def test_gradients_flow_to_both_views() -> None:
    z0 = torch.randn(4, 3, requires_grad=True)
    z1 = torch.randn(4, 3, requires_grad=True)
    NTXentLoss(0.2)(z0, z1).backward()
    assert z0.grad is not None and z1.grad is not None
    assert torch.isfinite(z0.grad).all() and z0.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_rejects_bad_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature)


@pytest.mark.parametrize(
    ("shape0", "shape1"), [((4, 3), (5, 3)), ((4, 3), (4, 2)), ((4,), (4,)), ((2, 2, 2), (2, 2, 2))]
)
def test_rejects_bad_shapes(shape0: tuple[int, ...], shape1: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        NTXentLoss()(torch.randn(*shape0), torch.randn(*shape1))
