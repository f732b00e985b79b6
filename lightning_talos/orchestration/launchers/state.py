"""``<run>/jobs.json``: the jobs a launcher started for a run, written atomically.

::

    {"launcher": "slurm", "updated": 1733312345.6,
     "jobs": {"pretrain-target": {"kind": "train", "job_id": "41", "deps": [...],
                                  "submitted": 1733312340.1, "log_dir": "...",
                                  "tasks": {"pretrain-target": {"id": "41", "nodes": [...],
                                                                "command": "lightning-talos ...",
                                                                "log": "..."}}}}}

A SLURM task's ``id`` is what ``squeue``/``scancel`` take (``<array>_<j>`` in an array); a local
task has ``pid``, ``state`` (``running``, ``done``, ``failed``, ``skipped``) and ``returncode``.
A later call of the launcher replaces the entries of the jobs it starts and keeps the others.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lightning_talos.errors import UserError
from lightning_talos.runs.records import write_json

JOBS_FILE = "jobs.json"


def read_jobs(root: Path) -> dict[str, Any]:
    """The run's ``jobs.json`` (an empty record when there is none).

    Raises:
        UserError: when the file exists but is not valid JSON.
    """
    path = root / JOBS_FILE
    if not path.is_file():
        return {"launcher": None, "jobs": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"corrupt {path}: {err}; remove it (the stages' manifests stay)") from None


def write_jobs(root: Path, launcher: str, jobs: dict[str, Any]) -> None:
    """Record ``jobs`` (name -> entry) in ``jobs.json``, keeping the entries of other jobs."""
    record = read_jobs(root)
    record["jobs"].update(jobs)
    record.update(launcher=launcher, updated=time.time())
    write_json(root / JOBS_FILE, record)


def task_owners(record: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Stage key -> (job name, task label) of the job that writes it (the first job listing a
    stage owns it: a later reference array re-reads a shared stage without writing it)."""
    out: dict[str, tuple[str, str]] = {}
    for name, job in record.get("jobs", {}).items():
        for label, task in job.get("tasks", {}).items():
            for node in task.get("nodes", []):
                out.setdefault(node, (name, label))
    return out
