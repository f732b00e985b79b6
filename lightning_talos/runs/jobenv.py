"""The scheduler job a process runs under, as recorded in each stage's manifest.

A stage run by ``audit launcher=slurm`` (or by hand inside ``sbatch``/``srun``) records the SLURM
job it ran under, so ``status`` and a reader of the run folder can tie a result to its job, its
node and its log. Read from the environment SLURM sets in every job step; nothing is recorded
outside SLURM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: Manifest field -> the SLURM environment variable it comes from.
SLURM_FIELDS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "node": "SLURMD_NODENAME",
    "restart_count": "SLURM_RESTART_COUNT",
    "ntasks": "SLURM_NTASKS",
}


def slurm_job(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The SLURM job of this process (ids, node, restarts), or None outside SLURM.

    ``job`` is the id ``squeue``/``scancel`` take: ``<array job>_<task>`` for an array task,
    else the job id.
    """
    env = os.environ if environ is None else environ
    if not env.get("SLURM_JOB_ID"):
        return None
    out: dict[str, Any] = {k: env[v] for k, v in SLURM_FIELDS.items() if env.get(v)}
    array, task = out.get("array_job_id"), out.get("array_task_id")
    out["job"] = f"{array}_{task}" if array and task else out["job_id"]
    return out


def job_fields() -> dict[str, Any]:
    """Manifest fields naming the scheduler job (empty outside SLURM)."""
    job = slurm_job()
    return {} if job is None else {"slurm": job}
