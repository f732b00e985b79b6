"""Poisson sampling for DP-SGD that a resumed run continues exactly (see ``data/resumable.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler

from lightning_talos.data.resumable import Draw, mix

#: Keeps the Poisson masks' stream apart from the per-sample draw keys of the same seed.
_MASK_STREAM = 0x5051


class EpochPoissonSampler(UniformWithReplacementSampler):
    """Opacus' Poisson batches with the masks of epoch ``e`` drawn from ``mix(seed, e)``.

    Each batch includes every sample independently with probability ``sample_rate`` (one
    uniform draw per sample and batch, as Opacus does); only the generator differs: a fresh one
    per epoch seeded from the run's seed and the epoch, instead of torch's global generator,
    which Lightning's prefetching would advance before the step that uses it. Each index is a
    :class:`~lightning_talos.data.resumable.Draw` keyed by ``(seed, epoch, batch, index)``.

    Args:
        num_samples: dataset size ``n``.
        sample_rate: inclusion probability ``q``.
        seed: the run's seed.

    Raises:
        ValueError: from Opacus, for ``num_samples <= 0``.
    """

    def __init__(self, *, num_samples: int, sample_rate: float, seed: int) -> None:
        super().__init__(num_samples=num_samples, sample_rate=sample_rate)
        self.seed = seed
        self.epoch = 0
        self._skip = 0

    @property
    def sampler(self) -> EpochPoissonSampler:
        """Itself: Lightning tells a loader's epoch to ``loader.sampler`` and to
        ``loader.batch_sampler.sampler`` (not to the batch sampler), so this is how the epoch
        reaches it."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration draws (Lightning calls it every epoch)."""
        self.epoch = epoch

    def resume_at(self, epoch: int, batches: int) -> None:
        """Make the next iteration epoch ``epoch`` without its first ``batches`` batches (their
        masks are drawn and dropped, so the rest are those of an uninterrupted epoch)."""
        self.epoch = epoch
        self._skip = batches

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        epoch = self.epoch
        generator = torch.Generator().manual_seed(mix(_MASK_STREAM, self.seed, epoch))
        for batch in range(self.steps):
            mask = torch.rand(self.num_samples, generator=generator) < self.sample_rate
            if batch < skip:
                continue
            indices = mask.nonzero(as_tuple=False).reshape(-1).tolist()
            yield [Draw(i, mix(self.seed, epoch, batch, i)) for i in indices]
