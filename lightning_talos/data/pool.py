"""The pooled dataset every format loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

#: Attribute value stored for samples of datasets without a sensitive attribute.
NO_ATTRIBUTE = -1

#: Codes of :attr:`Pool.official_split`: the dataset's own partition of its samples.
OFFICIAL_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Pool:
    """All images of one dataset (official train + test pooled), resized, in memory.

    Attributes:
        name: dataset name (``cifar10``, ...).
        images: ``uint8`` tensor ``[N, 3, S, S]``, pixel values 0..255, already resized to the
            configured ``image_size`` (the paper resizes every dataset to one size).
        labels: ``int64`` array ``[N]`` of task labels in ``0..num_classes-1``.
        attributes: ``int64`` array ``[N]`` of sensitive-attribute values in
            ``0..num_attribute_classes-1``, or ``None`` when the dataset has none.
        num_classes: number of task classes.
        num_attribute_classes: number of attribute classes (0 when ``attributes`` is None).
        class_names: optional task class names.
        attribute_names: optional attribute value names.
        skipped: counts of skipped files by reason (e.g. ``{"malformed_name": 3}``).
        clean_labels: ``int64`` array ``[N]`` of the task labels before label noise, for
            datasets that know them (the synthetic set); ``None`` otherwise.
        official_split: ``int64`` array ``[N]``, the dataset's own partition of each sample as
            an index into :data:`OFFICIAL_SPLITS` (CIFAR, STL-10 and CelebA have one); ``None``
            for datasets without one (UTKFace, the synthetic set).
        file_names: the file each sample was read from (UTKFace, CelebA), or ``None``.
    """

    name: str
    images: torch.Tensor
    labels: np.ndarray
    attributes: np.ndarray | None
    num_classes: int
    num_attribute_classes: int = 0
    class_names: list[str] | None = None
    attribute_names: list[str] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    clean_labels: np.ndarray | None = None
    official_split: np.ndarray | None = None
    file_names: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,S,S], got {tuple(self.images.shape)}")
        if self.images.shape[0] != n:
            raise ValueError("images and labels differ in length")
        if self.attributes is not None and len(self.attributes) != n:
            raise ValueError("attributes and labels differ in length")
        if self.clean_labels is not None and len(self.clean_labels) != n:
            raise ValueError("clean_labels and labels differ in length")
        if self.official_split is not None and len(self.official_split) != n:
            raise ValueError("official_split and labels differ in length")
        if self.file_names is not None and len(self.file_names) != n:
            raise ValueError("file_names and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def has_attribute(self) -> bool:
        return self.attributes is not None


def train_then_test(n_train: int, n: int) -> np.ndarray:
    """The :attr:`Pool.official_split` of a pool holding the official train set, then the test set.

    Args:
        n_train: samples of the official train set (the first ones).
        n: all samples.

    Returns:
        ``int64 [n]``: 0 (``train``) for the first ``n_train``, 2 (``test``) for the rest.
    """
    split = np.full(n, OFFICIAL_SPLITS.index("test"), dtype=np.int64)
    split[:n_train] = OFFICIAL_SPLITS.index("train")
    return split
