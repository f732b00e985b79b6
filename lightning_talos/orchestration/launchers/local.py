"""``launcher=local``: the audit's jobs as processes on this machine, ``launcher.parallel`` at once.

Each process runs the job's stage command (``python -m lightning_talos ...``: the module run as
``__main__`` with the command's arguments), started once every job it waits for has succeeded;
each takes its fair share of the cores (``lightning_talos.threads``), so two at once on two
cores train with one thread each. The audit process gives its own share up while it waits.
The processes are forked from a multiprocessing fork server that imported torch, Lightning and
the stage runners once (``forkserver.py``), so a job does not pay the seconds of those imports
again: on small stages that start-up cost would eat the gain of running them side by side.

A failed job leaves its dependents unstarted and the others running; the audit then stops with
one line naming the failed stages and their logs. Logs go to ``<run>/jobs/<job>/<task>.log``;
``jobs.json`` records each task's pid and exit status.
"""

from __future__ import annotations

import sys
import time
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.errors import UserError
from lightning_talos.orchestration.launchers.forkserver import fork_server, run_command
from lightning_talos.orchestration.launchers.jobs import Job, Planned, plan_jobs
from lightning_talos.orchestration.launchers.slurm import JOBS_DIR
from lightning_talos.orchestration.launchers.state import write_jobs
from lightning_talos.runs.settings import run_root
from lightning_talos.threads import cpu_share

_POLL_S = 0.2


class _Running:
    """A started task: its process."""

    def __init__(self, job: Job, label: str, proc: BaseProcess) -> None:
        self.job, self.label, self.proc = job, label, proc


def audit_local(cfg: DictConfig, args: list[str]) -> None:
    """``audit launcher=local``: plan, run the jobs, write ``results.json`` and the report.

    The planning and the results run in processes of the fork server too, so this process
    never imports torch: its imports would only compete with the server's for the cores.

    Raises:
        UserError: a changed setting (before anything runs), or a failed job.
    """
    context = fork_server()
    with context.Pool(1) as pool:  # type: ignore[attr-defined]
        jobs = pool.apply(planned_jobs, (cfg, list(args)))
    run_local(cfg, Planned(jobs, {}))
    with context.Pool(1) as pool:  # type: ignore[attr-defined]
        pool.apply(write_results, (cfg,))


def planned_jobs(cfg: DictConfig, args: list[str]) -> list[Job]:
    """The jobs of :func:`plan_jobs` (in a fork-server process)."""
    from lightning_talos.stages.registry import register_variants

    register_variants(cfg)  # this process has not read the config yet
    return plan_jobs(cfg, args, results=False).jobs


def write_results(cfg: DictConfig) -> None:
    """``results.json``, the report and the console table once every stage is done (in a
    fork-server process)."""
    from lightning_talos.orchestration.audit import run_audit
    from lightning_talos.stages.registry import register_variants

    register_variants(cfg)
    run_audit(cfg)
    sys.stdout.flush()


def run_local(cfg: DictConfig, planned: Planned) -> None:
    """Run every job of ``planned``, up to ``launcher.parallel`` processes at once.

    Raises:
        UserError: when a job failed (naming it, its exit status and its log); the jobs that
            wait for it are not started.
    """
    root = run_root(cfg)
    parallel = int(cfg.launcher.parallel)
    share = cpu_share()
    if share is not None:
        share.release()  # this process only waits: its share goes to the jobs
    context = fork_server()
    pending = [(job, task) for job in planned.jobs for task in job.tasks]
    left = {job.name: len(job.tasks) for job in planned.jobs}
    failed: dict[str, str] = {}
    entries: dict[str, Any] = {job.name: _entry(root, job) for job in planned.jobs}
    running: list[_Running] = []
    try:
        while pending or running:
            ended = [r for r in running if r.proc.exitcode is not None]
            for item in ended:
                running.remove(item)
                _finished(item, entries, left, failed)
            blocked = {j.name for j, _ in pending if any(d in failed for d in j.deps)}
            for job, task in [(j, t) for j, t in pending if j.name in blocked]:
                pending.remove((job, task))
                entries[job.name]["tasks"][task.label]["state"] = "skipped"
                failed.setdefault(job.name, "not started: an upstream job failed")
            ready = [(j, t) for j, t in pending if all(left.get(d, 0) == 0 for d in j.deps)]
            starting = ready[: max(0, parallel - len(running))]
            for job, task in starting:
                pending.remove((job, task))
                running.append(_start(context, job, task, entries))
            if ended or starting or blocked:
                write_jobs(root, "local", entries)
            if running:
                time.sleep(_POLL_S)
    finally:
        for item in running:  # Ctrl-C / SIGTERM: the children stop (and save) too
            item.proc.terminate()
        for item in running:
            item.proc.join()
        write_jobs(root, "local", entries)
    if failed:
        what = "; ".join(f"{name}: {why}" for name, why in failed.items())
        raise UserError(f"{len(failed)} job(s) did not finish: {what}")


def _entry(root: Path, job: Job) -> dict[str, Any]:
    folder = root / JOBS_DIR / job.name.replace("/", "_")
    tasks = {}
    for task in job.tasks:
        log = str(folder / f"{task.label}.log")
        tasks[task.label] = {"nodes": list(task.nodes), "command": task.command(), "log": log,
                             "state": "pending"}  # fmt: skip
    return {"kind": job.kind, "deps": list(job.deps), "log_dir": str(folder), "tasks": tasks}


def _start(context: BaseContext, job: Job, task: Any, entries: dict[str, Any]) -> _Running:
    entry = entries[job.name]["tasks"][task.label]
    Path(entry["log"]).parent.mkdir(parents=True, exist_ok=True)
    proc = context.Process(target=run_command, args=(list(task.argv), entry["log"]))  # type: ignore[attr-defined]
    proc.start()
    entry.update(pid=proc.pid, state="running", started=time.time())
    print(f"[local] {job.name}{_label(job, task.label)}: started (pid {proc.pid})", flush=True)
    return _Running(job, task.label, proc)


def _finished(
    item: _Running, entries: dict[str, Any], left: dict[str, int], failed: dict[str, str]
) -> None:
    code = item.proc.exitcode
    entry = entries[item.job.name]["tasks"][item.label]
    entry.update(state="done" if code == 0 else "failed", returncode=code, ended=time.time())
    name = f"{item.job.name}{_label(item.job, item.label)}"
    if code == 0:
        left[item.job.name] -= 1
        print(f"[local] {name}: done", flush=True)
    else:
        failed[item.job.name] = f"exit status {code}, log {entry['log']}"
        print(f"[local] {name}: failed (exit status {code}; log {entry['log']})", flush=True)


def _label(job: Job, label: str) -> str:
    return f" [{label}]" if len(job.tasks) > 1 else ""
