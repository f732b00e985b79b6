"""What every measurement shares: the config, the device, the synthetic pool, model builders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from lightning_talos.config.load import to_dict
from lightning_talos.data.datamodule import Sample, aug_kwargs, collate
from lightning_talos.data.formats.synthetic import make_synthetic
from lightning_talos.data.pool import Pool
from lightning_talos.data.splits import Splits, member_split
from lightning_talos.errors import UserError
from lightning_talos.modules.simclr import SimCLR
from lightning_talos.precision import resolve_precision
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.builders import simclr_settings

#: Precisions the plain-PyTorch side of the benchmark can reproduce exactly.
PRECISIONS = ("32-true", "32", "bf16-mixed")


def bench_device(cfg: DictConfig) -> torch.device:
    """``cuda`` for ``trainer.accelerator=gpu|cuda`` (or ``auto`` with a GPU), else ``cpu``."""
    accel = str(cfg.trainer.accelerator)
    if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("trainer.accelerator=gpu but no CUDA device is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast context Lightning's ``precision`` plugin opens around a training step."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Bench:
    """Config, device, step counts and data of one benchmark run.

    Attributes:
        cfg: the composed config.
        steps: timed steps (or repeats) per round of a measurement.
        warmup: untimed steps before each round.
        rounds: alternating rounds of the two sides of a ratio.
    """

    cfg: DictConfig
    steps: int = 8
    warmup: int = 2
    rounds: int = 3
    device: torch.device = field(init=False)
    pool: Pool = field(init=False)
    splits: Splits = field(init=False)

    def __post_init__(self) -> None:
        precision = self.precision
        if precision not in PRECISIONS:
            raise UserError(f"bench supports trainer.precision in {PRECISIONS}, got {precision}")
        self.device = bench_device(self.cfg)
        quarter = self.cfg.data.synthetic.quarter_size
        self.pool = make_synthetic(
            n=4 * quarter, image_size=self.cfg.data.image_size, seed=self.cfg.seed
        )
        self.splits = member_split(len(self.pool), seed=self.cfg.seed)

    @property
    def precision(self) -> str:
        t = self.cfg.trainer
        return resolve_precision(str(t.precision), str(t.accelerator))[0]  # `auto` resolved

    @property
    def batch_size(self) -> int:
        return int(self.cfg.data.batch_size)

    def info(self, **overrides: Any) -> dict[str, Any]:
        """What every result line records: backbone, image size, batch, precision, device."""
        m = self.cfg.model
        out = {
            "backbone": m.backbone,
            "stem": m.stem,
            "image_size": int(self.cfg.data.image_size),
            "batch": self.batch_size,
            "precision": self.precision,
            "channels_last": bool(m.channels_last),
            "device": self.device.type,
            "threads": torch.get_num_threads(),
        }
        return {**out, **overrides}

    def with_overrides(self, **dotted: Any) -> DictConfig:
        """A copy of the config with ``section.key=value`` overrides (types not re-checked)."""
        cfg = OmegaConf.create(to_dict(self.cfg))
        for key, value in dotted.items():
            OmegaConf.update(cfg, key, value)
        return cfg

    def simclr(self, *, augment: bool = True, channels_last: bool | None = None) -> SimCLR:
        """The project's SimCLR module from the config, seeded (identical for every caller)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        settings = simclr_settings(RunContext(cfg, pool=self.pool, splits=self.splits))
        settings["augment"] = aug_kwargs(cfg.data.aug, cfg.data.image_size) if augment else None
        if channels_last is not None:
            settings["channels_last"] = channels_last
        return SimCLR(**settings)

    def trainer(self, callbacks: list[pl.Callback], **limits: Any) -> pl.Trainer:
        """A bare Trainer: no logger, no checkpoints, no progress bar, no validation."""
        return pl.Trainer(
            accelerator="gpu" if self.device.type == "cuda" else "cpu",
            devices=1,
            precision=self.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=callbacks,
            **limits,
        )

    def batches(self, sizes: list[int]) -> list[Sample]:
        """Pre-made uint8 batches of the target members, one per entry of ``sizes``."""
        members = torch.as_tensor(self.splits.target_train)
        labels = torch.as_tensor(self.pool.labels)
        attrs = torch.as_tensor(self.pool.attributes)
        out, start = [], 0
        for size in sizes:
            idx = members[torch.arange(start, start + size) % len(members)]
            out.append(Sample(idx, self.pool.images[idx], labels[idx], attrs[idx]))
            start += size
        return out

    def loader(self, batches: list[Sample], length: int | None = None) -> DataLoader:
        """A DataLoader cycling over pre-made batches (``length`` of them per epoch)."""
        dataset = _Premade(batches, length or len(batches))
        return DataLoader(
            dataset, batch_size=None, collate_fn=collate, pin_memory=self.device.type == "cuda"
        )

    def to_device(self, batch: Sample) -> Sample:
        """The batch on the bench device (non-blocking, as Lightning moves it)."""
        return Sample(*(t.to(self.device, non_blocking=True) for t in batch))


class _Premade(Dataset):
    """``length`` items cycling over a list of ready batches."""

    def __init__(self, batches: list[Sample], length: int) -> None:
        self.items, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Sample:
        return self.items[i % len(self.items)]

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(self.length))


def thread_count(device: torch.device) -> int:
    """Intra-op threads for every measurement: ``$BENCH_THREADS``, else 1 on CPU.

    One thread on CPU: on a shared 2-core machine two OpenMP threads wait on each other
    whenever another process holds a core (measured 0.4 s/step with one thread vs 0.6 to
    1.9 s with two, small CNN at batch 64), which makes every ratio noisy. On GPU runs torch's
    default is kept.
    """
    default = 1 if device.type == "cpu" else torch.get_num_threads()
    return int(os.environ.get("BENCH_THREADS", default))
