"""The training-stage runner: train, resume or skip one registered stage for one role."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.errors import UserError
from lightning_talos.interrupts import SignalInterruptError
from lightning_talos.pipeline.checkpoints import LAST, Progress, resume_checkpoint
from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.provenance import check_upstream, rebuild_command
from lightning_talos.pipeline.resume import wait_for_ranks
from lightning_talos.pipeline.rundir import (
    decide,
    new_manifest,
    read_manifest,
    require_done,
    save_config,
    stage_config,
    write_json,
)
from lightning_talos.pipeline.signals import mark_interrupted, stop_on_signal
from lightning_talos.pipeline.stages import TrainStage, role_family, train_stage
from lightning_talos.pipeline.trainer import build_logger, build_trainer, new_wandb_id
from lightning_talos.precision import precision_record


def is_rank_zero() -> bool:
    """True in the process that owns the run folder (DDP children re-run the command)."""
    return rank_zero_only.rank == 0


def upstream_dirs(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, Path]:
    """Folders of the stages this one reads, for ``role``."""
    return {name: ctx.stage_dir(name, role) for name in stage.upstream(ctx.cfg)}


def upstream_inputs(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, str]:
    """Completion ids of the stages this one reads (a re-run upstream gets a new id).

    Raises:
        UserError: when an upstream stage has not finished, with the command that trains it.
    """
    inputs: dict[str, str] = {}
    for name, folder in upstream_dirs(ctx, stage, role).items():
        rebuild = train_stage(name).rebuild(ctx.cfg, role)
        inputs[folder.name] = require_done(folder, rebuild)["completion_id"]
    if role_family(role) is not None:  # an extra role: the data it trains on is an input too
        inputs[f"data-{role}"] = role_splits(ctx, role).hash
    return inputs


def role_splits(ctx: RunContext, role: str) -> Any:
    """What a model of ``role`` trains on: the run's splits, or its role family's data."""
    family = role_family(role)
    return ctx.splits if family is None else family.data(ctx, role)


def check_attribute(ctx: RunContext, stage_name: str, needs_attribute: bool) -> None:
    """Stop before anything is written when a stage needs an attribute the data lacks.

    Raises:
        UserError: naming the dataset and the stage.
    """
    if needs_attribute and not ctx.pool.has_attribute:
        raise UserError(f"{ctx.cfg.data.name} has no sensitive attribute: {stage_name} needs one")


def run_train_stage(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, Any]:
    """Train (or resume, or skip) one stage for one role; return its manifest."""
    cfg = ctx.cfg
    check_attribute(ctx, stage.name, stage.needs_attribute)
    stage_dir = ctx.stage_dir(stage.name, role)
    config = stage_config(cfg, stage.sections)
    inputs = upstream_inputs(ctx, stage, role)
    check_upstream(ctx, stage, role)
    epochs = stage.epochs(cfg)
    manifest = read_manifest(stage_dir)
    action = decide(
        manifest,
        config=config,
        inputs=inputs,
        split_hash=ctx.splits.hash,
        resume=cfg.run.resume,
        where=stage_dir,
        epochs=epochs,
    )
    label = stage_dir.name
    if action == "done":
        print(f"[{label}] already done ({epochs} epochs) in {stage_dir}")
        return manifest  # type: ignore[return-value]
    # read before the manifest is touched: a corrupt checkpoint stops here, in one line
    rebuild = rebuild_command(cfg, stage, role)
    start = resume_checkpoint(stage_dir, rebuild=rebuild) if action == "resume" else None
    if action == "fresh" and stage_dir.exists() and is_rank_zero():
        shutil.rmtree(stage_dir)
    wandb_id = manifest["wandb_id"] if action == "resume" and manifest else new_wandb_id()
    started = time.time()
    manifest = new_manifest(
        stage.name,
        role,
        config,
        inputs=inputs,
        split_hash=ctx.splits.hash,
        wandb_id=wandb_id,
        max_epochs=epochs,
        **precision_record(cfg.trainer, stage.precision),
    )
    if is_rank_zero():
        save_config(cfg, stage_dir)
        write_json(stage_dir / "manifest.json", manifest)
    try:
        metrics = _fit(ctx, stage, role, epochs, wandb_id, start=start)
    except SignalInterruptError as err:  # also a stop before training began: nothing saved
        if is_rank_zero() and (read_manifest(stage_dir) or {}).get("status") != "interrupted":
            mark_interrupted(stage_dir / "manifest.json", {"interrupted_by": err.signal_name})
        raise
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
    stage: TrainStage,
    role: str,
    epochs: int,
    wandb_id: str,
    *,
    start: tuple[Path, Progress] | None,
) -> dict[str, Any]:
    cfg = ctx.cfg
    stage_dir = ctx.stage_dir(stage.name, role)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = stage.build(ctx, role, upstream_dirs(ctx, stage, role))
    dm = TalosDataModule(
        cfg.data, ctx.pool, role_splits(ctx, role), role=role, seed=cfg.seed, **stage.data(cfg)
    )
    if hasattr(module, "wrap_datamodule"):  # e.g. DP-SGD's Poisson sampling
        dm = module.wrap_datamodule(dm)
    passes = getattr(module, "passes_per_epoch", 1)
    strategy = None
    if getattr(module, "has_unused_parameters", False) and str(cfg.trainer.strategy).startswith(
        "ddp"
    ):
        strategy = "ddp_find_unused_parameters_true"
    tags = [str(cfg.data.name), str(cfg.model.backbone), stage.name, role]
    logger = build_logger(cfg, name=stage_dir.name, wandb_id=wandb_id, save_dir=ctx.root, tags=tags)
    trainer = build_trainer(
        cfg,
        stage_dir=stage_dir,
        max_epochs=epochs * passes,
        logger=logger,
        strategy=strategy,
        precision=stage.precision,
    )
    ckpt, resumed = start or (None, None)
    manifest_path, last = stage_dir / "manifest.json", stage_dir / LAST
    try:  # SIGTERM / Ctrl-C: last.ckpt saved, manifest `interrupted`, exit 143 / 130
        with stop_on_signal(trainer, manifest_path=manifest_path, checkpoint=last):
            trainer.fit(
                module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True
            )
            results = trainer.validate(module, datamodule=dm, verbose=False)
    except SignalInterruptError as err:
        # DDP launcher: return once every rank it started has stopped, and say how they ended
        codes = wait_for_ranks(trainer)
        if codes:
            err.args = (f"{err.args[0]}; the other ranks exited {codes}",)
        raise
    finally:
        if logger:
            logger.experiment.finish()
    merged: dict[str, Any] = {}
    for block in results:
        merged.update({k.split("/dataloader_idx")[0]: float(v) for k, v in block.items()})
    merged["epochs"] = trainer.current_epoch // passes
    merged["resumed_from_epoch"] = resumed.epochs // passes if resumed else None
    merged["resumed_from_step"] = resumed.global_step if resumed else None
    merged["global_step"] = int(trainer.global_step)
    if stage.record is not None:
        merged["defence"] = stage.record(module)
    return merged
