"""A training order that a resumed run continues exactly: keyed draws and a resumable sampler.

A run stopped inside an epoch and resumed from its checkpoint must draw the rest of that epoch
as an uninterrupted run would have: the same samples, in the same order, with the same
per-sample augmentation. Three rules give that, whatever the number of loader workers:

* The order of epoch ``e`` is a pure function of ``(seed, e)`` (:class:`EpochSampler`, a
  ``DistributedSampler``, so it also shards over DDP ranks and Lightning leaves it in place).
  Resuming at batch ``k`` of epoch ``e`` is :meth:`EpochSampler.resume_at`: the next iteration
  draws epoch ``e``'s order and skips its first ``k`` batches.
* Every index the sampler yields is a :class:`Draw`: an ``int`` that carries the seed of that
  sample's random augmentation, a hash of ``(seed, epoch, position)``. The dataset runs its
  per-sample transform under that seed (:func:`seeded`), so an augmentation never depends on
  which worker made it or on what was drawn before.
* Nothing on the data side touches torch's global generator (the loaders get a generator of
  their own for the worker base seed). The global streams then belong to the training step
  alone (batched augmentation, dropout, DP noise), and restoring them from the checkpoint at
  the resume point continues them exactly (``runs/resume.py``). Lightning prefetches the
  next batch before the current step runs, so data drawn from the global stream would be
  drawn once before the checkpoint and again after the resume.

This is the approach of deterministic resumption in MosaicML Composer and of torchdata's
``StatefulDataLoader`` (sampler position in the checkpoint). Lightning 2.6 restores a
stateful loader's ``state_dict`` only when ``train_dataloader`` was not already built before
the checkpoint was loaded, and our modules size their schedules with
``trainer.estimated_stepping_batches``, which builds it earlier; and a loader's own count of
batches runs one ahead of the steps taken because of the prefetch. The position is therefore
taken from Lightning's loop counters when the checkpoint is written and applied when training
starts (``runs/resume.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: int) -> int:
    """One round of splitmix64 (Steele et al., 2014): a well-mixed 64-bit hash of ``x``."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def mix(*words: int) -> int:
    """A seed for ``torch.manual_seed`` from integers (non-negative, below 2**63).

    Nearby inputs give unrelated seeds, so ``mix(seed, epoch, i)`` and ``mix(seed, epoch, i+1)``
    start independent-looking streams.
    """
    h = 0
    for word in words:
        h = _splitmix64(h ^ (int(word) & _MASK64))
    return h >> 1


class Draw(int):
    """A dataset index that carries the seed of its sample's random transform.

    Behaves as the ``int`` index everywhere (tensor indexing, batching, pickling to workers).

    Args:
        index: the dataset index.
        key: the seed of the sample's draws (see :func:`mix`).
    """

    key: int

    def __new__(cls, index: int, key: int) -> Draw:
        obj = super().__new__(cls, index)
        obj.key = key
        return obj

    def __reduce__(self) -> tuple[Any, tuple[int, int]]:
        return (Draw, (int(self), self.key))


def seeded(key: int | None, fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn(value)`` with torch's CPU generator seeded by ``key``; the generator's state is put
    back after, so the caller's stream is untouched. ``key=None`` calls ``fn`` plainly.

    Only the CPU generator is seeded (the transforms draw on the CPU): ``torch.manual_seed``
    also seeds every accelerator's generators and cost 134 us per sample against 2 us here,
    most of a flip-only batch's loading time; the CPU draws are the same.
    """
    if key is None:
        return fn(value)
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(key)
    try:
        return fn(value)
    finally:
        generator.set_state(state)


class EpochSampler(DistributedSampler):
    """Shuffled indices whose order is a function of ``(seed, epoch)``, sharded over ranks,
    that can start an epoch after its first batches.

    Order: a permutation of the dataset from a generator seeded with ``mix(seed, epoch)``,
    padded by wrapping around to a multiple of ``num_replicas`` (as ``DistributedSampler``
    does), rank ``r`` taking positions ``r, r + R, ...``. Each index is a :class:`Draw` keyed by
    ``mix(seed, epoch, position)``.

    Args:
        dataset: the dataset (only its length is read).
        batch_size: the loader's batch size (turns a batch position into samples to skip).
        seed: the run's seed.
        num_replicas: DDP world size (1 on one process).
        rank: this process's rank.

    Raises:
        ValueError: for a batch size below 1 or a rank outside ``[0, num_replicas)``.
    """

    def __init__(
        self, dataset: Dataset, *, batch_size: int, seed: int, num_replicas: int, rank: int
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.batch_size = batch_size
        self._skip = 0

    def resume_at(self, epoch: int, batches: int) -> None:
        """Make the next iteration epoch ``epoch`` without its first ``batches`` batches."""
        self.set_epoch(epoch)
        self._skip = batches * self.batch_size

    def order(self) -> list[Draw]:
        """This rank's indices for the current epoch, in order, each with its draw key."""
        n = len(self.dataset)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(mix(self.seed, self.epoch))
        perm = torch.randperm(n, generator=generator).tolist()
        padded = perm * math.ceil(self.total_size / n) if n else []
        positions = range(self.rank, self.total_size, self.num_replicas)
        return [Draw(padded[p], mix(self.seed, self.epoch, p)) for p in positions]

    def __iter__(self) -> Iterator[Draw]:  # type: ignore[override]
        skip, self._skip = self._skip, 0
        return iter(self.order()[skip:])
