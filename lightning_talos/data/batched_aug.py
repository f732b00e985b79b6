"""Vectorised SimCLR augmentation of a whole batch, on the batch's device.

:class:`BatchedSimCLRAugment` draws independent random parameters for every sample, like the
per-image PIL path in :mod:`lightning_talos.data.transforms`, but applies them with batched
tensor operations and no Python loop over samples, so it can run on the GPU inside the training
step (the DataLoader then only ships uint8 images).

Differences from torchvision's per-image pipeline, all deliberate:

* The crop is resampled bilinearly with ``grid_sample`` (no antialiasing: SimCLR crops are
  nearly always enlarged, so this rarely matters) and its box is continuous, not rounded to
  whole pixels.
* Colour jitter applies brightness, contrast, saturation and hue in this fixed order instead of a
  random order per image (a random order would cost four times as much).
* Hue is shifted by rotating the chroma plane of YIQ (one 3x3 matrix per sample) rather than in
  HSV: an elementwise HSV round trip cost more than all other steps together on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_talos.data.transforms import blur_kernel_size, check_aug_settings

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
_CROP_ATTEMPTS = 10


def _gray(x: Tensor) -> Tensor:
    """``[B, 3, H, W]`` to luma ``[B, 1, H, W]``."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


# RGB -> YIQ (NTSC). A hue shift is a rotation of the chroma plane (I, Q) about the luma axis Y.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.596, -0.274, -0.322),
    (0.211, -0.523, 0.312),
)


def _hue_matrices(shift: Tensor) -> Tensor:
    """Per-sample 3x3 RGB matrices rotating hue by ``shift`` turns (``[B]`` -> ``[B, 3, 3]``).

    ``M = YIQ^-1 @ R(2 pi shift) @ YIQ``: a linear stand-in for torchvision's HSV hue shift
    (the same rotation of colours about the gray axis, without the HSV hexcone's piecewise
    shape), costing one batched matrix product instead of an elementwise HSV round trip.
    """
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
    from_yiq = torch.linalg.inv(to_yiq).to(shift.device, shift.dtype)
    to_yiq = to_yiq.to(shift.device, shift.dtype)
    angle = 2 * math.pi * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(shift.shape[0], 3, 3, dtype=shift.dtype, device=shift.device)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1] = cos
    rot[:, 1, 2] = -sin
    rot[:, 2, 1] = sin
    rot[:, 2, 2] = cos
    return from_yiq @ rot @ to_yiq


def _apply_color_matrix(x: Tensor, m: Tensor) -> Tensor:
    """``[B, 3, 3] @`` every pixel of ``[B, 3, H, W]``."""
    b, c, height, width = x.shape
    return torch.bmm(m, x.reshape(b, c, height * width)).view(b, c, height, width)


