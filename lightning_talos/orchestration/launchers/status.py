"""``lightning-talos status``: each stage of a run's audit graph and where it stands.

A stage is **done** (its manifest, with the job it ran under), or, from ``jobs.json`` and the
scheduler: **running** (job, node, elapsed), **queued**, **waiting on upstream**, **held**
(SLURM keeps a job whose upstream failed pending for ever), **failed** (exit status and the last
lines of its log), **cancelled**, or **not started**. The last line says whether
``results.json`` is up to date with every stage.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.errors import UserError
from lightning_talos.orchestration.launchers import scheduler
from lightning_talos.orchestration.launchers.jobs import Planned, plan_jobs, results_current
from lightning_talos.orchestration.launchers.state import read_jobs, task_owners
from lightning_talos.runs.folder import StageFolder
from lightning_talos.runs.settings import run_root

#: Lines of a failed job's log that ``status`` shows.
LOG_LINES = 3


def status_lines(cfg: DictConfig) -> list[str]:
    """The ``status`` report of the run ``cfg`` names.

    Raises:
        UserError: when there is no such run, or a stage was made with other settings.
    """
    root = run_root(cfg)
    if not root.is_dir():
        raise UserError(f"no run at {root}")
    planned = plan_jobs(cfg, [], results=False)
    record = read_jobs(root)
    owners = task_owners(record)
    states = _states(record)
    lines = [f"run {root} (launcher: {record.get('launcher') or 'none'})"]
    for key, (unit, node, action) in planned.nodes.items():
        folder = unit.ctx.stage_dir(node.stage.name, node.key)
        lines.append(f"  {key:32s} {_describe(folder, action, key, owners, record, states)}")
    lines.append(_results_line(cfg, planned, record, states))
    return lines


def _states(record: dict[str, Any]) -> dict[str, scheduler.JobState]:
    if record.get("launcher") != "slurm":
        return {}
    ids = [t["id"] for j in record["jobs"].values() for t in j["tasks"].values()]
    try:
        return scheduler.query(ids)
    except UserError:
        return {}


def _describe(
    folder: Path,
    action: str,
    key: str,
    owners: dict[str, tuple[str, str]],
    record: dict[str, Any],
    states: dict[str, scheduler.JobState],
) -> str:
    manifest = StageFolder(folder).manifest or {}
    if action == "done":
        job = (manifest.get("slurm") or {}).get("job")
        return "done" + (f" (job {job})" if job else "")
    if key not in owners:
        return _without_job(manifest, action)
    name, label = owners[key]
    task = record["jobs"][name]["tasks"][label]
    if record.get("launcher") == "slurm":
        return _slurm(task, states.get(task["id"], scheduler.UNKNOWN), manifest)
    return _local(task, manifest)


def _without_job(manifest: dict[str, Any], action: str) -> str:
    if manifest.get("status") == "interrupted":
        return "interrupted (re-run the audit to resume it)"
    if action == "stale":
        return "not started (an upstream stage was re-run)"
    return "not started"


def _slurm(task: dict[str, Any], state: scheduler.JobState, manifest: dict[str, Any]) -> str:
    job = task["id"]
    if state.state == "RUNNING":
        return f"running (job {job} on {state.node}, {state.elapsed} elapsed)"
    if state.state == "PENDING" and state.reason in scheduler.NEVER:
        return (
            f"held (job {job}: an upstream job failed or was cancelled and SLURM keeps this one "
            "pending; "
            "re-run the audit to resubmit both)"
        )
    if state.state == "PENDING" and state.reason.startswith("Dependency"):
        return f"waiting on upstream (job {job})"
    if state.live:
        return f"queued (job {job}{', ' + state.reason if state.reason else ''})"
    if state.state == "CANCELLED" or state.state.startswith("CANCELLED"):
        return f"cancelled (job {job}; re-run the audit to resubmit it){_saved(manifest)}"
    if state.state == "UNKNOWN":
        gone = f"job {job} is no longer known to SLURM"
        return f"{_without_job(manifest, 'fresh')} ({gone})" + _tail(task["log"])
    code = f", exit status {state.exit_code}" if state.exit_code else ""
    return f"failed (job {job} {state.state}{code}){_tail(task['log'])}"


def _local(task: dict[str, Any], manifest: dict[str, Any]) -> str:
    state = task.get("state", "pending")
    if state == "running":
        return f"running (pid {task.get('pid')})"
    if state == "failed":
        return f"failed (exit status {task.get('returncode')}){_tail(task['log'])}"
    if state == "skipped":
        return "not started (an upstream job failed)"
    return _without_job(manifest, "fresh")


def _saved(manifest: dict[str, Any]) -> str:
    if manifest.get("status") == "interrupted" and manifest.get("checkpoint_epochs") is not None:
        return f"; checkpoint at epoch {manifest['checkpoint_epochs']}"
    return ""


def _tail(log: str) -> str:
    path = Path(log)
    if not path.is_file():
        return ""
    with path.open(errors="replace") as handle:
        last = deque((line.rstrip() for line in handle if line.strip()), maxlen=LOG_LINES)
    return "".join(f"\n      | {line}" for line in last) + f"\n      log: {path}"


def _results_line(
    cfg: DictConfig, planned: Planned, record: dict[str, Any], states: dict[str, Any]
) -> str:
    if results_current(cfg, planned.nodes):
        return "results.json: up to date with every stage"
    job = record.get("jobs", {}).get("results")
    if job and record.get("launcher") == "slurm":
        task = next(iter(job["tasks"].values()))
        state = _slurm(task, states.get(task["id"], scheduler.UNKNOWN), {})
        return f"results.json: not up to date; results job: {state}"
    return "results.json: not up to date (re-run the audit)"
