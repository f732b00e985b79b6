"""CIFAR-10 / CIFAR-100 in torchvision's on-disk layout, official train + test pooled."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from lightning_talos.data.formats.images import resize_batch_uint8
from lightning_talos.data.pool import Pool, train_then_test
from lightning_talos.errors import UserError
from lightning_talos.safe_load import restricted_unpickle

CifarVariant = Literal["cifar10", "cifar100"]

#: Side of the stored CIFAR images.
CIFAR_SIZE = 32


@dataclass(frozen=True)
class _Spec:
    """What differs between the two variants."""

    dataset: type[CIFAR10]
    label_key: str
    names_key: str


_SPECS: dict[str, _Spec] = {
    "cifar10": _Spec(CIFAR10, "labels", "label_names"),
    "cifar100": _Spec(CIFAR100, "fine_labels", "fine_label_names"),
}


def _spec(variant: str) -> _Spec:
    if variant not in _SPECS:
        raise UserError(f"unknown CIFAR variant {variant!r}; valid: {', '.join(_SPECS)}")
    return _SPECS[variant]


def expected_layout(variant: CifarVariant) -> str:
    """Describe the on-disk layout ``load_cifar`` reads, for error messages.

    Args:
        variant: ``cifar10`` or ``cifar100``.

    Returns:
        One line such as ``<root>/cifar-10-batches-py/{data_batch_1, ..., batches.meta}``.

    Raises:
        UserError: if ``variant`` is unknown.
    """
    dataset = _spec(variant).dataset
    files = [name for name, _ in dataset.train_list + dataset.test_list] + [
        dataset.meta["filename"]
    ]
    return f"<root>/{dataset.base_folder}/{{{', '.join(files)}}} (torchvision layout)"


#: What reading a truncated, foreign or refused pickle raises.
_READ_ERRORS = (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, TypeError,
                IndexError, KeyError)  # fmt: skip


def _unpickle(path: Path, variant: CifarVariant) -> dict[str, Any]:
    # latin1 is how torchvision reads the official Python-2 pickles: their str keys become str.
    # Only NumPy arrays and plain values are admitted, so a crafted file cannot run code even
    # with data.verify_checksums=false.
    try:
        with path.open("rb") as f:
            entry = restricted_unpickle(f, encoding="latin1")
    except _READ_ERRORS as err:
        raise UserError(f"{variant}: cannot read {path} ({err}); expected a pickle file") from err
    if not isinstance(entry, dict):
        raise UserError(f"{variant}: {path} is not a CIFAR pickle (no dict inside)")
    return entry


def _read_batch(path: Path, variant: CifarVariant, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images [n, 3, 32, 32] uint8, labels [n] int64)`` of one pickled batch."""
    entry = _unpickle(path, variant)
    if "data" not in entry or label_key not in entry:
        raise UserError(f"{variant}: {path} lacks the 'data' or {label_key!r} entry")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    pixels = 3 * CIFAR_SIZE * CIFAR_SIZE
    if data.ndim != 2 or data.shape[1] != pixels or data.shape[0] != len(labels):
        raise UserError(
            f"{variant}: {path} holds data of shape {data.shape} for {len(labels)} labels; "
            f"expected [n, {pixels}]"
        )
    # Each row is the red plane, then green, then blue, each row-major: CHW order.
    return data.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE), labels


def load_cifar(
    root: str | Path,
    *,
    variant: CifarVariant,
    image_size: int,
    verify_checksums: bool = True,
) -> Pool:
    """Load CIFAR-10 or CIFAR-100 (fine labels), official train then test, as one pool.

    Args:
        root: folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        variant: ``cifar10`` or ``cifar100``.
        image_size: side of the stored images (32 keeps the originals; 96 is the paper preset).
        verify_checksums: check each file against the md5 torchvision lists for the official
            release. Turn it off for re-packed or synthetic files.

    Returns:
        The pooled dataset (50k + 10k images officially), ``attributes=None``.

    Raises:
        UserError: unknown variant, missing root or file, checksum mismatch, or a corrupt file.
    """
    spec = _spec(variant)
    dataset = spec.dataset
    folder = Path(root) / dataset.base_folder
    if not folder.is_dir():
        raise UserError(
            f"{variant}: folder {folder} not found; expected {expected_layout(variant)}"
        )
    entries = (
        dataset.train_list + dataset.test_list + [[dataset.meta["filename"], dataset.meta["md5"]]]
    )
    for name, md5 in entries:
        path = folder / name
        if not path.is_file():
            raise UserError(f"{variant}: missing file {path}; expected {expected_layout(variant)}")
        if verify_checksums and not check_integrity(str(path), md5):
            raise UserError(
                f"{variant}: {path} does not match the official md5 {md5}; re-download it, or "
                "pass data.verify_checksums=false for non-official files"
            )

    batches = [_read_batch(folder / name, variant, spec.label_key) for name, _ in entries[:-1]]
    raw = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([batch_labels for _, batch_labels in batches])
    meta = _unpickle(folder / dataset.meta["filename"], variant)
    if spec.names_key not in meta:
        raise UserError(f"{variant}: {folder / dataset.meta['filename']} lacks {spec.names_key!r}")
    class_names = [str(name) for name in meta[spec.names_key]]
    num_classes = len(class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{variant}: labels outside 0..{num_classes - 1} in {folder}")
    n_train = sum(len(batch_labels) for _, batch_labels in batches[: len(dataset.train_list)])
    return Pool(
        name=variant,
        images=resize_batch_uint8(raw, image_size, channels_last=False),
        labels=labels,
        attributes=None,
        num_classes=num_classes,
        class_names=class_names,
        official_split=train_then_test(n_train, len(labels)),
    )


def download_cifar(root: str | Path, variant: CifarVariant) -> None:
    """Download and extract the official archive with torchvision (network; never in tests).

    Args:
        root: folder that will hold ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        variant: ``cifar10`` or ``cifar100``.

    Raises:
        UserError: if ``variant`` is unknown.
    """
    # One archive holds both splits, so a single call fetches everything.
    _spec(variant).dataset(str(root), train=True, download=True)
