"""``lightning-talos audit``: every stage of the paper for one dataset, as a dependency graph.

A finished stage is skipped (manifest done, same config, same inputs); an interrupted one
resumes from its checkpoint; a stage whose upstream was re-run is re-run; a changed setting stops
the audit before anything is written, naming the keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_talos.errors import UserError
from lightning_talos.pipeline.attack import run_aia, run_mia
from lightning_talos.pipeline.context import MODEL_STAGE, RunContext
from lightning_talos.pipeline.results import build_results
from lightning_talos.pipeline.rundir import check_reusable, read_manifest, stage_config, write_json
from lightning_talos.pipeline.training import (
    TRAIN_STAGES,
    decide,
    stage_epochs,
    train_stage,
    upstream,
)

ROLES = ("target", "shadow")


@dataclass(frozen=True)
class Node:
    """One stage of the graph: a training stage for a role, or an attack on a method."""

    kind: str  # a TRAIN_STAGES key, "mia" or "aia"
    role: str | None = None
    method: str | None = None
    deps: tuple[Node, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.role or self.method}"


def graph(cfg: DictConfig, with_attribute: bool) -> list[Node]:
    """All nodes in dependency order (Talos and AIA need a sensitive attribute)."""
    stages = ["pretrain", "linear", "supervised"]
    if with_attribute:
        stages += ["talos", "talos_linear"]
    nodes: dict[str, Node] = {}
    for stage in stages:
        for role in ROLES:
            source = upstream(cfg, stage)
            deps = (nodes[f"{source}-{role}"],) if source else ()
            nodes[f"{stage}-{role}"] = Node(stage, role=role, deps=deps)
    methods = ["supervised", "contrastive", *(["talos"] if with_attribute else [])]
    for kind in ("mia", "aia") if with_attribute else ("mia",):
        for method in methods:
            roles = ROLES if kind == "mia" else ("target",)
            deps = tuple(nodes[f"{MODEL_STAGE[method]}-{r}"] for r in roles)
            nodes[f"{kind}-{method}"] = Node(kind, method=method, deps=deps)
    return list(nodes.values())


def node_dir(ctx: RunContext, node: Node) -> Path:
    if node.kind in TRAIN_STAGES:
        return ctx.stage_dir(node.kind, node.role or "")
    return ctx.root / f"{node.kind}-{node.method}"


def plan(ctx: RunContext, nodes: list[Node]) -> dict[Node, str]:
    """What each node would do: ``done``, ``resume``, ``fresh`` or ``stale`` (upstream re-run).

    Raises:
        UserError: before anything runs, when any stage was made with other settings.
    """
    actions: dict[Node, str] = {}
    for node in nodes:
        manifest = read_manifest(node_dir(ctx, node))
        config = stage_config(ctx.cfg, node.kind)
        if manifest is not None and ctx.cfg.run.resume != "never":
            check_reusable(manifest, config, node_dir(ctx, node))
        if any(actions[d] != "done" for d in node.deps):
            actions[node] = "stale" if manifest else "fresh"
            continue
        ids = {d: read_manifest(node_dir(ctx, d))["completion_id"] for d in node.deps}
        # training stages key their inputs by stage, attack stages by stage-role
        inputs = {d.kind if node.kind in TRAIN_STAGES else d.name: v for d, v in ids.items()}
        if node.kind in TRAIN_STAGES:
            actions[node] = decide(
                manifest, config=config, inputs=inputs, split_hash=ctx.splits.hash,
                epochs=stage_epochs(ctx, node.kind), resume=ctx.cfg.run.resume,
                where=node_dir(ctx, node),
            )  # fmt: skip
        else:
            done = manifest is not None and manifest.get("status") == "done"
            fresh = ctx.cfg.run.resume == "never" or not done
            stale = done and manifest.get("inputs") != inputs
            actions[node] = "fresh" if fresh else "stale" if stale else "done"
    return actions


def _run_node(ctx: RunContext, node: Node) -> None:
    if node.kind in TRAIN_STAGES:
        train_stage(ctx, node.kind, node.role or "")
        return
    cfg = OmegaConf.merge(ctx.cfg, {"method": node.method})
    sub = RunContext(cfg)
    sub.__dict__.update(pool=ctx.pool, splits=ctx.splits)  # share the loaded data
    (run_mia if node.kind == "mia" else run_aia)(cfg, sub)


def audit_one(cfg: DictConfig, *, dry_run: bool = False) -> Path | None:
    """Run (or list) every stage for one seed; returns the ``results.json`` path."""
    ctx = RunContext(cfg)
    nodes = graph(cfg, ctx.pool.has_attribute)
    actions = plan(ctx, nodes)
    if dry_run:
        for node in nodes:
            print(f"{node.name:28s} {actions[node]}")
        return None
    timings: dict[str, float] = {}
    for node in nodes:
        started = time.time()
        if actions[node] == "done":
            print(f"[audit] {node.name}: done, skipped")
            continue
        print(f"[audit] {node.name}: start ({actions[node]})", flush=True)
        _run_node(ctx, node)
        timings[node.name] = round(time.time() - started, 1)
        print(f"[audit] {node.name}: finished in {timings[node.name]:.1f}s", flush=True)
    results = build_results(ctx, timings)
    path = ctx.root / "results.json"
    write_json(path, results)
    return path


def run_audit(cfg: DictConfig, *, dry_run: bool = False) -> Path | None:
    """The audit for ``seed``, or for each of ``seeds`` plus their aggregate.

    Raises:
        UserError: for a changed config (names the keys) or bad input.
    """
    from lightning_talos.pipeline.results import aggregate

    if not cfg.seeds:
        path = audit_one(cfg, dry_run=dry_run)
        if path is not None:
            _finish(cfg, path.parent)
        return path
    per_seed: list[dict[str, Any]] = []
    for seed in cfg.seeds:
        seed_cfg = OmegaConf.merge(
            cfg, {"seed": seed, "run": {"name": f"{cfg.run.name}/seed-{seed}"}}
        )
        path = audit_one(seed_cfg, dry_run=dry_run)
        if path is not None:
            import json

            per_seed.append(json.loads(path.read_text()))
    if dry_run:
        return None
    if not per_seed:
        raise UserError("seeds is empty")
    root = RunContext(cfg).root
    write_json(root / "results.json", aggregate(per_seed))
    _finish(cfg, root)
    return root / "results.json"


def _finish(cfg: DictConfig, root: Path) -> None:
    """Report, W&B table, and the headline table on the console."""
    from lightning_talos.pipeline.wandb_log import log_report
    from lightning_talos.report.report import claims, load_results, table, write_report

    report = write_report(root)
    results = load_results(root)
    log_report(cfg, root, results)
    print("\n" + table(results) + "\n\n" + "\n".join(claims(results)))
    print(f"\n[audit] results: {root / 'results.json'}\n[audit] report: {report}")
