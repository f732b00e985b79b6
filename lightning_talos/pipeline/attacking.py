"""The attack-stage runner: run (or reuse) one registered attack stage on one method."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from lightning_talos.pipeline.context import RunContext
from lightning_talos.pipeline.features import ModelSource
from lightning_talos.pipeline.lock import stage_lock
from lightning_talos.pipeline.provenance import check_attack_models
from lightning_talos.pipeline.rundir import (
    decide,
    new_manifest,
    read_manifest,
    stage_config,
    write_json,
)
from lightning_talos.pipeline.stages import AttackStage, Method, train_stage
from lightning_talos.pipeline.training import check_attribute
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


def attack_inputs(ctx: RunContext, stage: AttackStage, method: Method) -> dict[str, str]:
    """Completion ids of the models the attack reads, keyed by their folders.

    Raises:
        UserError: when one has not finished, naming the command that trains it.
    """
    source = model_source(ctx, method)
    roles = stage.all_roles(ctx.cfg)
    return {source.folder(r).name: source.manifest(r)["completion_id"] for r in roles}


def run_attack_stage(ctx: RunContext, stage: AttackStage, method: Method) -> Path:
    """Run (or reuse) ``<run>/<stage>-<method>/<stage>.json``; returns its path.

    Holds the stage's lock throughout (see :func:`run_train_stage`).

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
    out_dir = ctx.stage_dir(stage.name, method.name)
    path = out_dir / stage.output
    config = stage_config(ctx.cfg, stage.sections)
    inputs = attack_inputs(ctx, stage, method)
    check_attack_models(ctx, stage, method)  # settings and readable checkpoints of every model
    action = decide(
        read_manifest(out_dir),
        config=config,
        inputs=inputs,
        split_hash=ctx.splits.hash,
        resume=ctx.cfg.run.resume,
        where=out_dir,
        output=path,
    )
    if action == "done":
        print(f"[{out_dir.name}] already done: {path}")
        return path
    started = time.time()
    manifest = new_manifest(stage.name, None, config, inputs=inputs, split_hash=ctx.splits.hash)
    manifest["method"] = method.name
    write_json(out_dir / "manifest.json", manifest)
    result = stage.compute(ctx, model_source(ctx, method))
    write_json(path, result)
    manifest.update(
        status="done",
        completion_id=uuid.uuid4().hex,
        wall_time_s=round(time.time() - started, 2),
        finished_unix=time.time(),
    )
    write_json(out_dir / "manifest.json", manifest)
    if stage.finish is not None:
        stage.finish(ctx.cfg, out_dir, json.loads(path.read_text()))
    return path
