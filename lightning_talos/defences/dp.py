"""DP-SGD plumbing around Opacus: the delta rule, the noise for a target epsilon, and Poisson
sampling that keeps the project's batch type.

DP-SGD's accounting assumes every step draws each training sample independently with
probability ``q`` (Poisson sampling), so batches vary in size and may be empty. Opacus'
``DPDataLoader`` does this, but its empty-batch collate rebuilds a batch by calling the batch's
type on a list, which fails for the project's ``Sample`` NamedTuple; :func:`poisson_loader`
uses Opacus' sampler with a collate that knows how to make an empty ``Sample``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pytorch_lightning as pl
import torch
from opacus.accountants.utils import get_noise_multiplier
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch.utils.data import DataLoader

from lightning_talos.defences.poisson import EpochPoissonSampler

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
MAX_DELTA = 1e-5


def default_delta(train_size: int) -> float:
    """``min(1 / (2 * train_size), 1e-5)``: below the ``1/n`` at which (epsilon, delta)-DP
    would allow releasing one whole record.

    Raises:
        ValueError: If ``train_size < 1``.
    """
    if train_size < 1:
        raise ValueError(f"train_size must be >= 1, got {train_size}")
    return min(1.0 / (2 * train_size), MAX_DELTA)


def steps_per_epoch(sample_rate: float) -> int:
    """Batches per epoch of Opacus' Poisson sampler: ``int(1 / sample_rate)``."""
    return int(1 / sample_rate)


@lru_cache(maxsize=64)  # a pure function of its settings; the search takes ~1 s
def noise_for_epsilon(
    *, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance, 0.01 in epsilon) whose
    ``steps`` Poisson-subsampled Gaussian steps at rate ``sample_rate`` spend at most
    ``(epsilon, delta)`` under ``accountant``.

    Raises:
        ValueError: If a setting is out of range or the budget is unreachable.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; valid: {', '.join(ACCOUNTANTS)}")
    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
    )


class EmptySafeCollate:
    """``collate_fn`` for Poisson batches: an empty batch becomes the template's structure with
    zero-length tensors (python ints/floats become empty int64/float32 tensors).

    Args:
        collate_fn: The loader's own collate function, used for non-empty batches.
        template: One sample of the dataset (``dataset[0]``), giving fields and shapes.
    """

    def __init__(self, collate_fn: Callable[[Any], Any], template: Any) -> None:
        self.collate_fn = collate_fn
        self.template = template

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, list) and not batch:
            return _empty_like(self.template)
        return self.collate_fn(batch)


def _empty_like(sample: Any) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.new_empty((0, *sample.shape))
    if isinstance(sample, bool | int):
        return torch.empty(0, dtype=torch.long)
    if isinstance(sample, float):
        return torch.empty(0, dtype=torch.float32)
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):  # a NamedTuple
        return type(sample)(*(_empty_like(v) for v in sample))
    if isinstance(sample, tuple | list):
        return type(sample)(_empty_like(v) for v in sample)
    if isinstance(sample, dict):
        return {k: _empty_like(v) for k, v in sample.items()}
    raise TypeError(f"cannot make an empty batch of {type(sample).__name__}")


def poisson_loader(
    loader: DataLoader,
    *,
    sample_rate: float,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> DataLoader:
    """The same dataset, workers and collate as ``loader``, batched by Poisson sampling.

    Every batch includes each sample independently with probability ``sample_rate``; an epoch
    is :func:`steps_per_epoch` batches. With ``seed`` the masks of each epoch come from that
    seed and the epoch (:class:`~lightning_talos.defences.poisson.EpochPoissonSampler`: a
    resumed run continues them exactly); otherwise from ``generator`` (torch's global one when
    None).

    Raises:
        ValueError: If ``sample_rate`` is outside (0, 1].
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    dataset = loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    if seed is None:
        sampler = UniformWithReplacementSampler(
            num_samples=n, sample_rate=sample_rate, generator=generator
        )
    else:
        sampler = EpochPoissonSampler(num_samples=n, sample_rate=sample_rate, seed=seed)
    workers = loader.num_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=EmptySafeCollate(loader.collate_fn, dataset[0]),
        generator=loader.generator,  # the workers' base seed: not the global generator
        num_workers=workers,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=workers > 0 and loader.persistent_workers,
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
    )


class PoissonDataModule(pl.LightningDataModule):
    """A datamodule whose training loader is :func:`poisson_loader` of the wrapped one's;
    validation, test and prediction loaders and batch hooks are the wrapped module's.

    Args:
        datamodule: The datamodule to wrap (e.g. ``TalosDataModule``).
        sample_rate: Poisson sampling rate ``q`` (the DP module's ``sample_rate``).
        generator: Random generator of the sampler (default: torch's global one).
        seed: Draw each epoch's masks from this seed instead (resumable; see
            :func:`poisson_loader`).
    """

    def __init__(
        self,
        datamodule: pl.LightningDataModule,
        *,
        sample_rate: float,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.sample_rate = sample_rate
        self.generator = generator
        self.seed = seed

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str) -> None:
        self.datamodule.setup(stage)

    def train_dataloader(self) -> DataLoader:
        inner = self.datamodule.train_dataloader()
        return poisson_loader(
            inner, sample_rate=self.sample_rate, generator=self.generator, seed=self.seed
        )

    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()

    def predict_dataloader(self) -> Any:
        return self.datamodule.predict_dataloader()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, idx: int) -> Any:
        return self.datamodule.transfer_batch_to_device(batch, device, idx)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.datamodule.on_before_batch_transfer(batch, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.datamodule.on_after_batch_transfer(batch, dataloader_idx)
