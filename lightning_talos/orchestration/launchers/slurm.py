"""``launcher=slurm``: every stage that is not done as its own SLURM job, through submitit.

Jobs are submitted in dependency order, each with ``afterok`` on the jobs of the stages it reads
(a failed job leaves its dependents pending for ever: SLURM reports them
``DependencyNeverSatisfied``, ``status`` says so). A training job asks for ``SIGUSR1``
``launcher.signal_delay_s`` before its time limit and may be requeued: Lightning saves and
requeues it, the requeued job resumes from its checkpoint. Re-running the same audit asks the
scheduler about the jobs in ``jobs.json`` and submits only what is neither done nor queued or
running; a stage whose job failed or was cancelled is resubmitted with its dependents (pending
dependents of it are cancelled and resubmitted: their dependency named the dead job).

Nothing is half-submitted: the partition and the cluster are checked before the first
``sbatch``, and when one is rejected the jobs submitted in that call are cancelled.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.errors import UserError
from lightning_talos.interrupts import SignalInterruptError
from lightning_talos.orchestration.launchers import scheduler
from lightning_talos.orchestration.launchers.jobs import TRAIN, Job, Planned
from lightning_talos.orchestration.launchers.state import read_jobs, write_jobs
from lightning_talos.orchestration.launchers.task import StageCommand
from lightning_talos.runs.settings import run_root

#: Where each job's submitit folder (sbatch script, pickles, log) goes: ``<run>/jobs/<job>/``.
JOBS_DIR = "jobs"


def import_submitit() -> Any:
    """submitit, or one line saying how to install it.

    Raises:
        UserError: when submitit is not installed.
    """
    try:
        import submitit
    except ImportError:
        raise UserError(
            "launcher=slurm needs submitit: pip install 'lightning_talos[slurm]' "
            "(or pip install 'submitit==1.5.4')"
        ) from None
    return submitit


def resources(cfg: DictConfig, job: Job) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters of a job: its kind's resources, the shared
    partition/account/qos/setup lines, one task per device for a DDP stage, and SIGUSR1 plus
    requeue for a training stage."""
    launcher = cfg.launcher
    res = launcher.train if job.kind == TRAIN else launcher.attack
    params: dict[str, Any] = {
        "job_name": f"lt-{job.name}",
        "time": int(res.time_min),
        "nodes": int(res.nodes),
        "cpus_per_task": int(res.cpus_per_task),
        "ntasks_per_node": tasks_per_node(cfg, job),
        "stderr_to_stdout": True,
        "array_parallelism": int(launcher.array_parallelism),
        "signal_delay_s": int(launcher.signal_delay_s),
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = int(res.gpus_per_node)
    if res.mem_gb:
        params["mem"] = f"{int(res.mem_gb * 1024)}MB"
    for key in ("partition", "account", "qos"):
        value = res.partition if key == "partition" and res.partition else launcher[key]
        if value:
            params[key] = str(value)
    if launcher.setup:
        params["setup"] = [str(line) for line in launcher.setup]
    extra = sbatch_extra(launcher.sbatch_extra)
    if job.kind == TRAIN:
        extra["signal"] = f"USR1@{int(launcher.signal_delay_s)}"
        if launcher.requeue:
            extra["requeue"] = True
    params["additional_parameters"] = extra
    return params


def tasks_per_node(cfg: DictConfig, job: Job) -> int:
    """1, or one task per device for a DDP training stage (Lightning reads SLURM's tasks)."""
    if not job.ddp:
        return 1
    devices = cfg.trainer.devices
    if isinstance(devices, int) and devices > 0:
        return devices
    gpus = int(cfg.launcher.train.gpus_per_node)
    return max(1, gpus)


def sbatch_extra(lines: Any) -> dict[str, Any]:
    """``["--constraint=a100", "--exclusive"]`` -> ``{"constraint": "a100", "exclusive": True}``.

    Raises:
        UserError: for an entry that is not ``--name`` or ``--name=value``.
    """
    out: dict[str, Any] = {}
    for line in lines:
        text = str(line).strip()
        if text.startswith("#SBATCH"):
            text = text[len("#SBATCH") :].strip()
        if not text.startswith("--") or len(text) < 3:
            raise UserError(f"launcher.sbatch_extra: expected '--name[=value]', got '{line}'")
        key, has_value, value = text[2:].partition("=")
        out[key.replace("-", "_")] = value if has_value else True
    return out


def dependency(job: Job, ids: dict[str, str]) -> str | None:
    """``afterok:<id>:<id>`` on the jobs ``job`` waits for (a job array by its array id)."""
    wanted = sorted({ids[d].split("_")[0] for d in job.deps if d in ids})
    return f"afterok:{':'.join(wanted)}" if wanted else None


def check_partitions(cfg: DictConfig, available: list[str]) -> None:
    """Stop before submitting when a configured partition does not exist.

    Raises:
        UserError: naming it and the cluster's partitions.
    """
    launcher = cfg.launcher
    for name in {launcher.partition, launcher.train.partition, launcher.attack.partition}:
        if name and str(name) not in available:
            raise UserError(
                f"unknown partition '{name}'; this cluster has: {', '.join(available) or 'none'}"
            )


def preflight(cfg: DictConfig) -> Any:
    """submitit, once the cluster answers and knows the configured partitions.

    Raises:
        UserError: submitit missing, no SLURM reachable, or an unknown partition.
    """
    submitit = import_submitit()
    check_partitions(cfg, scheduler.require_slurm())
    return submitit


def keep_or_resubmit(
    planned: Planned, record: dict[str, Any]
) -> tuple[dict[str, str], list[Job], list[str]]:
    """Which jobs still queued or running can stay, which must be submitted.

    A job stays when every task of it is queued or running (with a dependency that can still
    be met) and none of the jobs it waits for is submitted again.

    Returns:
        ``(kept ids by job name, jobs to submit in order, ids to cancel first)``.
    """
    old = record.get("jobs", {})
    ids = [t["id"] for j in planned.jobs if j.name in old for t in old[j.name]["tasks"].values()]
    states = scheduler.query(ids)
    kept: dict[str, str] = {}
    submit: list[Job] = []
    cancel: list[str] = []
    for job in planned.jobs:
        entry = old.get(job.name)
        tasks = list(entry["tasks"].values()) if entry else []
        live = bool(tasks) and all(states.get(t["id"], scheduler.UNKNOWN).live for t in tasks)
        if live and not any(d in {j.name for j in submit} for d in job.deps):
            kept[job.name] = entry["job_id"]
            continue
        cancel += [
            t["id"] for t in tasks if states.get(t["id"], scheduler.UNKNOWN).state in scheduler.LIVE
        ]
        submit.append(job)
    return kept, submit, cancel


def submit_all(cfg: DictConfig, planned: Planned) -> dict[str, Any]:
    """Submit what ``planned`` still needs; returns the ``jobs.json`` entries of new jobs.
    Interrupted (Ctrl-C, SIGTERM) or refused midway, it cancels the jobs it submitted.

    Raises:
        UserError: submitit missing, no SLURM, an unknown partition, or a rejected ``sbatch``
            (the jobs submitted in this call are then cancelled).
    """
    submitit = preflight(cfg)
    root = run_root(cfg)
    kept, todo, stale = keep_or_resubmit(planned, read_jobs(root))
    scheduler.cancel(stale)
    ids = dict(kept)
    entries: dict[str, Any] = {}
    submitted: list[str] = []
    try:
        for job in todo:
            entries[job.name] = _submit(submitit, cfg, root, job, ids)
            ids[job.name] = entries[job.name]["job_id"]
            submitted += [t["id"] for t in entries[job.name]["tasks"].values()]
    except (Exception, KeyboardInterrupt) as err:  # take back this call's jobs
        scheduler.cancel(submitted)
        if isinstance(err, KeyboardInterrupt | SignalInterruptError):
            raise
        first = str(err).strip().splitlines() or [type(err).__name__]
        reason = next((line for line in first if "error" in line.lower()), first[-1])
        raise UserError(
            f"sbatch rejected job {job.name}: {reason.strip()} "
            f"(cancelled the {len(submitted)} job(s) submitted before it)"
        ) from None
    write_jobs(root, "slurm", entries)
    for name, job_id in kept.items():
        print(f"[slurm] {name}: still queued or running as job {job_id}, not resubmitted")
    return entries


def _submit(
    submitit: Any, cfg: DictConfig, root: Path, job: Job, ids: dict[str, str]
) -> dict[str, Any]:
    folder = root / JOBS_DIR / job.name.replace("/", "_")
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    params = resources(cfg, job)
    after = dependency(job, ids)
    if after:
        params["additional_parameters"] = {**params["additional_parameters"], "dependency": after}
    executor.update_parameters(**params)
    commands = [StageCommand(t.argv, os.getcwd()) for t in job.tasks]
    # submitit prints sbatch's complaint before raising it; the caller says it in one line
    with contextlib.redirect_stderr(io.StringIO()):
        if len(commands) == 1:
            handles = [executor.submit(commands[0])]
        else:
            with executor.batch():
                handles = [executor.submit(c) for c in commands]
    tasks = {}
    for task, handle in zip(job.tasks, handles):
        tasks[task.label] = {
            "id": str(handle.job_id),
            "nodes": list(task.nodes),
            "command": task.command(),
            "log": str(folder / f"{handle.job_id}_0_log.out"),
        }
    first = str(handles[0].job_id)
    job_id = first.split("_")[0] if len(handles) > 1 else first
    deps = ", ".join(job.deps) if job.deps else "nothing"
    print(f"[slurm] {job.name}: job {job_id} ({len(tasks)} task(s)), after {deps}", flush=True)
    return {
        "kind": job.kind,
        "job_id": job_id,
        "deps": list(job.deps),
        "dependency": after,
        "submitted": time.time(),
        "log_dir": str(folder),
        "tasks": tasks,
    }
