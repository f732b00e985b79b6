"""Trainer, W&B logger and atomic checkpoints from the config."""

from __future__ import annotations

import logging
import netrc
import os
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lightning_talos.config.load import to_dict
from lightning_talos.precision import resolve_precision
from lightning_talos.runs.checkpoints import LAST, LastCheckpoint
from lightning_talos.runs.resume import AgreedStop, ExactResume
from lightning_talos.runs.signals import GracefulInterrupt
from lightning_talos.threads import cpu_share

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it into place.

    A kill during the write leaves the previous ``last.ckpt`` intact.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def has_wandb_key() -> bool:
    """True when W&B can log online (an API key in the environment or in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(cfg: DictConfig) -> str:
    """``online``, ``offline`` or ``disabled`` (``WANDB_MODE`` in the environment wins)."""
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if cfg.logger.mode != "auto":
        return cfg.logger.mode
    return "online" if has_wandb_key() else "offline"


def new_wandb_id() -> str:
    return uuid.uuid4().hex[:12]


def build_logger(
    cfg: DictConfig, *, name: str, wandb_id: str, save_dir: Path, tags: list[str]
) -> Any:
    """A ``WandbLogger`` continuing run ``wandb_id`` (False when W&B is disabled)."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return False
    if mode == "offline" and cfg.logger.mode == "auto":
        log.warning("W&B offline (no API key): upload later with `wandb sync %s/wandb`", save_dir)
    from pytorch_lightning.loggers import WandbLogger

    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        name=name,
        group=cfg.run.name,
        id=wandb_id,
        resume="allow",
        mode=mode,
        save_dir=str(save_dir),
        tags=[*tags, *cfg.logger.tags],
        config=to_dict(cfg),
    )


class FairCpuShare(pl.Callback):
    """Keep torch's CPU threads at this run's share of the cores (``threads.CpuShare``): at
    the start of training and validation and every ``every_n_batches`` training batches, so a
    run started beside this one is noticed within a few steps. Does nothing without a share
    (``OMP_NUM_THREADS`` set, or not started by the CLI)."""

    def __init__(self, every_n_batches: int = 10) -> None:
        self.every_n_batches = every_n_batches

    @staticmethod
    def _apply(trainer: pl.Trainer) -> None:
        share = cpu_share()
        if share is not None and trainer.strategy.root_device.type == "cpu":
            share.apply()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx % self.every_n_batches == 0:
            self._apply(trainer)


def build_trainer(
    cfg: DictConfig,
    *,
    stage_dir: Path,
    max_epochs: int,
    logger: Any,
    strategy: str | None = None,
    precision: str | None = None,
) -> pl.Trainer:
    """A Trainer writing ``<stage_dir>/checkpoints/last.ckpt`` atomically: every epoch, every
    ``trainer.checkpoint_every_n_steps`` steps / ``trainer.checkpoint_every_minutes`` minutes,
    and when SIGTERM or Ctrl-C stops it (see ``runs/signals.py``; all DDP ranks stop after
    the same batch), with what an exact resume needs (``runs/resume.py``). ``strategy``
    and ``precision`` override ``trainer.*`` for a stage that needs its own."""
    t = cfg.trainer
    checkpoint = LastCheckpoint(
        stage_dir / LAST,
        every_n_steps=t.checkpoint_every_n_steps,
        every_minutes=t.checkpoint_every_minutes,
    )
    callbacks: list[Any] = [checkpoint, GracefulInterrupt(), AgreedStop(), ExactResume()]
    callbacks.append(FairCpuShare())
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return pl.Trainer(
        default_root_dir=str(stage_dir),
        max_epochs=max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy or t.strategy,
        precision=resolve_precision(str(precision or t.precision), str(t.accelerator))[0],
        sync_batchnorm=t.sync_batchnorm,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_train_batches=t.limit_train_batches,
        fast_dev_run=t.fast_dev_run,
        deterministic=t.deterministic,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
