"""What a stage reads, and what this command expects of it: the checks ``audit`` makes for
every node, made by single-stage commands too.

A stage that reads another stage's checkpoint (``linear`` reads ``pretrain``, ``mia`` reads the
classifiers, which read their encoders) must read one made with the settings the current
command gives that stage; otherwise ``linear simclr.temperature=0.9`` after a pretrain at 0.2
would run on the 0.2 encoder and record 0.9 in its config. Each upstream checkpoint is also
read once (memory-mapped) so a corrupt file stops the command, with the command that rebuilds
it, before this stage writes anything. The checks themselves are
:meth:`~lightning_talos.runs.folder.StageFolder.decide`'s; this module lists what to check.
"""

from __future__ import annotations

from lightning_talos.runs.context import RunContext
from lightning_talos.runs.folder import Expected, Read
from lightning_talos.runs.settings import stage_config
from lightning_talos.stages.registry import (
    AttackStage,
    Method,
    TrainStage,
    train_stage,
    upstream_closure,
)


def expected(ctx: RunContext, stage: TrainStage | AttackStage, key: str) -> Expected:
    """The settings this command gives ``stage`` for ``key`` (a role, or an attacked method)."""
    if isinstance(stage, AttackStage):
        config = stage_config(ctx.cfg, stage.sections)
        return Expected(config, None, f"lightning-talos {stage.name} method={key}")
    rebuild = stage.rebuild(ctx.cfg, key)
    return Expected(stage_config(ctx.cfg, stage.sections), stage.epochs(ctx.cfg), rebuild)


def train_reads(ctx: RunContext, stage: TrainStage, role: str) -> list[Read]:
    """The stages a training stage reads for ``role``: its direct upstream stages (their
    completion ids are its inputs), then every stage further up (their settings are checked)."""
    direct = stage.upstream(ctx.cfg)
    further = [n for n in upstream_closure(ctx.cfg, stage.name)[:-1] if n not in direct]
    return [
        Read(ctx.folder(name, role), expected(ctx, train_stage(name), role), name in direct)
        for name in (*direct, *further)
    ]


def attack_reads(ctx: RunContext, attack: AttackStage, method: Method) -> list[Read]:
    """The models an attack reads (the method's classifier stage for every role it reads:
    inputs) and the encoders they were built on (checked)."""
    reads = []
    for role in attack.all_roles(ctx.cfg):
        model = train_stage(method.model_stage)
        reads.append(Read(ctx.folder(model.name, role), expected(ctx, model, role)))
    for role in attack.roles:
        for name in upstream_closure(ctx.cfg, method.model_stage)[:-1]:
            stage = train_stage(name)
            reads.append(Read(ctx.folder(name, role), expected(ctx, stage, role), False))
    return reads
