"""The audit's launchers: ``audit_local_vs_sequential`` and ``slurm_submit_to_start``.

``audit_local_vs_sequential`` times one small synthetic audit (six training stages of a few
seconds each, then the attacks) twice in fresh run folders, as ``lightning-talos`` processes
with the CLI's threading: ``launcher=none`` (every stage in one process, which takes every core)
and ``launcher=local launcher.parallel=2`` (two stage processes at once, one core each). The
ratio is the second wall time over the first (the median over ``BENCH_AUDIT_ROUNDS`` alternating
pairs, default 3); below 1, independent stages side by side beat the same stages in sequence
with all the cores (small models do not use two cores well).

``slurm_submit_to_start`` submits a few one-line jobs through submitit to the SLURM cluster this
machine reaches (skipped without one) and reports the median seconds from the submit call to
the job's first line of Python: the scheduler's overhead per stage.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightning_talos.bench.context import Bench
from lightning_talos.errors import UserError

#: The audit both launchers run: methods supervised and contrastive (pretrain, linear and
#: supervised for target and shadow: six training stages), the paper's attacks, small settings.
AUDIT_ARGS = (
    "experiment=synthetic_cpu",
    "methods=[supervised,contrastive]",
    "data.synthetic.quarter_size=256",
    "data.batch_size=64",
    "data.num_workers=0",
    "simclr.max_epochs=3",
    "linear.max_epochs=2",
    "supervised.max_epochs=3",
    "mia.nn_epochs=5",
    "mia.bootstrap=50",
    "mia.label_only_samples=16",
    "mia.hsj_iterations=2",
    "mia.hsj_grad_samples=8",
    "mia.aug_n=2",
    "aia.mlp_epochs=5",
    "aia.bootstrap=50",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32-true",
    "logger.mode=disabled",
)
#: Jobs ``slurm_submit_to_start`` submits.
SLURM_PROBES = 3
#: Seconds a probe job may take to start before the measurement gives up.
SLURM_WAIT_S = 120

Runner = Callable[[Sequence[str]], float]


def run_audit_process(args: Sequence[str]) -> float:
    """Wall seconds of ``lightning-talos audit ARGS`` in a fresh run folder.

    Raises:
        RuntimeError: when the audit fails (its last output lines in the message).
    """
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the CLI's share
    env["WANDB_MODE"] = "disabled"
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        command = [sys.executable, "-m", "lightning_talos", "audit", *args, f"run.dir={folder}"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"bench audit failed ({done.returncode}):\n{tail}")
    return seconds


def audit_local_vs_sequential(bench: Bench, run: Runner = run_audit_process) -> dict[str, Any]:
    """Wall time of the audit with ``launcher=local launcher.parallel=2`` over ``launcher=none``
    (``BENCH_AUDIT=0`` skips it: ratio NaN)."""
    if os.environ.get("BENCH_AUDIT", "1") == "0":
        return {"ratio": float("nan"), "skipped": "BENCH_AUDIT=0"}
    # one pair is noisy on 2 cores (0.81-1.12 in one hour on a quiet VM): the median of three
    rounds = int(os.environ.get("BENCH_AUDIT_ROUNDS", 3))
    sequential, parallel = [], []
    for _ in range(rounds):  # alternating, so a change in the machine's load hits both
        sequential.append(run([*AUDIT_ARGS, "launcher=none"]))
        parallel.append(run([*AUDIT_ARGS, "launcher=local", "launcher.parallel=2"]))
    ratios = [p / s for p, s in zip(parallel, sequential)]
    return {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "sequential_s": sequential,
        "local_parallel2_s": parallel,
        "audit": " ".join(AUDIT_ARGS),
    }


def slurm_submit_to_start(bench: Bench) -> dict[str, Any]:
    """Median seconds from submitting a job through submitit to its start (ratio NaN, with the
    reason, when no cluster is reachable or ``BENCH_SLURM=0``)."""
    from lightning_talos.orchestration.launchers.scheduler import require_slurm
    from lightning_talos.orchestration.launchers.slurm import import_submitit
    from lightning_talos.orchestration.launchers.task import (
        write_start_time,  # stdlib only: fast start
    )

    if os.environ.get("BENCH_SLURM", "1") == "0":
        return {"ratio": float("nan"), "skipped": "BENCH_SLURM=0"}
    try:
        submitit = import_submitit()
        require_slurm()
    except UserError as err:
        return {"ratio": float("nan"), "skipped": str(err)}
    delays = []
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir=Path.cwd()) as folder:
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(time=5, cpus_per_task=1, job_name="lt-bench")
        for n in range(SLURM_PROBES):  # one at a time: each finds the queue empty
            mark = Path(folder) / f"start-{n}"
            submitted = time.time()
            job = executor.submit(write_start_time, str(mark))
            deadline = submitted + SLURM_WAIT_S
            while not mark.is_file() and time.time() < deadline:
                time.sleep(0.05)
            if not mark.is_file():
                return {"ratio": float("nan"), "skipped": f"no job started in {SLURM_WAIT_S} s"}
            delays.append(float(mark.read_text()) - submitted)
            _wait_gone(str(job.job_id))  # the next probe finds the queue and the node free
    return {
        "ratio": statistics.median(delays),
        "delays_s": delays,
        "note": "submit call (sbatch) -> first line of the job's Python, median",
    }


def _wait_gone(job_id: str, timeout: float = 60.0) -> None:
    """Until ``job_id`` has left the queue (completed, and no longer completing)."""
    from lightning_talos.orchestration.launchers.scheduler import LIVE, query

    deadline = time.time() + timeout
    while time.time() < deadline and query([job_id])[job_id].state in LIVE:
        time.sleep(0.1)
