"""The attack-stage runner: run (or reuse) one registered attack stage on one method."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import torch

from lightning_talos.profiling import host_profile, host_sample
from lightning_talos.runs.context import RunContext
from lightning_talos.runs.folder import Decision, Record
from lightning_talos.runs.lock import stage_lock
from lightning_talos.runs.records import new_manifest
from lightning_talos.stages.features import ModelSource
from lightning_talos.stages.provenance import attack_reads, expected
from lightning_talos.stages.registry import AttackStage, Method, train_stage
from lightning_talos.stages.training import check_attribute
from lightning_talos.threads import cpu_share


def model_source(ctx: RunContext, method: Method) -> ModelSource:
    """The trained classifier stage of ``method``, as attack stages read it."""
    stage = train_stage(method.model_stage)
    if stage.load is None:
        raise ValueError(f"stage {stage.name} produces no classifier to attack")
    return ModelSource(
        ctx=ctx,
        method=method.name,
        stage=stage.name,
        load=stage.load,
        rebuild=stage.rebuild(ctx.cfg, "{role}"),
    )


def decide_attack(ctx: RunContext, stage: AttackStage, method: Method) -> Decision:
    """What to do with ``stage`` on ``method`` (see :meth:`StageFolder.decide`).

    Raises:
        UserError: a model it reads unfinished, made otherwise or unreadable; this stage made
            with other settings or splits.
    """
    return ctx.folder(stage.name, method.name).decide(
        expected(ctx, stage, method.name),
        reads=attack_reads(ctx, stage, method),
        split_hash=ctx.splits.hash,
        resume=ctx.cfg.run.resume,
        output=stage.output,
    )


def run_attack_stage(ctx: RunContext, stage: AttackStage, method: Method) -> Path:
    """Run (or reuse) ``<run>/<stage>-<method>/<stage>.json``; returns its path.

    Holds the stage's lock throughout (see
    :func:`~lightning_talos.stages.training.run_train_stage`).

    Raises:
        UserError: bad input, or another process writing this stage (naming it).
    """
    with stage_lock(ctx.root, ctx.stage_dir(stage.name, method.name).name):
        return _attack_stage(ctx, stage, method)


def _attack_stage(ctx: RunContext, stage: AttackStage, method: Method) -> Path:
    check_attribute(ctx, stage.name, stage.needs_attribute or method.needs_attribute)
    share = cpu_share()
    if share is not None:
        share.apply()  # the attacks run on the CPU
    folder = ctx.folder(stage.name, method.name)
    path = folder.path / stage.output
    decision = decide_attack(ctx, stage, method)
    if decision.action == "done":
        print(f"[{folder.path.name}] already done: {path}")
        return path
    started, host = time.time(), host_sample()
    config = expected(ctx, stage, method.name).config
    manifest = new_manifest(
        stage.name, None, config, inputs=decision.inputs, split_hash=ctx.splits.hash
    )
    manifest["method"] = method.name

    def attack(rec: Record) -> None:
        rec.outputs[stage.output] = stage.compute(ctx, model_source(ctx, method))
        rec.manifest.update(
            status="done",
            completion_id=uuid.uuid4().hex,
            wall_time_s=round(time.time() - started, 2),
            finished_unix=time.time(),
            profile=host_profile(host, host_sample(), threads=torch.get_num_threads()),
        )

    folder.record(Record(manifest), attack, fresh=False)
    if stage.finish is not None:
        stage.finish(ctx.cfg, folder.path, json.loads(path.read_text()))
    return path
