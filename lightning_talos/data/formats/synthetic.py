"""The project's embedded dataset: shapes on striped backgrounds, generated from a seed.

Each image shows one foreground object whose **shape** is the task label (8 classes: disk, square,
diamond, ring, plus, X, triangle, hollow square) on a background of two-coloured **stripes whose
orientation** (horizontal or vertical) is the sensitive attribute. Shape and orientation were
chosen because they survive SimCLR's augmentations (random resized crop, flips, colour jitter,
grayscale, blur): colour and position would not. A vertical flip does not change the orientation
of stripes and 90-degree rotations are not among the augmentations. The object has a random colour,
a random size (radius 0.32-0.42 of the image) and a position jittered around the centre (about
+-0.06 of the image), large enough that most SimCLR crops keep the shape: with radius 0.22-0.34
and +-0.12 a SimCLR encoder's shape features were far weaker (a logistic probe after 30 epochs:
0.46 against 0.70 on the noisy labels, same recipe). The stripes have random dark and light
colours, a random period of 3.5-6.5 pixels (at 32 px, scaled with the image size) and a random
phase. The attribute is drawn
independently of the shape, 50/50, so any attribute information a model keeps is information
beyond the task, which is the paper's attribute-inference setting. Gaussian pixel noise is added,
and a fraction ``label_noise`` of the task labels is replaced by a uniformly drawn other class
(symmetric noise), which leaves a supervised model something to memorise, so membership
inference has a train/test gap to find. Geometry is expressed in fractions of the image, so any
``image_size`` works, and generation is vectorised (8,000 images at 32 px in well under 2 s).
"""

from __future__ import annotations

import numpy as np
import torch

from lightning_talos.data.pool import Pool
from lightning_talos.errors import UserError

SHAPE_NAMES = ["disk", "square", "diamond", "ring", "plus", "x", "triangle", "hollow_square"]
ORIENTATION_NAMES = ["horizontal", "vertical"]
#: Image side the stripe periods are expressed at.
REFERENCE_SIZE = 32


