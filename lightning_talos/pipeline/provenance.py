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
from lightning_talos.pipeline.context import MODEL_STAGE, RunContext
from lightning_talos.pipeline.rundir import config_diff, read_manifest, stage_config


def rebuild_command(cfg: DictConfig, stage: str, role: str) -> str:
    """The command that retrains ``stage`` for ``role`` from scratch in this run."""
    from lightning_talos.pipeline.training import TRAIN_STAGES  # training imports this module

    return (
        f"lightning-talos {TRAIN_STAGES[stage].command} role={role} run.dir={cfg.run.dir} "
        f"run.name={cfg.run.name} run.resume=never (plus this command's other settings)"
    )


def upstream_chain(cfg: DictConfig, stage: str) -> list[str]:
    """The training stages ``stage`` reads, nearest first (``talos_linear`` -> ``talos``, ...)."""
    from lightning_talos.pipeline.training import upstream

    chain: list[str] = []
    source = upstream(cfg, stage)
    while source is not None:
        chain.append(source)
        source = upstream(cfg, source)
    return chain


def check_stage(ctx: RunContext, stage: str, role: str) -> None:
    """Refuse an upstream stage made with other settings or with an unreadable checkpoint.

    A stage without a manifest is left to ``require_done`` (which names the command).

    Raises:
        UserError: naming the differing keys (and the command to retrain it), or the corrupt
            checkpoint and the command that rebuilds it.
    """
    from lightning_talos.pipeline.training import stage_epochs

    folder = ctx.stage_dir(stage, role)
    manifest = read_manifest(folder)
    if manifest is None:
        return
    rebuild = rebuild_command(ctx.cfg, stage, role)
    diff = config_diff(manifest.get("config", {}), stage_config(ctx.cfg, stage))
    if diff:
        raise UserError(
            f"upstream {folder} was made with other settings (differs in: {', '.join(diff)}); "
            f"use the settings it was made with, a new run.name, or retrain it with these: "
            f"{rebuild}"
        )
    wanted, done = stage_epochs(ctx, stage), manifest.get("epochs_completed", 0)
    if manifest.get("status") == "done" and done < wanted:
        raise UserError(
            f"upstream {folder} has {done} of the {wanted} epochs these settings ask for; "
            "continue it first with the same command and settings"
        )
    if (folder / LAST).is_file():
        read_progress(folder / LAST, rebuild=rebuild)


def check_upstream(ctx: RunContext, stage: str, role: str) -> None:
    """:func:`check_stage` for every training stage a training ``stage`` reads.

    Raises:
        UserError: see :func:`check_stage`.
    """
    for source in upstream_chain(ctx.cfg, stage):
        check_stage(ctx, source, role)


def check_attack_models(ctx: RunContext, kind: str) -> None:
    """:func:`check_stage` for the models an attack reads (``mia``: both roles) and their encoders.

    Raises:
        UserError: see :func:`check_stage`.
    """
    model = MODEL_STAGE[ctx.cfg.method]
    for role in ("target", "shadow") if kind == "mia" else ("target",):
        for stage in (model, *upstream_chain(ctx.cfg, model)):
            check_stage(ctx, stage, role)
