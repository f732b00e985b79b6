"""Batched SimCLR augmentation: per-sample randomness, determinism, parity with the PIL path."""

from __future__ import annotations

import pytest
import torch

from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.data.transforms import (
    FlipAugment,
    SimCLRAugment,
    TwoViews,
    blur_kernel_size,
    to_float,
)

NO_RANDOMNESS = {
    "crop_scale": (1.0, 1.0),
    "hflip_p": 0.0,
    "vflip_p": 0.0,
    "jitter_p": 0.0,
    "grayscale_p": 0.0,
    "blur_p": 0.0,
}


def _test_image(size: int = 32) -> torch.Tensor:
    """A fixed colourful uint8 image [3, S, S]: colour gradients plus a bright square."""
    ramp = torch.linspace(0, 1, size)
    img = torch.stack(
        [
            ramp.view(1, -1).expand(size, size),
            ramp.view(-1, 1).expand(size, size),
            1 - ramp.view(1, -1).expand(size, size) * 0.5,
        ]
    )
    img[:, size // 4 : size // 2, size // 4 : size // 2] = torch.tensor([0.9, 0.8, 0.1]).view(
        3, 1, 1
    )
    return (img * 255).round().to(torch.uint8)


def test_blur_kernel_size() -> None:
    assert blur_kernel_size(32, 0.1) == 3
    assert blur_kernel_size(96, 0.1) == 9
    assert blur_kernel_size(64, 0.1) == 7
    assert blur_kernel_size(8, 0.1) == 3


def test_output_range_shape_and_per_sample_params() -> None:
    img = _test_image()
    batch = torch.stack([img, img])
    gen = torch.Generator().manual_seed(0)
    out = BatchedSimCLRAugment(32)(batch, generator=gen)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out[0], out[1])  # identical inputs, different random parameters


def test_output_size_differs_from_input() -> None:
    out = BatchedSimCLRAugment(24)(torch.stack([_test_image()] * 3))
    assert out.shape == (3, 3, 24, 24)


def test_deterministic_with_generator_and_input_dtypes() -> None:
    aug = BatchedSimCLRAugment(32)
    batch = torch.stack([_test_image()] * 4)
    a = aug(batch, generator=torch.Generator().manual_seed(7))
    b = aug(batch, generator=torch.Generator().manual_seed(7))
    c = aug(batch.float() / 255, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c)
    v1, v2 = aug.two_views(batch, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(v1, a, rtol=0, atol=0)
    assert not torch.allclose(v1, v2)


def test_no_randomness_returns_input_exactly() -> None:
    x = torch.rand(3, 3, 16, 16)
    out = BatchedSimCLRAugment(16, **NO_RANDOMNESS)(x)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    assert out.data_ptr() != x.data_ptr()  # the caller's tensor is not modified in place


def test_flips_and_crop_grid() -> None:
    x = torch.rand(2, 3, 16, 16)
    settings = {**NO_RANDOMNESS, "hflip_p": 1.0, "vflip_p": 1.0}
    exact = BatchedSimCLRAugment(16, **settings)(x)
    torch.testing.assert_close(exact, x.flip(-1).flip(-2), rtol=0, atol=0)
    # A nearly full crop goes through the sampling grid: flips folded into the affine map.
    grid_settings = {**settings, "crop_scale": (0.99999, 1.0), "vflip_p": 0.0}
    out = BatchedSimCLRAugment(16, **grid_settings)(x)
    torch.testing.assert_close(out, x.flip(-1), rtol=0, atol=2e-3)


def _stats(views: torch.Tensor) -> tuple[float, float, float]:
    """Mean and std of per-image mean brightness, and the fraction of gray images."""
    means = views.mean(dim=(1, 2, 3))
    spread = (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2))
    return means.mean().item(), means.std().item(), (spread < 2e-3).float().mean().item()


@pytest.fixture
def one_thread():
    """Tiny per-image convolutions are much slower with 2 threads on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_statistics_match_pil_path() -> None:
    torch.manual_seed(0)
    img = _test_image()
    n = 192
    pil = SimCLRAugment(32)
    pil_views = torch.stack([pil(img) for _ in range(n)])
    batched = BatchedSimCLRAugment(32)(
        img.expand(n, -1, -1, -1), generator=torch.Generator().manual_seed(1)
    )
    pm, ps, pg = _stats(pil_views)
    bm, bs, bg = _stats(batched)
    # Loose tolerances: ~3-4 standard errors at n = 192 for a fraction near 0.2.
    assert abs(pm - bm) < 0.05, (pm, bm)
    assert 0.6 < bs / ps < 1.6, (ps, bs)
    assert abs(pg - bg) < 0.1, (pg, bg)
    assert 0.1 < bg < 0.32


def test_pil_transforms() -> None:
    img = _test_image()
    views = TwoViews(SimCLRAugment(32))(img)
    assert views.shape == (2, 3, 32, 32) and views.dtype == torch.float32
    assert views.min() >= 0 and views.max() <= 1
    torch.testing.assert_close(to_float(img), img.float() / 255)
    flipped = {tuple(FlipAugment(32)(img)[0, 0, :2].tolist()) for _ in range(30)}
    assert len(flipped) == 2  # flipped or not, nothing else
    torch.testing.assert_close(FlipAugment(32, hflip_p=0.0)(img), to_float(img))


@pytest.mark.parametrize(
    "kwargs", [{"crop_scale": (0.5, 0.2)}, {"hflip_p": 1.5}, {"hue": 0.7}, {"blur_sigma": (0, 1)}]
)
def test_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BatchedSimCLRAugment(32, **kwargs)
    with pytest.raises(ValueError):
        SimCLRAugment(32, **kwargs)


def test_rejects_bad_input_shape() -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        BatchedSimCLRAugment(32)(torch.rand(2, 1, 32, 32))