def _shape_distance(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed-distance-like field of one shape, negative inside, in units of the object radius.

    Args:
        shape: index into :data:`SHAPE_NAMES`.
        u: horizontal offsets from the object centre divided by its radius, ``[n, S, S]``.
        v: vertical offsets (downwards), same shape.

    Returns:
        The field, same shape as ``u``.
    """
    au, av = np.abs(u), np.abs(v)
    if shape == 0:  # disk
        return np.sqrt(u * u + v * v) - 1.0
    if shape == 1:  # square
        return np.maximum(au, av) - 0.8
    if shape == 2:  # diamond
        return (au + av - 1.1) / np.sqrt(2.0)
    if shape == 3:  # ring
        return np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.28
    if shape == 4:  # plus
        return _cross(au, av)
    if shape == 5:  # x: the plus turned by 45 degrees
        return _cross(np.abs(u + v) / np.sqrt(2.0), np.abs(u - v) / np.sqrt(2.0))
    if shape == 6:  # triangle, apex up, base at v = 0.75
        slope = 0.6
        side = (au - slope * (v + 1.0)) / np.sqrt(1.0 + slope * slope)
        return np.maximum(v - 0.75, side)
    # hollow square
    return np.abs(np.maximum(au, av) - 0.68) - 0.17


def _cross(au: np.ndarray, av: np.ndarray) -> np.ndarray:
    """Union of two bars of half-width 0.3 and half-length 1 along the two axes."""
    half_width = 0.3
    along_u = np.maximum(au - 1.0, av - half_width)
    along_v = np.maximum(av - 1.0, au - half_width)
    return np.minimum(along_u, along_v)


def _check(n: int, image_size: int, label_noise: float, pixel_noise: float) -> None:
    if n <= 0:
        raise UserError(f"synthetic: n must be positive, got {n}")
    if image_size < 8:
        raise UserError(f"synthetic: image_size must be at least 8, got {image_size}")
    if not 0.0 <= label_noise < 1.0:
        raise UserError(f"synthetic: label_noise must be in [0, 1), got {label_noise}")
    if pixel_noise < 0.0:
        raise UserError(f"synthetic: pixel_noise must be non-negative, got {pixel_noise}")


def _stripes(
    rng: np.random.Generator,
    orientation: np.ndarray,
    grid: np.ndarray,
    period_range: tuple[float, float],
) -> np.ndarray:
    """Render the backgrounds: ``float32 [n, 3, S, S]`` in [0, 1]."""
    n, size = len(orientation), len(grid)
    scale = size / REFERENCE_SIZE
    period = rng.uniform(*period_range, size=n) * scale
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n)
    # Dark and light colours per image keep the stripes visible even after grayscale.
    dark = rng.uniform(0.0, 0.45, size=(n, 3))
    light = rng.uniform(0.55, 1.0, size=(n, 3))
    pixels = grid * size  # pixel-centre coordinates
    # The pattern varies along one axis only: compute it once per image as a 1-D profile.
    wave = np.sin(2.0 * np.pi * pixels[None, :] / period[:, None] + phase[:, None])
    profile = np.clip(0.5 + 1.5 * wave, 0.0, 1.0).astype(np.float32)  # soft square wave
    # Horizontal stripes vary along the rows, vertical ones along the columns.
    mix = np.where(orientation[:, None, None] == 0, profile[:, :, None], profile[:, None, :])[
        :, None
    ]
    dark = dark.astype(np.float32)[:, :, None, None]
    light = light.astype(np.float32)[:, :, None, None]
    return dark + (light - dark) * mix


def _objects(
    rng: np.random.Generator,
    shapes: np.ndarray,
    grid: np.ndarray,
    radius_range: tuple[float, float],
    jitter: float,
) -> np.ndarray:
    """Render the object coverage: ``float32 [n, S, S]`` in [0, 1], antialiased over ~1 px."""
    n, size = len(shapes), len(grid)
    radius = rng.uniform(*radius_range, size=n)
    centre = rng.uniform(-jitter, jitter, size=(n, 2)) + 0.5
    coverage = np.empty((n, size, size), dtype=np.float32)
    for shape in range(len(SHAPE_NAMES)):
        idx = np.flatnonzero(shapes == shape)
        if len(idx) == 0:
            continue
        r = radius[idx, None, None]
        u = (grid[None, None, :] - centre[idx, 0, None, None]) / r
        v = (grid[None, :, None] - centre[idx, 1, None, None]) / r
        distance_px = _shape_distance(shape, u, v) * r * size
        coverage[idx] = np.clip(0.5 - distance_px, 0.0, 1.0)
    return coverage


def _noisy_labels(rng: np.random.Generator, clean: np.ndarray, rate: float, k: int) -> np.ndarray:
    """Replace exactly ``round(rate * n)`` labels by a uniformly drawn different class."""
    labels = clean.copy()
    flipped = rng.choice(len(clean), size=round(rate * len(clean)), replace=False)
    labels[flipped] = (clean[flipped] + rng.integers(1, k, size=len(flipped))) % k
    return labels


def make_synthetic(
    *,
    n: int,
    image_size: int = 32,
    seed: int = 0,
    label_noise: float = 0.2,
    pixel_noise: float = 0.03,
    radius_range: tuple[float, float] = (0.32, 0.42),
    jitter: float = 0.06,
    stripe_period: tuple[float, float] = (3.5, 6.5),
) -> Pool:
    """Generate the shapes-on-stripes dataset (see the module docstring).

    Args:
        n: number of images.
        image_size: image side in pixels.
        seed: seed; the same arguments always give the same pool.
        label_noise: fraction of task labels replaced by a different, uniformly drawn class.
        pixel_noise: standard deviation of the Gaussian pixel noise (pixels in [0, 1]).
        radius_range: object radius range, as a fraction of the image side.
        jitter: largest offset of the object centre from the image centre, fraction of the side.
        stripe_period: stripe period range in pixels at 32 px (scaled with ``image_size``).

    Returns:
        The pool: noisy shape labels (8 classes), stripe orientation as attribute (2 classes),
        and the drawn shapes as ``clean_labels``.

    Raises:
        UserError: non-positive ``n``, ``image_size`` below 8, ``label_noise`` outside [0, 1) or
            negative ``pixel_noise``.
    """
    _check(n, image_size, label_noise, pixel_noise)
    rng = np.random.default_rng(seed)
    k = len(SHAPE_NAMES)
    shapes = rng.integers(0, k, size=n)
    orientation = rng.integers(0, 2, size=n)
    grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size  # pixel centres in [0,1]

    background = _stripes(rng, orientation, grid, stripe_period)
    coverage = _objects(rng, shapes, grid, radius_range, jitter)[:, None]
    colour = rng.uniform(0.0, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    image = background * (1 - coverage) + colour * coverage
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(pixel_noise)
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    return Pool(
        name="synthetic",
        images=torch.from_numpy(pixels),
        labels=_noisy_labels(rng, shapes, label_noise, k).astype(np.int64),
        attributes=orientation.astype(np.int64),
        num_classes=k,
        num_attribute_classes=2,
        class_names=list(SHAPE_NAMES),
        attribute_names=list(ORIENTATION_NAMES),
        clean_labels=shapes.astype(np.int64),
    )
