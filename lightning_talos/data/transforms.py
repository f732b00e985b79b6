"""Per-sample (PIL) image transforms: SimCLR views, flip-only training and evaluation.

Inputs are uint8 tensors ``[3, S, S]`` as stored in the in-memory pool; outputs are float
``[3, size, size]`` in [0, 1]. There is no normalisation (the paper feeds raw [0, 1] pixels).
These run in DataLoader workers; :mod:`lightning_talos.data.batched_aug` is the vectorised
equivalent that runs on the accelerator inside the training step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


def blur_kernel_size(size: int, frac: float) -> int:
    """Gaussian-blur kernel size: ``int(frac * size)`` made odd, at least 3.

    Args:
        size: Image side.
        frac: Kernel size as a fraction of the side (0.1 in SimCLR and the paper).

    Returns:
        An odd kernel size >= 3 (3 at 32 px, 9 at 96 px).
    """
    k = max(3, int(frac * size))
    return k if k % 2 == 1 else k + 1


def _check_image(img: Tensor) -> None:
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got shape {tuple(img.shape)}")


def to_float(img: Tensor) -> Tensor:
    """Evaluation transform: uint8 ``[3, H, W]`` to float in [0, 1]; no randomness at all.

    Args:
        img: uint8 (scaled by 1/255) or float (returned as float32 unchanged) ``[3, H, W]``.

    Returns:
        float32 ``[3, H, W]`` in [0, 1].

    Raises:
        ValueError: If ``img`` is not ``[3, H, W]``.
    """
    _check_image(img)
    if img.dtype == torch.uint8:
        return img.float().div_(255.0)
    return img.float()


class SimCLRAugment:
    """SimCLR augmentation of one image, with the paper's defaults.

    Order: random resized crop, horizontal flip, vertical flip, colour jitter (with probability
    ``jitter_p``; brightness/contrast/saturation/hue in random order as torchvision does), random
    grayscale, Gaussian blur (with probability ``blur_p``), then conversion to float.

    Args:
        size: Output side.
        crop_scale: Range of the crop area as a fraction of the image.
        hflip_p: Horizontal flip probability.
        vflip_p: Vertical flip probability (the paper's released code flips vertically too).
        jitter_p: Probability of applying colour jitter.
        brightness: Jitter strength for brightness.
        contrast: Jitter strength for contrast.
        saturation: Jitter strength for saturation.
        hue: Jitter strength for hue (at most 0.5).
        grayscale_p: Grayscale probability.
        blur_p: Gaussian-blur probability.
        blur_kernel_frac: Kernel size as a fraction of ``size`` (see :func:`blur_kernel_size`).
        blur_sigma: Range of the blur's standard deviation in pixels.

    Raises:
        ValueError: If a setting is out of range.
    """

    def __init__(
        self,
        size: int,
        *,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip_p: float = 0.5,
        vflip_p: float = 0.5,
        jitter_p: float = 0.8,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        grayscale_p: float = 0.2,
        blur_p: float = 0.5,
        blur_kernel_frac: float = 0.1,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        check_aug_settings(
            size=size,
            crop_scale=crop_scale,
            probs={
                "hflip_p": hflip_p,
                "vflip_p": vflip_p,
                "jitter_p": jitter_p,
                "grayscale_p": grayscale_p,
                "blur_p": blur_p,
            },
            jitter=(brightness, contrast, saturation, hue),
            blur_sigma=blur_sigma,
        )
        self.size = size
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
                v2.RandomHorizontalFlip(hflip_p),
                v2.RandomVerticalFlip(vflip_p),
                v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=jitter_p),
                v2.RandomGrayscale(grayscale_p),
                v2.RandomApply(
                    [v2.GaussianBlur(blur_kernel_size(size, blur_kernel_frac), blur_sigma)],
                    p=blur_p,
                ),
            ]
        )

    def __call__(self, img: Tensor) -> Tensor:
        """Augment one image.

        Args:
            img: uint8 ``[3, S, S]``.

        Returns:
            float32 ``[3, size, size]`` in [0, 1].

        Raises:
            ValueError: If ``img`` is not ``[3, H, W]``.
        """
        _check_image(img)
        pil = TF.to_pil_image(img if img.dtype == torch.uint8 else img.clamp(0, 1))
        out = self.transform(pil)
        return TF.to_dtype(TF.to_image(out), torch.float32, scale=True)


class TwoViews:
    """Apply a random transform twice to the same image.

    Args:
        transform: Callable mapping ``[3, S, S]`` to float ``[3, s, s]``.
    """

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, img: Tensor) -> Tensor:
        """Return two independent views stacked as ``[2, 3, s, s]``."""
        return torch.stack([self.transform(img), self.transform(img)])


class FlipAugment:
    """Resize (if needed) and random horizontal flip: the paper's supervised and linear stages.

    Args:
        size: Output side.
        hflip_p: Flip probability.

    Raises:
        ValueError: If ``size < 1`` or ``hflip_p`` is not in [0, 1].
    """

    def __init__(self, size: int, *, hflip_p: float = 0.5) -> None:
        check_aug_settings(size=size, probs={"hflip_p": hflip_p})
        self.size = size
        self.hflip_p = hflip_p

    def __call__(self, img: Tensor) -> Tensor:
        """Map uint8 ``[3, S, S]`` to float32 ``[3, size, size]`` in [0, 1]."""
        x = to_float(img)
        if x.shape[-2:] != (self.size, self.size):
            x = TF.resize(x, [self.size, self.size], antialias=True).clamp_(0, 1)
        if torch.rand(()) < self.hflip_p:
            x = x.flip(-1)
        return x


def check_aug_settings(
    *,
    size: int,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    probs: dict[str, float] | None = None,
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    blur_sigma: tuple[float, float] = (0.1, 2.0),
) -> None:
    """Validate augmentation settings shared by the PIL and batched paths.

    Raises:
        ValueError: If any setting is out of range.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    lo, hi = crop_scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {crop_scale}")
    for name, p in (probs or {}).items():
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if min(jitter) < 0 or jitter[3] > 0.5:
        raise ValueError(f"jitter strengths must be >= 0 and hue <= 0.5, got {jitter}")
    if not 0 < blur_sigma[0] <= blur_sigma[1]:
        raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {blur_sigma}")
