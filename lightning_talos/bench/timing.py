"""Timing helpers of the benchmark: device sync, medians, a step-timing Lightning callback."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work, so wall clocks see it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """``time.perf_counter`` after the device has finished its queued work."""
    sync(device)
    return time.perf_counter()


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (``nan`` when empty)."""
    return float(statistics.median(values)) if values else float("nan")


def periods(stamps: Sequence[float], warmup: int) -> list[float]:
    """Intervals between consecutive time stamps, dropping the first ``warmup`` ones."""
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])][warmup:]


def timed(fn: Callable[[], Any], device: torch.device, *, repeats: int, warmup: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = now(device)
        fn()
        times.append(now(device) - start)
    return times


@contextmanager
def stopwatch(device: torch.device) -> Iterator[list[float]]:
    """``with stopwatch(dev) as t:`` ... ``t[0]`` holds the block's wall time afterwards."""
    out: list[float] = []
    start = now(device)
    yield out
    out.append(now(device) - start)


class StepTimer(pl.Callback):
    """Time stamps of every training batch start, and of every epoch's start and end.

    The period between two batch starts is one full step as the Trainer runs it: fetching the
    batch, moving it to the device, the step with backward and optimiser, and the loop's own
    bookkeeping (hooks, logging) — everything the framework adds.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.batch_starts: list[float] = []
        self.epochs: list[float] = []
        self._epoch_start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.batch_starts.append(now(self.device))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = now(self.device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(now(self.device) - self._epoch_start)
