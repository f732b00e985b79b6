"""The training-stage runner: train, resume or skip one registered stage for one role."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from lightning_talos.callbacks.profile import StepProfile
from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.errors import UserError
from lightning_talos.interrupts import SignalInterruptError
from lightning_talos.precision import precision_record
from lightning_talos.profiling import host_profile, host_sample
from lightning_talos.runs.checkpoints import Progress
from lightning_talos.runs.context import RunContext
from lightning_talos.runs.folder import LAST, Decision, Record
from lightning_talos.runs.lock import stage_lock
from lightning_talos.runs.records import new_manifest
from lightning_talos.runs.resume import wait_for_ranks
from lightning_talos.runs.signals import mark_interrupted, stop_on_signal
from lightning_talos.stages.privacy import privacy_callback
from lightning_talos.stages.provenance import expected, train_reads
from lightning_talos.stages.registry import TrainStage, role_family
from lightning_talos.stages.trainer import build_logger, build_trainer, new_wandb_id


def is_rank_zero() -> bool:
    """True in the process that owns the run folder (DDP children re-run the command)."""
    return rank_zero_only.rank == 0


def upstream_dirs(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, Path]:
    """Folders of the stages this one reads, for ``role``."""
    return {name: ctx.stage_dir(name, role) for name in stage.upstream(ctx.cfg)}


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


def decide_train(ctx: RunContext, stage: TrainStage, role: str) -> Decision:
    """What to do with ``stage`` for ``role`` (see :meth:`StageFolder.decide`).

    Raises:
        UserError: an upstream stage unfinished or made otherwise, this stage made with other
            settings or splits, or an unreadable checkpoint.
    """
    extra = None
    if role_family(role) is not None:  # an extra role: the data it trains on is an input too
        extra = {f"data-{role}": role_splits(ctx, role).hash}
    return ctx.folder(stage.name, role).decide(
        expected(ctx, stage, role),
        reads=train_reads(ctx, stage, role),
        extra_inputs=extra,
        split_hash=ctx.splits.hash,
        resume=ctx.cfg.run.resume,
    )


def run_train_stage(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, Any]:
    """Train (or resume, or skip) one stage for one role; return its manifest.

    Holds the stage's lock throughout, so stages of one run can train side by side in separate
    processes while one stage never trains twice at once.

    Raises:
        UserError: bad input, or another process writing this stage (naming it).
    """
    with stage_lock(ctx.root, ctx.stage_dir(stage.name, role).name):
        return _train_stage(ctx, stage, role)


def _train_stage(ctx: RunContext, stage: TrainStage, role: str) -> dict[str, Any]:
    cfg = ctx.cfg
    check_attribute(ctx, stage.name, stage.needs_attribute)
    folder = ctx.folder(stage.name, role)
    decision = decide_train(ctx, stage, role)
    epochs = stage.epochs(cfg)
    if decision.action == "done":
        print(f"[{folder.path.name}] already done ({epochs} epochs) in {folder.path}")
        return decision.manifest  # type: ignore[return-value]
    resuming = decision.action == "resume" and decision.manifest is not None
    wandb_id = decision.manifest["wandb_id"] if resuming else new_wandb_id()  # type: ignore[index]
    started, host = time.time(), host_sample()
    manifest = new_manifest(
        stage.name,
        role,
        expected(ctx, stage, role).config,
        inputs=decision.inputs,
        split_hash=ctx.splits.hash,
        wandb_id=wandb_id,
        max_epochs=epochs,
        **precision_record(cfg.trainer, stage.precision),
    )

    def train(rec: Record) -> None:
        try:
            metrics = _fit(ctx, stage, role, epochs, wandb_id, start=decision.start)
        except SignalInterruptError as err:  # also a stop before training began: nothing saved
            if is_rank_zero():
                mark_interrupted(folder.path / "manifest.json", {"interrupted_by": err.signal_name})
            raise
        rec.manifest["epochs_completed"] = metrics["epochs"]
        rec.manifest["wall_time_s"] = round(time.time() - started, 2)
        threads = torch.get_num_threads()
        steps = metrics.pop("profile")
        rec.manifest["profile"] = {**host_profile(host, host_sample(), threads=threads), **steps}
        rec.manifest["finished_unix"] = time.time()
        rec.manifest["status"] = "fast_dev_run" if cfg.trainer.fast_dev_run else "done"
        rec.manifest["completion_id"] = uuid.uuid4().hex
        rec.outputs["metrics.json"] = metrics

    fresh = decision.action == "fresh"
    return folder.record(Record(manifest), train, cfg=cfg, fresh=fresh, write=is_rank_zero())


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
    audit = privacy_callback(cfg, dm, module, stage_dir, passes)
    if audit is not None:  # trainer.privacy_audit_every_n_epochs
        trainer.callbacks.append(audit)
    profile = StepProfile()
    trainer.callbacks.append(profile)
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
    merged["profile"] = profile.summary()  # into the manifest, not metrics.json
    return merged
