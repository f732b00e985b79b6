"""``audit launcher=local|slurm``: plan the jobs, then run them here or submit them."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from omegaconf import DictConfig

from lightning_talos.orchestration.launchers.estimate import estimate, job_gpus
from lightning_talos.orchestration.launchers.jobs import TRAIN, Job, Planned, plan_jobs
from lightning_talos.orchestration.launchers.local import audit_local
from lightning_talos.orchestration.launchers.slurm import (
    preflight,
    resources,
    submit_all,
    tasks_per_node,
)


def launch(cfg: DictConfig, args: Sequence[str], *, dry_run: bool = False) -> None:
    """Run (``local``) or submit (``slurm``) an audit's jobs, or list them (``dry_run``).

    Raises:
        UserError: a changed setting (before anything runs), a failed local job, or a SLURM
            submission problem (see ``launchers.slurm.submit_all``).
    """
    slurm = str(cfg.launcher.name) == "slurm"
    if not slurm and not dry_run:
        audit_local(cfg, list(args))
        return
    if slurm and not dry_run:
        preflight(cfg)  # before planning: a cluster problem is the first thing to know
    planned = plan_jobs(cfg, args, results=slurm)
    if dry_run:
        print(describe(cfg, planned, slurm=slurm))
        return
    if not planned.jobs:
        print("[slurm] every stage is done and results.json is up to date: nothing to submit")
        return
    submit_all(cfg, planned)
    names = [f"run.dir={cfg.run.dir}", f"run.name={cfg.run.name}"]
    print(f"[slurm] watch it: lightning-talos status {shlex.join(names)}")


def describe(cfg: DictConfig, planned: Planned, *, slurm: bool) -> str:
    """The jobs an audit would start: dependencies, commands, and (SLURM) resources and the
    GPU-hour estimate."""
    if not planned.jobs:
        return "nothing to run: every stage is done" + (
            " and results.json is up to date" if slurm else ""
        )
    lines = []
    total, bounded = 0.0, False
    for job in planned.jobs:
        after = ", ".join(job.deps) or "-"
        lines.append(f"{job.name}  [{job.kind}, {len(job.tasks)} task(s)]  after: {after}")
        if slurm:
            lines.append(f"    resources: {_resources(cfg, job)}")
            guess = estimate(cfg, planned, job)
            total += guess.gpu_hours
            bounded |= not guess.measured
            lines.append(f"    GPU-hours: {guess.gpu_hours:.2f} ({guess.note})")
        for task in job.tasks:
            lines.append(f"    $ {task.command()}")
    if slurm:
        kind = "at most " if bounded else ""
        lines.append(f"total: {len(planned.jobs)} jobs, {kind}{total:.2f} GPU-hours")
    return "\n".join(lines)


def _resources(cfg: DictConfig, job: Job) -> str:
    params = resources(cfg, job)
    extra = params["additional_parameters"]
    parts = [
        f"partition={params.get('partition', '(default)')}",
        f"time={params['time']}min",
        f"nodes={params['nodes']}",
        f"tasks/node={tasks_per_node(cfg, job)}",
        f"gpus={job_gpus(cfg, job)}",
        f"cpus/task={params['cpus_per_task']}",
        f"mem={params.get('mem', '(default)')}",
    ]
    parts += [
        f"{k}={v}" for k, v in (("account", params.get("account")), ("qos", params.get("qos"))) if v
    ]
    if job.kind == TRAIN:
        parts.append(f"signal={extra['signal']}" + (" requeue" if extra.get("requeue") else ""))
    parts += [f"--{k}={v}" for k, v in extra.items() if k not in ("signal", "requeue")]
    return " ".join(parts)
