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
from lightning_talos.runs.context import RunContext
from lightning_talos.runs.folder import Decision
from lightning_talos.runs.records import write_json
from lightning_talos.stages.attacking import decide_attack, run_attack_stage
from lightning_talos.stages.provenance import expected
from lightning_talos.stages.registry import (
    REGISTRY,
    ROLES,
    AttackStage,
    Method,
    TrainStage,
    audited_methods,
    train_stage,
    upstream_closure,
)
from lightning_talos.stages.results import build_results
from lightning_talos.stages.training import decide_train, run_train_stage


@dataclass(frozen=True)
class Node:
    """One stage of the graph: a training stage for a role, or an attack stage on a method."""

    stage: TrainStage | AttackStage
    key: str  # the role of a training stage, the method of an attack stage
    method: Method | None = None
    deps: tuple[Node, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.stage.name}-{self.key}"


def graph(cfg: DictConfig, with_attribute: bool) -> list[Node]:
    """All nodes in dependency order (stages and methods that need a sensitive attribute are
    left out when the dataset has none)."""
    methods = audited_methods(cfg, with_attribute=with_attribute)
    names: list[str] = []
    for method in methods:
        names += [s for s in upstream_closure(cfg, method.model_stage) if s not in names]
    ordered = [s for s in REGISTRY.train.values() if s.name in names]  # registration order
    nodes: dict[str, Node] = {}
    for stage in ordered:
        for role in ROLES:
            deps = tuple(nodes[f"{u}-{role}"] for u in stage.upstream(cfg))
            nodes[f"{stage.name}-{role}"] = Node(stage, role, deps=deps)
    for attack in REGISTRY.attack.values():
        if attack.needs_attribute and not with_attribute:
            continue
        for method in methods:
            for role in attack.more_roles(cfg):  # e.g. reference models: the model's stages
                for name in upstream_closure(cfg, method.model_stage):
                    deps = tuple(nodes[f"{u}-{role}"] for u in train_stage(name).upstream(cfg))
                    node = Node(train_stage(name), role, deps=deps)
                    nodes.setdefault(node.name, node)
            roles = attack.all_roles(cfg)
            deps = tuple(nodes[f"{method.model_stage}-{r}"] for r in roles)
            nodes[f"{attack.name}-{method.name}"] = Node(attack, method.name, method, deps)
    return list(nodes.values())


def _decide(ctx: RunContext, node: Node) -> Decision:
    """The runner's decision for a node whose upstream stages are all done."""
    if isinstance(node.stage, TrainStage):
        return decide_train(ctx, node.stage, node.key)
    assert node.method is not None  # attack nodes always carry their method
    return decide_attack(ctx, node.stage, node.method)


def plan(ctx: RunContext, nodes: list[Node]) -> dict[Node, str]:
    """What each node would do: ``done``, ``resume``, ``fresh`` or ``stale`` (upstream re-run).

    Raises:
        UserError: before anything runs, when any stage was made with other settings.
    """
    actions: dict[Node, str] = {}
    for node in nodes:
        folder = ctx.folder(node.stage.name, node.key)
        if any(actions[d] != "done" for d in node.deps):
            if folder.manifest is not None and ctx.cfg.run.resume != "never":
                # refuses changed settings before anything runs
                folder.check_reusable(expected(ctx, node.stage, node.key).config, ctx.splits.hash)
            actions[node] = "stale" if folder.manifest else "fresh"
            continue
        actions[node] = _decide(ctx, node).action
    return actions


def _run_node(ctx: RunContext, node: Node) -> None:
    if isinstance(node.stage, TrainStage):
        run_train_stage(ctx, node.stage, node.key)
    else:
        assert node.method is not None
        run_attack_stage(ctx, node.stage, node.method)


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
    from lightning_talos.stages.results import aggregate

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
    from lightning_talos.report.report import claims, load_results, table, write_report
    from lightning_talos.stages.wandb_log import log_report

    report = write_report(root)
    results = load_results(root)
    log_report(cfg, root, results)
    print("\n" + table(results) + "\n\n" + "\n".join(claims(results)))
    print(f"\n[audit] results: {root / 'results.json'}\n[audit] report: {report}")
