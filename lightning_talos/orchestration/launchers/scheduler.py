"""What SLURM says about recorded jobs: ``squeue`` for queued and running ones, ``scontrol``
for those that ended recently, ``sacct`` where the cluster keeps accounting.

submitit reads job states through ``sacct`` only, which a cluster without accounting storage
(like the single-node one of ``scripts/slurm.sh``) does not answer; these queries work on both.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from lightning_talos.errors import UserError

#: Job states in which a job still holds its place in the queue or runs.
LIVE = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
     "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
)  # fmt: skip
#: Pending reasons of a job whose dependency can never be met (an upstream job failed).
NEVER = frozenset({"DependencyNeverSatisfied"})
_TIMEOUT_S = 30


@dataclass(frozen=True)
class JobState:
    """One job (or array task) as the scheduler reports it.

    Args:
        state: ``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMEOUT``,
            ... or ``UNKNOWN`` when the scheduler no longer knows the job.
        reason: why a pending job waits (``Dependency``, ``Resources``, ...).
        node: where it runs (or ran).
        elapsed: its run time so far, as SLURM prints it.
        exit_code: ``<status>:<signal>`` of an ended job.
    """

    state: str
    reason: str = ""
    node: str = ""
    elapsed: str = ""
    exit_code: str = ""

    @property
    def live(self) -> bool:
        """Queued or running, with a dependency that can still be met."""
        return self.state in LIVE and self.reason not in NEVER


UNKNOWN = JobState("UNKNOWN")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"no SLURM reachable: `{' '.join(argv[:2])}` failed: {err}") from None


def require_slurm() -> list[str]:
    """The cluster's partitions; stops when no SLURM controller answers.

    Raises:
        UserError: ``sbatch``/``squeue``/``sinfo`` missing, or the controller not answering.
    """
    missing = [b for b in ("sbatch", "squeue", "sinfo", "scancel") if shutil.which(b) is None]
    if missing:
        raise UserError(
            f"no SLURM reachable: {', '.join(missing)} not found on PATH (use launcher=local "
            "or launcher=none here, or `make slurm-up` as root for a single-node cluster)"
        )
    out = _run(["sinfo", "--noheader", "--format=%R"])
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no answer"])[0]
        raise UserError(f"no SLURM reachable: sinfo failed: {first}")
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def query(ids: Iterable[str]) -> dict[str, JobState]:
    """The state of each job id (``<array>_<task>`` for an array task); ``UNKNOWN`` for a job
    the scheduler has forgotten."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    states = _squeue(wanted)
    for job_id in wanted:
        if job_id not in states:
            states[job_id] = _scontrol(job_id) or _sacct(job_id) or UNKNOWN
    return states


def _squeue(ids: list[str]) -> dict[str, JobState]:
    out = _run(
        ["squeue", "--noheader", "--array", "--format=%i|%T|%r|%N|%M", "--jobs", ",".join(ids)]
    )
    states: dict[str, JobState] = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            job_id, state, reason, node, elapsed = parts
            states[job_id] = JobState(state, reason if reason != "None" else "", node, elapsed)
    return states


def _fields(text: str) -> dict[str, str]:
    out = {}
    for token in text.split():
        key, _, value = token.partition("=")
        out.setdefault(key, value)
    return out


def _scontrol(job_id: str) -> JobState | None:
    out = _run(["scontrol", "--oneliner", "show", "job", job_id])
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        info = _fields(line)
        array = info.get("ArrayJobId"), info.get("ArrayTaskId")
        own = f"{array[0]}_{array[1]}" if all(array) else info.get("JobId")
        if own == job_id or info.get("JobId") == job_id:
            return JobState(
                info.get("JobState", "UNKNOWN"),
                info.get("Reason", "").replace("None", ""),
                info.get("NodeList", "").replace("(null)", ""),
                info.get("RunTime", ""),
                info.get("ExitCode", ""),
            )
    return None


def _sacct(job_id: str) -> JobState | None:
    if shutil.which("sacct") is None:
        return None
    argv = ["sacct", "--noheader", "--parsable2", "--jobs", job_id,
            "--format=JobID,State,NodeList,Elapsed,ExitCode"]  # fmt: skip
    out = _run(argv)
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5 and parts[0] == job_id:
            return JobState(parts[1].split()[0], "", parts[2], parts[3], parts[4])
    return None


def cancel(ids: Iterable[str]) -> None:
    """``scancel`` the given jobs (ignoring ones that already ended)."""
    wanted = sorted(set(ids))
    if wanted:
        _run(["scancel", *wanted])
