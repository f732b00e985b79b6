"""Backbones, heads, gradient reversal, LARS and the warm-up cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_talos.models.backbones import BACKBONES, SmallCNN, build_backbone
from lightning_talos.models.grl import grad_reverse
from lightning_talos.models.heads import MLP, AdversaryHead, ProjectionHead
from lightning_talos.optim import (
    LARS,
    build_optimizer,
    build_scheduler,
    param_groups,
    warmup_cosine,
)

EXPECTED_DIMS = {"small_cnn": 128, "resnet18": 512, "resnet50": 2048, "mobilenet_v2": 1280}


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_output_dim(name: str) -> None:
    torch.manual_seed(0)
    net, dim = build_backbone(name, stem="cifar" if name != "small_cnn" else "imagenet")
    assert dim == EXPECTED_DIMS[name]
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim)


def test_small_cnn_receptive_field_is_21_px() -> None:
    # Five 3x3 convs with strides 1,2,1,2,2: 1 + 2*(1 + 1 + 2 + 2 + 4) = 21 px per output position.
    torch.manual_seed(0)
    net = SmallCNN().eval()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    fmap = net.features(x)  # [1, 128, 8, 8]
    fmap[0, :, 4, 4].sum().backward()  # one output position
    assert x.grad is not None
    touched = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    rows, cols = touched[:, 0], touched[:, 1]
    assert int(rows.max() - rows.min()) + 1 == 21 and int(cols.max() - cols.min()) + 1 == 21


def test_small_cnn_widths_and_strides() -> None:
    net = SmallCNN(channels=(8, 16), strides=(2, 2))
    assert net.out_dim == 16 and net(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    with pytest.raises(ValueError, match="one stride per block"):
        SmallCNN(channels=(8, 16), strides=(1,))
    with pytest.raises(ValueError, match=">= 1"):
        SmallCNN(channels=(8, 0), strides=(1, 1))


def test_small_cnn_embedding_is_standardised_and_takes_a_batch_of_one() -> None:
    torch.manual_seed(0)
    net = SmallCNN(channels=(8, 16), strides=(1, 2)).train()
    x = torch.rand(64, 3, 16, 16)
    pooled = net.pool(net.features(x)).flatten(1)
    expected = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(net(x), expected, atol=1e-4)
    one = torch.rand(1, 3, 16, 16)
    pooled_one = net.pool(net.features(one)).flatten(1)
    by_running = (pooled_one - net.norm.running_mean) / torch.sqrt(net.norm.running_var + 1e-5)
    # A last partial batch of one: standardised with the running statistics, no error.
    assert torch.allclose(net(one), by_running, atol=1e-5)


def test_imagenet_stem_resnet18_keeps_maxpool() -> None:
    net, _ = build_backbone("resnet18")
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert net.conv1.stride == (2, 2) and net.conv1.kernel_size == (7, 7)


def test_cifar_stem_resnet18() -> None:
    net, _ = build_backbone("resnet18", stem="cifar")
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1) and net.conv1.bias is None
    assert net.conv1.out_channels == 64


def test_unknown_backbone_or_stem() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("vgg11")
    with pytest.raises(ValueError, match="cifar"):
        build_backbone("resnet18", stem="tiny")


def test_projection_head_shapes() -> None:
    head = ProjectionHead(32)
    assert head(torch.randn(3, 32)).shape == (3, 256)
    assert head.net[0].out_features == 32  # hidden defaults to in_dim
    head = ProjectionHead(32, hidden_dim=16, out_dim=8)
    assert head(torch.randn(3, 32)).shape == (3, 8)


def test_mlp_has_no_output_activation() -> None:
    mlp = MLP(10, [7, 5], 3)
    assert isinstance(mlp.net[-1], nn.Linear)
    assert [type(m) for m in mlp.net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    # Negative logits survive (the released code's output ReLU clipped them to 0).
    mlp.net[-1].bias.data.fill_(-100.0)
    assert (mlp(torch.randn(4, 10)) < 0).all()


def test_adversary_head_sized_from_input() -> None:
    head = AdversaryHead(256, 5)
    assert head.net[0].in_features == 256
    assert [m.out_features for m in head.net if isinstance(m, nn.Linear)] == [64, 64, 5]
    assert head(torch.randn(2, 256)).shape == (2, 5)
    with pytest.raises(ValueError):
        AdversaryHead(8, 1)


def test_grl_forward_identity_backward_negated() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    g = torch.randn(4, 3)
    y = grad_reverse(x, 0.3)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    y.backward(g)
    torch.testing.assert_close(x.grad, -0.3 * g, rtol=0, atol=0)
    # A schedule changes lambda between steps.
    x.grad = None
    grad_reverse(x, 2.0).backward(g)
    torch.testing.assert_close(x.grad, -2.0 * g, rtol=0, atol=0)
    x.grad = None
    grad_reverse(x, 0.0).backward(g)
    torch.testing.assert_close(x.grad, torch.zeros_like(g))


def test_lars_one_step_by_hand() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0]))  # 1-D: excluded (bias)
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.001)
    w.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1
    b.grad = torch.tensor([0.2, 0.4])
    opt.step()
    trust = 0.001 * 5.0 / (1.0 + 0.1 * 5.0)
    expected_w = torch.tensor([[3.0, 4.0]]) - 0.5 * trust * torch.tensor([[0.6 + 0.3, 0.8 + 0.4]])
    torch.testing.assert_close(w.data, expected_w)
    torch.testing.assert_close(b.data, torch.tensor([1.0 - 0.1, -1.0 - 0.2]))
    # Second step: momentum buffer 0.9 * d1 + d2 with the same gradient on the new weights.
    d1 = trust * torch.tensor([[0.9, 1.2]])
    w_now = w.data.clone()
    opt.step()
    trust2 = 0.001 * w_now.norm() / (1.0 + 0.1 * w_now.norm())
    d2 = trust2 * (torch.tensor([[0.6, 0.8]]) + 0.1 * w_now)
    torch.testing.assert_close(w.data, w_now - 0.5 * (0.9 * d1 + d2))


def test_param_groups_and_build_optimizer() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = param_groups(model, 1e-4)
    decay, no_decay = groups
    assert decay["weight_decay"] == 1e-4 and len(decay["params"]) == 2
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    for name in ("adam", "adamw", "sgd", "lars"):
        opt = build_optimizer(groups, name=name, lr=0.1, weight_decay=1e-4)
        assert opt.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="lars"):
        build_optimizer(groups, name="rmsprop", lr=0.1, weight_decay=0.0)


def test_warmup_cosine_values() -> None:
    kw = {"total_steps": 110, "warmup_steps": 10}
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.5)
    assert warmup_cosine(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(500, **kw) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(110, min_factor=0.1, **kw) == pytest.approx(0.1)
    assert warmup_cosine(35, total_steps=110, warmup_steps=10) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.25))
    )
    # Monotone after warm-up: no per-epoch restarts.
    vals = [warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    with pytest.raises(ValueError):
        warmup_cosine(0, total_steps=10, warmup_steps=11)


def test_build_scheduler_steps() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, schedule="cosine", total_steps=4, warmup_steps=2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="cosine"):
        build_scheduler(opt, schedule="step", total_steps=4, warmup_steps=0)
