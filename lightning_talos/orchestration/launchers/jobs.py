"""The audit graph as jobs: what each job runs, which jobs it waits for.

A job is one stage of ``orchestration/audit.graph`` run by the single-stage command a user could
type
(``pretrain role=target``, ``linear method=talos role=shadow``, ``mia method=contrastive``), with
the audit's own overrides. The reference models of a method (roles ``ref-<j>``) are one job
whose tasks (a SLURM job array) each run ``references method=M --only=J``: reference ``j``'s
model stage and every stage upstream. A job waits for the jobs that write the stages it reads;
stages already done are no job at all. Several seeds (``seeds=[...]``) give one graph per seed,
each under ``<run>/seed-<s>``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from lightning_talos.runs.settings import run_root
from lightning_talos.stages.registry import TrainStage, role_family, upstream_closure

if TYPE_CHECKING:  # imported where used: torch and Lightning come with them
    from lightning_talos.orchestration.audit import Node
    from lightning_talos.runs.context import RunContext

#: Kinds of jobs; each kind gets its own resources (``launcher.train``, ``launcher.attack``).
TRAIN, ATTACK, RESULTS = "train", "attack", "results"

#: Overrides the launcher sets itself on every job's command.
_OWN_KEYS = ("run.dir", "run.name", "seed", "seeds", "launcher")


@dataclass(frozen=True)
class Unit:
    """One seed's run: its config and context, the overrides that reproduce it in a stage
    command, and the prefix of its stage keys (``""``, or ``seed-<s>/`` with several seeds)."""

    cfg: DictConfig
    ctx: RunContext
    args: tuple[str, ...]
    prefix: str


@dataclass(frozen=True)
class Task:
    """One process of a job: the CLI arguments it runs and the stage folders it writes."""

    label: str
    argv: tuple[str, ...]
    nodes: tuple[str, ...]

    def command(self) -> str:
        """The command line, as a user would type it."""
        return shlex.join(["lightning-talos", *self.argv])


@dataclass
class Job:
    """One job of the graph (a job array when it has several tasks).

    Args:
        name: its key in ``jobs.json`` (the stage folder it writes, ``references-<method>``, or
            ``results``; prefixed ``seed-<s>/`` with several seeds).
        kind: ``train``, ``attack`` or ``results``.
        tasks: its processes.
        deps: names of the jobs it waits for.
        ddp: a training stage with a DDP strategy (one task per device).
    """

    name: str
    kind: str
    tasks: list[Task]
    deps: list[str] = field(default_factory=list)
    ddp: bool = False


@dataclass
class Planned:
    """The jobs an audit still needs, and every stage of its graph with what it would do."""

    jobs: list[Job]
    nodes: dict[str, tuple[Unit, Node, str]]  # stage key -> (its unit, node, plan action)

    def todo(self) -> set[str]:
        return {key for key, (_, _, action) in self.nodes.items() if action != "done"}


def launcher_free(args: Sequence[str]) -> list[str]:
    """The audit's overrides less flags and the keys the launcher sets on each job."""
    out = []
    for arg in args:
        key = arg.split("=", 1)[0]
        if arg.startswith("--") or any(key == k or key.startswith(f"{k}.") for k in _OWN_KEYS):
            continue
        out.append(arg)
    return out


def units(cfg: DictConfig, args: Sequence[str]) -> list[Unit]:
    """The seed runs of an audit (one without ``seeds``), as ``run_audit`` makes them."""
    from lightning_talos.runs.context import RunContext

    base = launcher_free(args)
    run_dir = Path(cfg.run.dir).expanduser().resolve()
    if not cfg.seeds:
        own = [f"run.dir={run_dir}", f"run.name={cfg.run.name}", f"seed={cfg.seed}"]
        return [Unit(cfg, RunContext(cfg), (*base, *own), "")]
    out = []
    for seed in cfg.seeds:
        seed_cfg = OmegaConf.merge(
            cfg, {"seed": seed, "run": {"name": f"{cfg.run.name}/seed-{seed}"}}
        )
        own = [f"run.dir={run_dir / cfg.run.name}", f"run.name=seed-{seed}", f"seed={seed}"]
        args_s = (*base, *own, "seeds=[]")
        out.append(Unit(seed_cfg, RunContext(seed_cfg), args_s, f"seed-{seed}/"))
    return out


def results_argv(cfg: DictConfig, args: Sequence[str]) -> tuple[str, ...]:
    """The last job's command: the audit itself without a launcher (every stage is done by
    then, so it only writes ``results.json`` and ``report.md``)."""
    run_dir = Path(cfg.run.dir).expanduser().resolve()
    seeds = f"seeds=[{','.join(str(s) for s in cfg.seeds)}]"
    own = [f"run.dir={run_dir}", f"run.name={cfg.run.name}", f"seed={cfg.seed}", seeds]
    return ("audit", *launcher_free(args), *own, "launcher=none")


