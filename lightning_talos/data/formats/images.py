"""Image helpers shared by the format loaders: centre crop, resize to ``uint8`` CHW, decode.

Every loader stores images as ``uint8 [N, 3, S, S]`` (see :class:`~lightning_talos.data.pool.Pool`).
Non-square images are centre-cropped to a square first, then resized with an antialiased bilinear
filter, so a 178x218 CelebA image and a 200x200 UTKFace image end up the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: Errors PIL raises for unreadable, truncated or hostile image files.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def center_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Return the ``(left, top, right, bottom)`` box of the largest centred square.

    Args:
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        The crop box in PIL's convention (right and bottom exclusive).
    """
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def resize_uint8(img: Image.Image | np.ndarray, size: int) -> torch.Tensor:
    """Centre-crop one image to a square and resize it to ``size`` x ``size``.

    PIL's bilinear filter widens its support when it shrinks an image, so it is antialiased (the
    same filter ``torch.nn.functional.interpolate(..., antialias=True)`` reproduces).

    Args:
        img: a PIL image (any mode; converted to RGB) or an ``H x W x 3`` ``uint8`` array.
        size: output side length in pixels.

    Returns:
        ``uint8`` tensor ``[3, size, size]``.

    Raises:
        ValueError: if ``size`` is not positive or the array is not ``H x W x 3`` ``uint8``.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 array, got {img.dtype} {img.shape}")
        img = Image.fromarray(img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    width, height = img.size
    if width != height:
        img = img.crop(center_square_box(width, height))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def resize_batch_uint8(
    images: np.ndarray,
    size: int,
    *,
    channels_last: bool = True,
    chunk_size: int = 2048,
) -> torch.Tensor:
    """Centre-crop and resize a batch of ``uint8`` images, chunk by chunk.

    When the (cropped) images already have side ``size`` this is a plain copy, so 60k CIFAR
    images at 32 px cost only a memcpy. Otherwise each chunk is resized with
    ``F.interpolate(mode="bilinear", antialias=True)``. Chunking bounds the float32 working memory
    and lets ``images`` be a ``np.memmap`` (STL-10 unlabeled is 2.7 GB on disk).

    Args:
        images: ``uint8`` array ``[N, H, W, 3]`` (``channels_last``) or ``[N, 3, H, W]``; may be a
            non-contiguous view or a memmap.
        size: output side length in pixels.
        channels_last: whether ``images`` is ``N, H, W, 3`` (True) or ``N, 3, H, W`` (False).
        chunk_size: images processed per step.

    Returns:
        ``uint8`` tensor ``[N, 3, size, size]``.

    Raises:
        ValueError: if the array is not a batch of 3-channel ``uint8`` images or ``size`` is not
            positive.
    """
    if size <= 0 or chunk_size <= 0:
        raise ValueError(f"size and chunk_size must be positive, got {size}, {chunk_size}")
    channel_axis = 3 if channels_last else 1
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[channel_axis] != 3:
        layout = "N,H,W,3" if channels_last else "N,3,H,W"
        raise ValueError(f"expected a {layout} uint8 array, got {images.dtype} {images.shape}")
    nchw = images.transpose(0, 3, 1, 2) if channels_last else images
    height, width = nchw.shape[2], nchw.shape[3]
    left, top, right, bottom = center_square_box(width, height)
    nchw = nchw[:, :, top:bottom, left:right]

    n = nchw.shape[0]
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    if nchw.shape[2] == size:
        out.numpy()[:] = nchw  # one strided copy, also from a read-only memmap
        return out
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        # A private contiguous copy: the source may be a read-only memmap view.
        chunk = torch.from_numpy(np.array(nchw[start:stop], order="C"))
        resized = F.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start:stop] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def decode_image_file(path: str | Path, size: int) -> torch.Tensor:
    """Decode one image file to RGB, centre-crop it to a square and resize it.

    For JPEGs, ``Image.draft`` lets the decoder skip detail by a power-of-two factor while keeping
    both sides at least ``size``, which makes decoding several times faster when shrinking.

    Args:
        path: image file.
        size: output side length in pixels.

    Returns:
        ``uint8`` tensor ``[3, size, size]``.

    Raises:
        OSError: if the file is missing, unreadable or truncated (PIL raises other errors in
            :data:`DECODE_ERRORS` for some corrupt files).
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        return resize_uint8(img.convert("RGB"), size)


def default_workers() -> int:
    """Return the thread count for parallel decoding (PIL releases the GIL while decoding)."""
    return max(1, min(8, os.cpu_count() or 1))


def decode_files(
    paths: Sequence[str | Path], size: int, *, workers: int | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode many image files in parallel threads into one preallocated tensor.

    Args:
        paths: image files, decoded in this order.
        size: output side length in pixels.
        workers: number of threads (default :func:`default_workers`).

    Returns:
        ``(images, ok)``: ``uint8`` tensor ``[len(paths), 3, size, size]`` and a boolean array that
        is False where a file could not be decoded (its image row is left zero).
    """
    images = torch.zeros((len(paths), 3, size, size), dtype=torch.uint8)
    ok = np.zeros(len(paths), dtype=bool)

    def decode_into(index: int) -> None:
        try:
            images[index] = decode_image_file(paths[index], size)
        except DECODE_ERRORS:
            return
        ok[index] = True

    n_workers = workers if workers is not None else default_workers()
    if n_workers <= 1 or len(paths) < 2:
        for index in range(len(paths)):
            decode_into(index)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            # list() re-raises any unexpected exception from a worker.
            list(pool.map(decode_into, range(len(paths))))
    return images, ok
