"""``StepProfile``: where a ``Trainer.fit`` spends its time, step by step.

Lightning fetches a batch, then calls ``on_train_batch_start``; the step (forward, backward,
optimiser, the batched augmentation inside the step) runs until ``on_train_batch_end``. So the
time from one batch's end to the next batch's start is waiting for data (and moving it to the
device), and what remains of the fit is per-epoch work: validation, checkpoints, the epoch-end
hooks. The callback keeps sums, not per-step lists, so it costs nothing to leave on.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class StepProfile(pl.Callback):
    """Sums of step time, data-wait time and the rest of ``fit``, on this process.

    After ``fit``, :meth:`summary` gives ``fit_s``, ``steps``, ``step_ms`` and ``data_ms`` (means
    per step), ``data_fraction`` and ``other_s`` (fit time outside steps and data waits), and
    ``images_per_s`` (training images per second of fit, counted from each batch's first
    tensor). Resumed fits count only the steps this process ran.
    """

    def __init__(self) -> None:
        self.fit_s = self.step_s = self.data_s = 0.0
        self.steps = self.images = 0
        self._fit_start: float | None = None
        self._last_end: float | None = None
        self._step_start: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.perf_counter()  # the first fetch of an epoch waits for data too

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self.data_s += now - self._last_end
        self._step_start = now
        self.images += _batch_len(batch)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        if self._step_start is not None:
            self.step_s += now - self._step_start
            self.steps += 1
        self._last_end = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = None  # epoch-end work is not a data wait

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fit_start is not None:
            self.fit_s = time.perf_counter() - self._fit_start

    def summary(self) -> dict[str, float | int]:
        """The sums as per-step means and fractions (zeros before any step)."""
        steps = max(self.steps, 1)
        return {
            "fit_s": round(self.fit_s, 3),
            "steps": self.steps,
            "step_ms": round(1000 * self.step_s / steps, 2),
            "data_ms": round(1000 * self.data_s / steps, 2),
            "data_fraction": round(self.data_s / self.fit_s, 4) if self.fit_s > 0 else 0.0,
            "other_s": round(max(self.fit_s - self.step_s - self.data_s, 0.0), 3),
            "images_per_s": round(self.images / self.fit_s, 1) if self.fit_s > 0 else 0.0,
        }


def _batch_len(batch: Any) -> int:
    """Images in a batch: the length of its first tensor (0 when it has none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 0
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_len(next(iter(batch.values())))
    return 0