def stage_argv(unit: Unit, node: Node) -> tuple[str, ...]:
    """The single-stage command that runs ``node`` (target and shadow roles, attacks)."""
    stage = node.stage
    if isinstance(stage, TrainStage):
        extra = shlex.split(stage.extra)
        return (stage.command or stage.name, *unit.args, *extra, f"role={node.key}")
    assert node.method is not None  # attack nodes carry their method
    return (stage.name, *unit.args, f"method={node.method.name}")


def is_ddp(cfg: DictConfig) -> bool:
    return str(cfg.trainer.strategy).startswith("ddp")


def plan_jobs(cfg: DictConfig, args: Sequence[str], *, results: bool) -> Planned:
    """Every job an audit still needs, in an order where each comes after the jobs it waits
    for; with ``results``, a last job that writes ``results.json`` after all of them.

    Raises:
        UserError: before anything runs, when a stage was made with other settings (see
            ``orchestration.audit.plan``) or the config is invalid.
    """
    jobs: list[Job] = []
    nodes: dict[str, tuple[Unit, Node, str]] = {}
    for unit in units(cfg, args):
        jobs += _unit_jobs(unit, nodes)
    if results and (jobs or not results_current(cfg, nodes)):
        tasks = [Task(RESULTS, results_argv(cfg, args), ())]
        jobs.append(Job(RESULTS, RESULTS, tasks, deps=[j.name for j in jobs]))
    return Planned(jobs, nodes)


def _unit_jobs(unit: Unit, out: dict[str, tuple[Unit, Node, str]]) -> list[Job]:
    from lightning_talos.orchestration.audit import graph, plan

    cfg = unit.cfg
    nodes = graph(cfg, unit.ctx.pool.has_attribute)
    actions = plan(unit.ctx, nodes)
    for node in nodes:
        out[unit.prefix + node.name] = (unit, node, actions[node])
    todo = {n.name for n in nodes if actions[n] != "done"}
    owner: dict[str, str] = {}  # stage -> the job that writes it
    jobs: list[Job] = []
    references = _reference_jobs(unit, nodes, todo)
    for node in nodes:
        if node.name not in todo or node.name in owner:
            continue
        if role_family(node.key) is not None:  # a reference model: its method's job array
            job, tasks_nodes = next((j, n) for j, n in references if node.name in n)
            for name in tasks_nodes:
                owner.setdefault(name, job.name)
            reads = {d.name for n in nodes if n.name in tasks_nodes for d in n.deps}
            reads |= {n for n in tasks_nodes if owner[n] != job.name}  # a shared stage
            job.tasks = [_owned(t, owner, job.name, unit.prefix) for t in job.tasks]
        else:
            kind = TRAIN if isinstance(node.stage, TrainStage) else ATTACK
            name = unit.prefix + node.name
            ddp = kind == TRAIN and is_ddp(cfg)
            job = Job(name, kind, [Task(node.name, stage_argv(unit, node), (name,))], ddp=ddp)
            owner[node.name] = name
            reads = {d.name for d in node.deps}
        job.deps = sorted({owner[r] for r in reads if r in todo and owner[r] != job.name})
        jobs.append(job)
    return jobs


def _owned(task: Task, owner: dict[str, str], job: str, prefix: str) -> Task:
    """``task`` listing only the stages its job writes (a stage shared with an earlier
    method's references is that method's job's to write; this one finds it done)."""
    mine = tuple(k for k in task.nodes if owner[k[len(prefix) :]] == job)
    return Task(task.label, task.argv, mine)


def _reference_jobs(unit: Unit, nodes: list[Node], todo: set[str]) -> list[tuple[Job, set[str]]]:
    """One job array per method whose attacks read reference models: task ``j`` runs
    ``references method=M --only=J`` when any of reference ``j``'s stages is not done."""
    cfg, out = unit.cfg, []
    seen: set[str] = set()
    for node in nodes:
        roles = () if isinstance(node.stage, TrainStage) else node.stage.more_roles(cfg)
        if not roles or node.method is None or node.method.name in seen:
            continue
        seen.add(node.method.name)
        stages = upstream_closure(cfg, node.method.model_stage)
        tasks, covered = [], set()
        for role in roles:
            names = [f"{s}-{role}" for s in stages if f"{s}-{role}" in todo]
            if not names:
                continue
            j = role.rpartition("-")[2]
            argv = ("references", *unit.args, f"method={node.method.name}", f"--only={j}")
            tasks.append(Task(role, argv, tuple(unit.prefix + n for n in names)))
            covered.update(names)
        if tasks:
            name = f"{unit.prefix}references-{node.method.name}"
            out.append((Job(name, TRAIN, tasks, ddp=is_ddp(cfg)), covered))
    return out


def results_current(cfg: DictConfig, nodes: dict[str, tuple[Unit, Node, str]]) -> bool:
    """True when ``results.json`` exists and is newer than every stage's manifest."""
    path = run_root(cfg) / "results.json"
    if not path.is_file() or any(action != "done" for _, _, action in nodes.values()):
        return False
    written = path.stat().st_mtime
    for unit, node, _ in nodes.values():
        manifest = unit.ctx.stage_dir(node.stage.name, node.key) / "manifest.json"
        if manifest.is_file() and manifest.stat().st_mtime > written:
            return False
    return True
