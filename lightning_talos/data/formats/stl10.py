"""STL-10 in its binary release layout (``stl10_binary/``), as torchvision unpacks it.

``labelled`` pools the official train (5k) and test (8k) images; ``unlabeled`` gives the 100k
unlabeled images, used only for optional SimCLR pretraining. Unlabeled samples carry the label
``-1`` and the pool has ``num_classes=0``: there is no task on that part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision.datasets import STL10
from torchvision.datasets.utils import check_integrity

from lightning_talos.data.formats.images import resize_batch_uint8
from lightning_talos.data.pool import Pool, train_then_test
from lightning_talos.errors import UserError

Stl10Part = Literal["labelled", "unlabeled"]

#: Side of the stored STL-10 images.
STL10_SIZE = 96
#: Bytes per stored image (3 x 96 x 96).
IMAGE_BYTES = 3 * STL10_SIZE * STL10_SIZE
#: Class names, used when ``class_names.txt`` is absent.
DEFAULT_CLASS_NAMES = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
]  # fmt: skip
#: Label value of unlabeled images.
UNLABELED = -1

_FOLDER = STL10.base_folder
_LAYOUT = (
    f"<root>/{_FOLDER}/{{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, "
    "class_names.txt}"
)
# The per-file md5s torchvision's STL10 class carries for the official release.
_MD5 = dict(STL10.train_list + STL10.test_list)


def _require(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"stl10: missing file {path}; expected {_LAYOUT}")
    return path


def _verify_md5(path: Path) -> None:
    md5 = _MD5[path.name]
    if not check_integrity(str(path), md5):
        raise UserError(
            f"stl10: {path} does not match the official md5 {md5}; re-download it, or pass "
            "data.verify_checksums=false for non-official files"
        )


def _read_images(path: Path) -> np.ndarray:
    """Map ``*_X.bin`` as ``[n, 3, 96, 96]`` in (channel, row, column) order, without reading it.

    Raises:
        UserError: if the file size is not a whole number of images.
    """
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise UserError(
            f"stl10: {path} has {size} bytes, not a positive multiple of {IMAGE_BYTES} "
            "(one 3x96x96 uint8 image)"
        )
    stored = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // IMAGE_BYTES, 3, 96, 96))
    # Each plane is stored column-major: swap the last two axes to get (row, column).
    return stored.transpose(0, 1, 3, 2)


def _read_labels(path: Path, n_images: int) -> np.ndarray:
    """Read ``*_y.bin`` (one byte per image, 1..10) as int64 labels 0..9.

    Raises:
        UserError: if the count differs from the images' or a label is outside 1..10.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) != n_images:
        raise UserError(f"stl10: {path} has {len(raw)} labels for {n_images} images")
    if len(raw) and (raw.min() < 1 or raw.max() > len(DEFAULT_CLASS_NAMES)):
        raise UserError(f"stl10: {path} has labels outside 1..{len(DEFAULT_CLASS_NAMES)}")
    return raw.astype(np.int64) - 1


def _class_names(folder: Path) -> list[str]:
    path = folder / STL10.class_names_file
    if not path.is_file():
        return list(DEFAULT_CLASS_NAMES)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != len(DEFAULT_CLASS_NAMES):
        raise UserError(f"stl10: {path} lists {len(names)} class names, expected 10")
    return names


def load_stl10(
    root: str | Path,
    *,
    image_size: int,
    verify_checksums: bool = True,
    part: Stl10Part = "labelled",
) -> Pool:
    """Load STL-10: labelled train + test pooled, or the unlabeled images.

    File sizes are always checked (a whole number of 3x96x96 images, one label per image, labels
    1..10), because a truncated file would otherwise be silently misread. ``verify_checksums``
    additionally checks each file against the md5 torchvision lists for the official release (a
    2.7 GB read for ``unlabeled_X.bin``).

    Args:
        root: folder holding ``stl10_binary/``.
        image_size: side of the stored images (96 keeps the originals).
        verify_checksums: check the official md5s of the files read.
        part: ``labelled`` (train then test, labels 0..9) or ``unlabeled`` (labels all ``-1``,
            ``num_classes=0``).

    Returns:
        The pool, ``attributes=None``.

    Raises:
        UserError: unknown part, missing root or file, checksum or size mismatch.
    """
    folder = Path(root) / _FOLDER
    if part not in ("labelled", "unlabeled"):
        raise UserError(f"stl10: unknown part {part!r}; valid: labelled, unlabeled")
    if not folder.is_dir():
        raise UserError(f"stl10: folder {folder} not found; expected {_LAYOUT}")

    if part == "unlabeled":
        path = _require(folder / "unlabeled_X.bin")
        if verify_checksums:
            _verify_md5(path)
        stored = _read_images(path)
        return Pool(
            name="stl10_unlabeled",
            images=resize_batch_uint8(stored, image_size, channels_last=False),
            labels=np.full(len(stored), UNLABELED, dtype=np.int64),
            attributes=None,
            num_classes=0,
        )

    paths = [_require(folder / name) for name in ("train_X.bin", "train_y.bin")]
    paths += [_require(folder / name) for name in ("test_X.bin", "test_y.bin")]
    if verify_checksums:
        for path in paths:
            _verify_md5(path)
    images, labels = [], []
    for x_path, y_path in (paths[:2], paths[2:]):
        stored = _read_images(x_path)
        labels.append(_read_labels(y_path, len(stored)))
        images.append(resize_batch_uint8(stored, image_size, channels_last=False))
    class_names = _class_names(folder)
    return Pool(
        name="stl10",
        images=torch.cat(images),
        labels=np.concatenate(labels),
        attributes=None,
        num_classes=len(class_names),
        class_names=class_names,
        official_split=train_then_test(len(labels[0]), len(labels[0]) + len(labels[1])),
    )


def download_stl10(root: str | Path) -> None:
    """Download and extract the official archive with torchvision (network; never in tests).

    Args:
        root: folder that will hold ``stl10_binary/``.
    """
    STL10(str(root), split="train", download=True)