class BatchedSimCLRAugment(nn.Module):
    """SimCLR augmentation for a batch, each sample with its own random parameters.

    Same settings and defaults as :class:`~lightning_talos.data.transforms.SimCLRAugment`.
    Steps: random resized crop and flips (one affine sampling grid per sample, ``grid_sample``),
    colour jitter (per-sample factors; fixed order brightness, contrast, saturation, hue;
    saturation and hue as per-sample 3x3 colour matrices, hue as a YIQ chroma rotation), random
    grayscale, and Gaussian blur with a per-sample sigma (separable depthwise convolution: the
    batch is reshaped to ``B*3`` channels so every sample gets its own kernel; samples not
    blurred get a delta kernel, an exact identity).

    Args:
        size: Output side.
        crop_scale: Range of the crop area as a fraction of the image.
        hflip_p: Horizontal flip probability.
        vflip_p: Vertical flip probability.
        jitter_p: Probability of applying colour jitter.
        brightness: Jitter strength for brightness.
        contrast: Jitter strength for contrast.
        saturation: Jitter strength for saturation.
        hue: Jitter strength for hue (at most 0.5).
        grayscale_p: Grayscale probability.
        blur_p: Gaussian-blur probability.
        blur_kernel_frac: Kernel size as a fraction of ``size``.
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
        super().__init__()
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
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.hflip_p = hflip_p
        self.vflip_p = vflip_p
        self.jitter_p = jitter_p
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.grayscale_p = grayscale_p
        self.blur_p = blur_p
        self.blur_kernel = blur_kernel_size(size, blur_kernel_frac)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))

    # ------------------------------------------------------------------ random draws
    @staticmethod
    def _rand(
        shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
    ) -> Tensor:
        """Uniform [0, 1) on the generator's device (so a CPU generator works for GPU input)."""
        gen_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=gen_device).to(device)

    def _crop_boxes(
        self, b: int, height: int, width: int, device: torch.device, gen: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-sample crop boxes as fractions of the image: ``(w, h, x0, y0)``, each ``[B]``.

        Like torchvision's RandomResizedCrop: up to 10 attempts of area ~ U(scale) and
        log-aspect ~ U(log 3/4, log 4/3), the first attempt that fits wins; if none fits, a
        central crop of the whole image with the aspect clamped to [3/4, 4/3].
        """
        lo, hi = self.crop_scale
        area = (lo + (hi - lo) * self._rand((b, _CROP_ATTEMPTS), device, gen)) * height * width
        log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
        ratio = torch.exp(log_lo + (log_hi - log_lo) * self._rand((b, _CROP_ATTEMPTS), device, gen))
        w_px = torch.sqrt(area * ratio)
        h_px = torch.sqrt(area / ratio)
        ok = (w_px <= width) & (h_px <= height)
        first = ok.float().argmax(dim=1, keepdim=True)  # index of the first fitting attempt
        any_ok = ok.any(dim=1)
        w_px = w_px.gather(1, first).squeeze(1)
        h_px = h_px.gather(1, first).squeeze(1)
        # Fallback: whole image, aspect clamped (a square image gives the full image).
        in_ratio = width / height
        if in_ratio < 3 / 4:
            fb_w, fb_h = float(width), width / (3 / 4)
        elif in_ratio > 4 / 3:
            fb_w, fb_h = height * (4 / 3), float(height)
        else:
            fb_w, fb_h = float(width), float(height)
        w = torch.where(any_ok, w_px / width, torch.full_like(w_px, fb_w / width))
        h = torch.where(any_ok, h_px / height, torch.full_like(h_px, fb_h / height))
        u = self._rand((b, 2), device, gen)
        x0 = torch.where(any_ok, u[:, 0] * (1 - w), (1 - w) / 2)
        y0 = torch.where(any_ok, u[:, 1] * (1 - h), (1 - h) / 2)
        return w, h, x0, y0

    # ------------------------------------------------------------------ steps
    def _crop_and_flip(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        b, _, height, width = x.shape
        dev = x.device
        hflip = self._rand((b,), dev, gen) < self.hflip_p
        vflip = self._rand((b,), dev, gen) < self.vflip_p
        if self.crop_scale == (1.0, 1.0) and (height, width) == (self.size, self.size):
            # Whole-image crop at the same size: flip by indexing, exact.
            x = torch.where(hflip.view(b, 1, 1, 1), x.flip(-1), x)
            return torch.where(vflip.view(b, 1, 1, 1), x.flip(-2), x)
        w, h, x0, y0 = self._crop_boxes(b, height, width, dev, gen)
        # Affine map from output to input normalised coords in [-1, 1] (align_corners=False):
        # x_in = cx + w * x_out, with a flip folded in as a sign on the scale.
        sx = torch.where(hflip, -w, w)
        sy = torch.where(vflip, -h, h)
        cx = 2 * x0 + w - 1
        cy = 2 * y0 + h - 1
        # The map is axis-aligned, so build the grid by broadcasting (what affine_grid computes
        # with a zero shear, several times faster on CPU): pixel centres of the output.
        base = (2 * torch.arange(self.size, device=dev, dtype=x.dtype) + 1) / self.size - 1
        gx = (cx.view(b, 1) + sx.view(b, 1) * base).view(b, 1, self.size).expand(-1, self.size, -1)
        gy = (cy.view(b, 1) + sy.view(b, 1) * base).view(b, self.size, 1).expand(-1, -1, self.size)
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        b = x.shape[0]
        dev = x.device
        apply = self._rand((b,), dev, gen) < self.jitter_p
        u = self._rand((b, 4), dev, gen)

        def factor(col: int, strength: float) -> Tensor:
            lo = max(0.0, 1.0 - strength)
            f = lo + (1.0 + strength - lo) * u[:, col]
            # Factor 1 is an exact identity for the blends below.
            return torch.where(apply, f, torch.ones_like(f)).view(b, 1, 1, 1)

        if self.brightness > 0:
            x = (x * factor(0, self.brightness)).clamp_(0.0, 1.0)
        if self.contrast > 0:
            c = factor(1, self.contrast)
            mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            x = (c * x + (1 - c) * mean).clamp_(0.0, 1.0)
        eye = torch.eye(3, device=dev).expand(b, 3, 3)
        if self.saturation > 0:
            # s * x + (1 - s) * gray(x) as a matrix: s * I + (1 - s) * (1 luma^T).
            sat = factor(2, self.saturation).view(b, 1, 1)
            luma = torch.tensor(_LUMA, device=dev).expand(3, 3)
            x = _apply_color_matrix(x, sat * eye + (1 - sat) * luma).clamp_(0.0, 1.0)
        if self.hue > 0:
            shift = (2 * u[:, 3] - 1) * self.hue
            # Identity matrices (exact) for samples without jitter.
            m = torch.where(apply.view(b, 1, 1), _hue_matrices(shift), eye)
            x = _apply_color_matrix(x, m).clamp_(0.0, 1.0)
        return x

    def _grayscale(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        b = x.shape[0]
        to_gray = self._rand((b,), x.device, gen) < self.grayscale_p
        return torch.where(to_gray.view(b, 1, 1, 1), _gray(x).expand_as(x), x)

    def _blur(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        b, c, height, width = x.shape
        k = self.blur_kernel
        dev = x.device
        apply = self._rand((b,), dev, gen) < self.blur_p
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * self._rand((b,), dev, gen)
        t = torch.arange(k, device=dev, dtype=x.dtype) - (k - 1) / 2
        kern = torch.exp(-(t**2) / (2 * sigma.to(x.dtype).view(b, 1) ** 2))
        kern = kern / kern.sum(dim=1, keepdim=True)
        delta = (t == 0).to(x.dtype).expand(b, k)
        kern = torch.where(apply.view(b, 1), kern, delta)  # [B, k]
        # One kernel per (sample, channel): depthwise conv over B*3 channels.
        kern = kern.repeat_interleave(c, dim=0)  # [B*3, k]
        pad = k // 2
        mode = "reflect" if min(height, width) > pad else "replicate"
        y = x.reshape(1, b * c, height, width)
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode=mode), kern.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode=mode), kern.view(b * c, 1, k, 1), groups=b * c)
        return y.view(b, c, height, width)

    # ------------------------------------------------------------------ public
    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch; every sample draws its own parameters.

        Args:
            images: ``[B, 3, S, S]`` uint8 (0..255) or float in [0, 1], on any device.
            generator: Optional generator for reproducible draws (on any device).

        Returns:
            float32 ``[B, 3, size, size]`` in [0, 1] on the input's device.

        Raises:
            ValueError: If ``images`` is not ``[B, 3, H, W]``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float() / 255.0
        else:
            # A copy: later steps work in place and must not touch the caller's tensor.
            x = images.to(torch.float32, copy=True)
        if x.shape[0] == 0:
            return x.new_empty((0, 3, self.size, self.size))
        x = self._crop_and_flip(x, generator)
        if self.jitter_p > 0:
            x = self._jitter(x, generator)
        if self.grayscale_p > 0:
            x = self._grayscale(x, generator)
        if self.blur_p > 0:
            x = self._blur(x, generator)
        # Every step maps [0, 1] to [0, 1] (convex resampling, clamped jitter, convex blur); the
        # final in-place clamp only guards float inputs slightly out of range.
        return x.clamp_(0.0, 1.0)

    @torch.no_grad()
    def two_views(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Two independently augmented views of the batch.

        Args:
            images: ``[B, 3, S, S]`` uint8 or float in [0, 1].
            generator: Optional generator.

        Returns:
            ``(v1, v2)``, each float32 ``[B, 3, size, size]``.
        """
        return self(images, generator), self(images, generator)
