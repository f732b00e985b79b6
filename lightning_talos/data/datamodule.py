"""One LightningDataModule for every stage; augmentation is chosen by use, never by dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, default_collate

from lightning_talos.data.pool import NO_ATTRIBUTE, Pool
from lightning_talos.data.resumable import EpochSampler, seeded
from lightning_talos.data.splits import Splits

#: What a stage trains on: SimCLR views, flip-only (supervised, linear), or nothing random.
USES = ("two_views", "flip", "eval")


class Sample(NamedTuple):
    """One sample (or a batch of them): pool index, image, task label, sensitive attribute.

    ``image`` is ``uint8 [3,S,S]`` when no transform ran (eval, or batched augmentation that
    runs later on the accelerator), ``float [3,S,S]`` after a PIL transform, or
    ``float [2,3,S,S]`` for two SimCLR views. ``attribute`` is ``NO_ATTRIBUTE`` (-1) for
    datasets without one.
    """

    index: Any
    image: Any
    label: Any
    attribute: Any


def aug_kwargs(aug: DictConfig, size: int) -> dict[str, Any]:
    """Keyword settings shared by the PIL and the batched SimCLR augmentation."""
    return {
        "size": size,
        "crop_scale": (aug.crop_scale_min, aug.crop_scale_max),
        "hflip_p": aug.hflip_p,
        "vflip_p": aug.vflip_p,
        "jitter_p": aug.jitter_p,
        "brightness": aug.brightness,
        "contrast": aug.contrast,
        "saturation": aug.saturation,
        "hue": aug.hue,
        "grayscale_p": aug.grayscale_p,
        "blur_p": aug.blur_p,
        "blur_kernel_frac": aug.blur_kernel_frac,
        "blur_sigma": (aug.blur_sigma_min, aug.blur_sigma_max),
    }


class QuarterDataset(Dataset):
    """A quarter of the pool, optionally transformed per sample.

    Without a transform, batches are sliced straight from the in-memory tensor
    (``__getitems__``), which keeps the data path far cheaper than the model. An index that is a
    :class:`~lightning_talos.data.resumable.Draw` runs the transform under its own seed.
    """

    def __init__(
        self, pool: Pool, indices: np.ndarray, transform: Callable[[Any], Any] | None = None
    ) -> None:
        self.pool = pool
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.labels = torch.as_tensor(pool.labels, dtype=torch.long)
        attrs = pool.attributes if pool.attributes is not None else np.full(len(pool), NO_ATTRIBUTE)
        self.attributes = torch.as_tensor(attrs, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j = int(self.indices[i])
        image = self.pool.images[j]
        if self.transform is not None:
            image = seeded(getattr(i, "key", None), self.transform, image)
        return Sample(j, image, int(self.labels[j]), int(self.attributes[j]))

    def __getitems__(self, items: Sequence[int]) -> Sample | list[Sample]:
        """One batch: sliced from the in-memory tensors, each image transformed under its own
        seed when there is a transform (stacked here, not by ``default_collate``). An empty
        Poisson batch (DP-SGD) with a transform is an empty list, which its collate fills in."""
        if self.transform is not None and not items:
            return []
        idx = self.indices[torch.as_tensor([int(i) for i in items], dtype=torch.long)]
        images = self.pool.images[idx]
        if self.transform is not None:
            keys = [getattr(i, "key", None) for i in items]
            images = torch.stack([seeded(k, self.transform, x) for k, x in zip(keys, images)])
        return Sample(idx, images, self.labels[idx], self.attributes[idx])


class ViewsAndOriginal:
    """Two augmented views plus the un-augmented image: ``float [3,3,S,S]``."""

    def __init__(self, views: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.views = views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.views(image), as_float(image)[None]])


def collate(batch: Sample | list[Sample]) -> Sample:
    """Pass through pre-batched samples; stack lists of single samples."""
    if isinstance(batch, Sample):
        return batch
    return Sample(*default_collate(batch))


class TalosDataModule(pl.LightningDataModule):
    """Loaders over one role's quarters.

    ``train_dataloader`` yields the role's members with the augmentation of ``use``;
    ``val_dataloader`` yields members and non-members without augmentation (index 0 and 1), so
    every stage records train and test accuracy; ``eval_loader`` serves feature extraction.

    Args:
        data: the ``data`` config section.
        pool: the pooled dataset.
        splits: the run's quarters.
        role: ``target`` or ``shadow``.
        use: ``two_views`` (SimCLR), ``flip`` or ``eval`` (see :data:`USES`).
        with_original: for PIL contrastive views, also yield the un-augmented image as a third
            view (Talos with ``views=original``).
        seed: seed of the training order and of the per-sample augmentation (see
            ``data/resumable.py``); None takes ``torch.initial_seed()`` (the seed that
            ``seed_everything`` set).

    Raises:
        ValueError: unknown ``use`` or ``role``.
    """

    def __init__(
        self,
        data: DictConfig,
        pool: Pool,
        splits: Splits,
        *,
        role: str,
        use: str,
        with_original: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if use not in USES:
            raise ValueError(f"use must be one of {USES}, got {use!r}")
        try:  # target, shadow, or a role the splits define (reference models)
            splits.members(role)
        except AttributeError:
            raise ValueError(f"role must be target or shadow, got {role!r}") from None
        self.data, self.pool, self.splits, self.role, self.use = data, pool, splits, role, use
        self.with_original = with_original
        self.seed = int(torch.initial_seed() if seed is None else seed)

    def train_transform(self) -> Callable[[Any], Any] | None:
        """Per-sample transform of the training loader (None: raw uint8, batched later)."""
        from lightning_talos.data.transforms import FlipAugment, SimCLRAugment, TwoViews

        size = self.data.image_size
        if self.use == "flip":
            return FlipAugment(size)
        if self.use == "two_views" and self.data.aug.mode == "pil":
            views = TwoViews(SimCLRAugment(**aug_kwargs(self.data.aug, size)))
            return ViewsAndOriginal(views) if self.with_original else views
        return None

    def _loader(
        self, dataset: Dataset, *, batch_size: int, sampler: EpochSampler | None = None
    ) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            # the workers' base seed comes from here, not from torch's global generator, which
            # belongs to the training step (data/resumable.py)
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        """The role's members in an order that a resumed run continues (``EpochSampler``),
        sharded over DDP ranks."""
        dataset = QuarterDataset(self.pool, self.splits.members(self.role), self.train_transform())
        trainer = self.trainer  # None when called outside a fit
        sampler = EpochSampler(
            dataset,
            batch_size=self.data.batch_size,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        return self._loader(dataset, batch_size=self.data.batch_size, sampler=sampler)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self.eval_loader(self.splits.members(self.role)),
            self.eval_loader(self.splits.nonmembers(self.role)),
        ]

    def eval_loader(self, indices: np.ndarray) -> DataLoader:
        """Deterministic loader over ``indices``: no augmentation, no shuffling."""
        dataset = QuarterDataset(self.pool, indices, None)
        return self._loader(dataset, batch_size=self.data.eval_batch_size)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in 0..255 -> float in [0, 1]; float images pass through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images
