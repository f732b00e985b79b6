"""The training stages: pretrain, talos, linear, talos_linear, supervised (one role each)."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lightning_talos.config.load import to_dict
from lightning_talos.data.datamodule import TalosDataModule, aug_kwargs
from lightning_talos.errors import UserError
from lightning_talos.modules.classifier import LinearClassifier, SupervisedClassifier
from lightning_talos.modules.simclr import SimCLR
from lightning_talos.modules.talos import Talos
from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.rundir import (
    check_reusable,
    new_manifest,
    read_manifest,
    save_config,
    stage_config,
    write_json,
)
from lightning_talos.pipeline.trainer import build_logger, build_trainer, new_wandb_id
from lightning_talos.safe_load import load_checkpoint


@dataclass(frozen=True)
class TrainSpec:
    """How one training stage is built."""

    section: str  # config section with the stage's optimiser and max_epochs
    use: str  # augmentation by use (see TalosDataModule)
    upstream: str | None = None  # encoder stage a linear stage reads
    command: str = ""  # the CLI command that runs it


TRAIN_STAGES: dict[str, TrainSpec] = {
    "pretrain": TrainSpec("simclr", "contrastive", command="pretrain"),
    "talos": TrainSpec("talos", "contrastive", command="talos"),
    "linear": TrainSpec("linear", "flip", upstream="pretrain", command="linear"),
    "talos_linear": TrainSpec("linear", "flip", upstream="talos", command="linear method=talos"),
    "supervised": TrainSpec("supervised", "flip", command="supervised"),
}


def is_rank_zero() -> bool:
    """True in the process that owns the run folder (DDP children re-run the command)."""
    return rank_zero_only.rank == 0


def stage_epochs(ctx: RunContext, stage: str) -> int:
    """Epochs of a stage: its own ``max_epochs`` or ``trainer.max_epochs``."""
    own = ctx.cfg[TRAIN_STAGES[stage].section].max_epochs
    return int(own or ctx.cfg.trainer.max_epochs)


def upstream(cfg: DictConfig, stage: str) -> str | None:
    """The stage whose checkpoint this one reads: the encoder of a linear stage, or SimCLR for
    Talos when ``talos.init_from_pretrain`` is set."""
    if stage == "talos" and cfg.talos.init_from_pretrain:
        return "pretrain"
    return TRAIN_STAGES[stage].upstream


def upstream_inputs(ctx: RunContext, stage: str, role: str) -> dict[str, str]:
    """Completion ids of the stages this one reads (a re-run upstream gets a new id).

    Raises:
        UserError: when an upstream stage has not finished, with the command that trains it.
    """
    source = upstream(ctx.cfg, stage)
    if source is None:
        return {}
    return {source: require_done(ctx, source, role)["completion_id"]}


def require_done(ctx: RunContext, stage: str, role: str) -> dict[str, Any]:
    """The manifest of a finished stage.

    Raises:
        UserError: naming the command that trains it.
    """
    manifest = read_manifest(ctx.stage_dir(stage, role))
    if manifest is None or manifest.get("status") != "done":
        command = TRAIN_STAGES[stage].command
        raise UserError(
            f"{stage}-{role} is missing or unfinished in {ctx.root}; train it first: "
            f"lightning-talos {command} role={role} run.dir={ctx.cfg.run.dir} "
            f"run.name={ctx.cfg.run.name} (with the same settings)"
        )
    return manifest


def decide(
    manifest: dict[str, Any] | None,
    *,
    config: dict[str, Any],
    inputs: dict[str, str],
    split_hash: str,
    epochs: int,
    resume: str,
    where: Path,
) -> str:
    """``fresh``, ``resume`` or ``done`` for a stage about to run.

    Raises:
        UserError: when the stage was made with other settings or other splits.
    """
    if resume == "never" or manifest is None:
        return "fresh"
    check_reusable(manifest, config, where)
    if manifest.get("split_hash") != split_hash:
        raise UserError(f"{where} was trained on other splits; use a new run.name")
    if manifest.get("inputs", {}) != inputs:
        return "fresh"  # an upstream stage was re-run: never reuse what was built on the old one
    if manifest.get("status") == "done" and manifest.get("epochs_completed", 0) >= epochs:
        return "done"
    return "resume"


def build_module(ctx: RunContext, stage: str, role: str) -> pl.LightningModule:
    """The LightningModule of a stage, from the config (encoders loaded from upstream)."""
    cfg, pool = ctx.cfg, ctx.pool
    model = {
        "backbone": cfg.model.backbone,
        "stem": cfg.model.stem,
        "num_classes": pool.num_classes,
        "channels_last": cfg.model.channels_last,
    }
    spec = TRAIN_STAGES[stage]
    optim = (
        to_dict(cfg[spec.section].optim) if spec.section != "talos" else to_dict(cfg.simclr.optim)
    )
    if stage in ("linear", "talos_linear"):
        module = LinearClassifier(**model, optim=optim)
        module.load_encoder(encoder_weights(ctx.stage_dir(spec.upstream or "", role)))
        return module
    if stage == "supervised":
        return SupervisedClassifier(**model, optim=optim)
    contrastive = {
        **model,
        "temperature": cfg.simclr.temperature,
        "optim": optim,
        "probe_lr": cfg.simclr.probe_lr,
        "proj_hidden_dim": cfg.model.proj_hidden_dim,
        "proj_dim": cfg.model.proj_dim,
        "augment": aug_kwargs(cfg.data.aug, cfg.data.image_size)
        if cfg.data.aug.mode == "batched"
        else None,
    }
    if stage == "pretrain":
        module: pl.LightningModule = SimCLR(**contrastive)
    else:
        module = Talos(**contrastive, **talos_settings(ctx))
    if upstream(cfg, stage):  # Talos fine-tuned from this role's SimCLR encoder
        module.load_state_dict(simclr_weights(ctx.stage_dir("pretrain", role)), strict=False)
    elif cfg.simclr.init_checkpoint:
        module.backbone.load_state_dict(encoder_weights(Path(cfg.simclr.init_checkpoint)))
    return module


def talos_settings(ctx: RunContext) -> dict[str, Any]:
    """Talos keyword settings from ``talos.*``.

    Raises:
        UserError: for datasets without a sensitive attribute.
    """
    if not ctx.pool.has_attribute:
        raise UserError(f"{ctx.cfg.data.name} has no sensitive attribute: Talos needs one")
    t = ctx.cfg.talos
    return {
        "num_attribute_classes": ctx.pool.num_attribute_classes,
        "lambda_": t["lambda"],
        "location": t.location,
        "views": t.views,
        "schedule": t.schedule,
        "adversary_steps": t.adversary_steps,
        "lambda_schedule": t.lambda_schedule,
        "adversary_lr": t.adversary_lr,
        "adversary_hidden": tuple(t.adversary_hidden),
    }


def _state_dict(source: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = source / "checkpoints" / "last.ckpt" if source.is_dir() else source
    state = load_checkpoint(path)
    if not isinstance(state.get("state_dict"), dict):
        raise UserError(f"cannot read checkpoint {path}: it holds no state_dict")
    return path, state["state_dict"]


def simclr_weights(source: Path) -> dict[str, torch.Tensor]:
    """Backbone, projection head and online probe of a SimCLR checkpoint."""
    _, state = _state_dict(source)
    parts = ("backbone.", "projection.", "probe.")
    return {k: v for k, v in state.items() if k.startswith(parts)}


def encoder_weights(source: Path) -> dict[str, torch.Tensor]:
    """Backbone weights from a stage folder's ``last.ckpt`` or from a checkpoint file.

    Raises:
        UserError: when the checkpoint is missing or holds no backbone.
    """
    path, state = _state_dict(source)
    weights = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise UserError(f"{path} holds no SimCLR/Talos backbone weights")
    return weights


def train_stage(ctx: RunContext, stage: str, role: str) -> dict[str, Any]:
    """Train (or resume, or skip) one stage for one role; return its manifest."""
    cfg = ctx.cfg
    stage_dir = ctx.stage_dir(stage, role)
    config = stage_config(cfg, stage)
    inputs = upstream_inputs(ctx, stage, role)
    epochs = stage_epochs(ctx, stage)
    manifest = read_manifest(stage_dir)
    action = decide(
        manifest,
        config=config,
        inputs=inputs,
        split_hash=ctx.splits.hash,
        epochs=epochs,
        resume=cfg.run.resume,
        where=stage_dir,
    )
    if action == "done":
        print(f"[{stage}-{role}] already done ({epochs} epochs) in {stage_dir}")
        return manifest  # type: ignore[return-value]
    if action == "fresh" and stage_dir.exists() and is_rank_zero():
        shutil.rmtree(stage_dir)
    wandb_id = manifest["wandb_id"] if action == "resume" and manifest else new_wandb_id()
    started = time.time()
    manifest = new_manifest(
        stage,
        role,
        config,
        inputs=inputs,
        split_hash=ctx.splits.hash,
        wandb_id=wandb_id,
        max_epochs=epochs,
    )
    if is_rank_zero():
        save_config(cfg, stage_dir)
        write_json(stage_dir / "manifest.json", manifest)
    metrics = _fit(ctx, stage, role, stage_dir, epochs, wandb_id, resume=action == "resume")
    manifest["epochs_completed"] = metrics["epochs"]
    manifest["wall_time_s"] = round(time.time() - started, 2)
    manifest["status"] = "fast_dev_run" if cfg.trainer.fast_dev_run else "done"
    manifest["completion_id"] = uuid.uuid4().hex
    if is_rank_zero():
        write_json(stage_dir / "metrics.json", metrics)
        write_json(stage_dir / "manifest.json", manifest)
    return manifest


def _fit(
    ctx: RunContext,
    stage: str,
    role: str,
    stage_dir: Path,
    epochs: int,
    wandb_id: str,
    *,
    resume: bool,
) -> dict[str, Any]:
    cfg = ctx.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    spec = TRAIN_STAGES[stage]
    module = build_module(ctx, stage, role)
    with_original = stage == "talos" and cfg.talos.views == "original"
    dm = TalosDataModule(
        cfg.data, ctx.pool, ctx.splits, role=role, use=spec.use, with_original=with_original
    )
    alternating = stage == "talos" and cfg.talos.schedule == "alternating"
    strategy = None
    if stage == "talos" and str(cfg.trainer.strategy).startswith("ddp"):
        strategy = "ddp_find_unused_parameters_true"  # the adversary pass skips the encoder
    tags = [cfg.data.name, cfg.model.backbone, stage, role]
    logger = build_logger(
        cfg, name=f"{stage}-{role}", wandb_id=wandb_id, save_dir=ctx.root, tags=tags
    )
    trainer = build_trainer(
        cfg,
        stage_dir=stage_dir,
        max_epochs=epochs * (2 if alternating else 1),
        logger=logger,
        strategy=strategy,
    )
    last = stage_dir / "checkpoints" / "last.ckpt"
    ckpt = last if resume and last.is_file() else None
    resumed_from = _checkpoint_epochs(ckpt) if ckpt else None
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
        results = trainer.validate(module, datamodule=dm, verbose=False)
    finally:
        if logger:
            logger.experiment.finish()
    merged: dict[str, Any] = {}
    for block in results:
        merged.update({k.split("/dataloader_idx")[0]: float(v) for k, v in block.items()})
    merged["epochs"] = trainer.current_epoch // (2 if alternating else 1)
    merged["resumed_from_epoch"] = resumed_from
    merged["global_step"] = int(trainer.global_step)
    return merged


def _checkpoint_epochs(path: Path) -> int:
    """Completed epochs recorded in a Lightning checkpoint (memory-mapped, weights not read)."""
    state = load_checkpoint(path, mmap=True)
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"cannot read checkpoint {path}: no training progress in it") from None
