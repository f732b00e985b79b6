"""Upstream provenance for single-stage commands: the checks ``audit`` makes for every node.

A stage that reads another stage's checkpoint (``linear`` reads ``pretrain``, ``mia`` reads the
classifiers, which read their encoders) must read one made with the settings the current
command gives that stage; otherwise ``linear simclr.temperature=0.9`` after a pretrain at 0.2
would run on the 0.2 encoder and record 0.9 in its config. Each upstream checkpoint is also
read once (memory-mapped) so a corrupt file stops the command, with the command that rebuilds
it, before this stage writes anything.
"""

from __future__ import annotations

from omegaconf import DictConfig

from lightning_talos.errors import UserError
from lightning_talos.pipeline.checkpoints import LAST, read_progress
from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.rundir import config_diff, read_manifest, stage_config
from lightning_talos.pipeline.stages import (
    AttackStage,
    Method,
    TrainStage,
    train_stage,
    upstream_closure,
)


def rebuild_command(cfg: DictConfig, stage: TrainStage, role: str) -> str:
    """The command that retrains ``stage`` for ``role`` from scratch in this run."""
    return f"{stage.rebuild(cfg, role)} run.resume=never (plus this command's other settings)"


def check_stage(ctx: RunContext, stage: TrainStage, role: str) -> None:
    """Refuse an upstream stage made with other settings or with an unreadable checkpoint.

    A stage without a manifest is left to ``require_done`` (which names the command).

    Raises:
        UserError: naming the differing keys (and the command to retrain it), or the corrupt
            checkpoint and the command that rebuilds it.
    """
    folder = ctx.stage_dir(stage.name, role)
    manifest = read_manifest(folder)
    if manifest is None:
        return
    rebuild = rebuild_command(ctx.cfg, stage, role)
    diff = config_diff(manifest.get("config", {}), stage_config(ctx.cfg, stage.sections))
    if diff:
        raise UserError(
            f"upstream {folder} was made with other settings (differs in: {', '.join(diff)}); "
            f"use the settings it was made with, a new run.name, or retrain it with these: "
            f"{rebuild}"
        )
    wanted, done = stage.epochs(ctx.cfg), manifest.get("epochs_completed", 0)
    if manifest.get("status") == "done" and done < wanted:
        raise UserError(
            f"upstream {folder} has {done} of the {wanted} epochs these settings ask for; "
            "continue it first with the same command and settings"
        )
    if (folder / LAST).is_file():
        read_progress(folder / LAST, rebuild=rebuild)


def check_upstream(ctx: RunContext, stage: TrainStage, role: str) -> None:
    """:func:`check_stage` for every training stage a training ``stage`` reads.

    Raises:
        UserError: see :func:`check_stage`.
    """
    for name in upstream_closure(ctx.cfg, stage.name)[:-1]:
        check_stage(ctx, train_stage(name), role)


def check_attack_models(ctx: RunContext, attack: AttackStage, method: Method) -> None:
    """:func:`check_stage` for the models an attack reads and the encoders they were built on.

    Raises:
        UserError: see :func:`check_stage`.
    """
    for role in attack.roles:
        for name in upstream_closure(ctx.cfg, method.model_stage):
            check_stage(ctx, train_stage(name), role)
