"""The audit graph run by the launchers, end to end on a tiny synthetic audit.

``launcher=local`` and ``launcher=slurm`` (against the real single-node cluster of
``scripts/slurm.sh``; skipped, with the reason, when none is reachable) must give the numbers of
``launcher=none``. Every process runs with one thread (``OMP_NUM_THREADS=1``, which the SLURM
jobs inherit from the submitting process), so the floating-point sums are the same and the
results are compared exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.errors import UserError
from lightning_talos.orchestration.audit import graph
from lightning_talos.orchestration.launchers import scheduler
from lightning_talos.orchestration.launchers.state import read_jobs, task_owners
from lightning_talos.runs.context import RunContext
from tests.conftest import TINY_ARGS

pytestmark = pytest.mark.slow  # whole audits as separate processes or SLURM jobs

AUDIT = [
    *TINY_ARGS,
    "mia.label_only_samples=4",
    "mia.hsj_iterations=1",
    "mia.hsj_grad_samples=4",
    "mia.aug_n=2",
    "methods=[contrastive]",
    "attacks=[metric,lira]",  # LiRA: the reference models, one job array
    "mia.references=3",
    "run.name=tiny",
]
#: Keys of results.json meta that describe the process, not the result.
VOLATILE = ("wall_time_s", "profile", "created", "machine")
WAIT_S = 420


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HOME": str(home)}


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lightning_talos", *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(home))


def _numbers(root: Path) -> dict[str, Any]:
    results = json.loads((root / "results.json").read_text())
    for key in VOLATILE:
        results["meta"].pop(key)
    return results


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit with launcher=none, one thread; returns its run folder."""
    base = tmp_path_factory.mktemp("sequential")
    done = _cli(["audit", *AUDIT, f"run.dir={base}"], base)
    assert done.returncode == 0, done.stderr[-2000:]
    return base / "tiny"


def _check_order(root: Path, args: list[str]) -> dict[str, dict[str, Any]]:
    """Every stage done and started after the stages it reads had finished; the manifests."""
    cfg = compose(args)
    manifests = {}
    for node in graph(cfg, with_attribute=True):
        manifest = json.loads((root / node.name / "manifest.json").read_text())
        assert manifest["status"] == "done", node.name
        manifests[node.name] = manifest
        for dep in node.deps:
            upstream = json.loads((root / dep.name / "manifest.json").read_text())
            assert manifest["started_unix"] >= upstream["finished_unix"], (node.name, dep.name)
    return manifests


def test_local_launcher_gives_the_sequential_numbers(sequential: Path, tmp_path: Path) -> None:
    args = [*AUDIT, f"run.dir={tmp_path}", "launcher=local", "launcher.parallel=2"]
    done = _cli(["audit", *args], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    root = tmp_path / "tiny"
    assert _numbers(root) == _numbers(sequential)
    _check_order(root, args)
    record = read_jobs(root)
    assert record["launcher"] == "local"
    states = {t["state"] for j in record["jobs"].values() for t in j["tasks"].values()}
    assert states == {"done"}
    assert len(record["jobs"]["references-contrastive"]["tasks"]) == 3


# --- SLURM ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> None:
    try:
        scheduler.require_slurm()
    except UserError as err:
        reason = f"{err}; `make slurm-up` (as root) starts a single-node cluster"
        print(f"\nskipping the SLURM launcher tests: {reason}", file=sys.stderr)
        pytest.skip(reason)


def _wait(root: Path, timeout: float = WAIT_S) -> None:
    """Until no job recorded in ``root``'s jobs.json is queued or running (a job pending for
    ever on a failed one does not count)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        record = read_jobs(root)
        ids = [t["id"] for j in record["jobs"].values() for t in j["tasks"].values()]
        if not any(s.live for s in scheduler.query(ids).values()):
            return
        time.sleep(1.0)
    pytest.fail(f"SLURM jobs of {root} still queued or running after {timeout} s")


@pytest.fixture(scope="module")
def slurm_run(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The audit submitted with launcher=slurm (one thread per job), waited for."""
    base = tmp_path_factory.mktemp("slurm")
    args = [*AUDIT, f"run.dir={base}", "launcher=slurm_local"]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _env(base).items():
            mp.setenv(key, value)
        assert main(["audit", *args]) == 0
        _wait(base / "tiny")
        yield args


def test_slurm_audit_gives_the_sequential_numbers(slurm_run: list[str], sequential: Path) -> None:
    root = RunContext(compose(slurm_run)).root
    assert _numbers(root) == _numbers(sequential)


def test_every_stage_records_its_slurm_job_and_waited_for_its_upstream(
    slurm_run: list[str],
) -> None:
    root = RunContext(compose(slurm_run)).root
    manifests = _check_order(root, slurm_run)
    record = read_jobs(root)
    owners = task_owners(record)
    for name, manifest in manifests.items():
        job, label = owners[name]
        assert manifest["slurm"]["job"] == record["jobs"][job]["tasks"][label]["id"], name
    array = record["jobs"]["references-contrastive"]
    assert [t["id"] for t in array["tasks"].values()] == [
        f"{array['job_id']}_{j}" for j in range(3)
    ]
    assert manifests["linear-ref-2"]["slurm"]["array_task_id"] == "2"


def test_second_invocation_submits_nothing(
    slurm_run: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = RunContext(compose(slurm_run)).root
    before = read_jobs(root)["jobs"]
    assert main(["audit", *slurm_run]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert read_jobs(root)["jobs"] == before
    assert main(["status", *slurm_run]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "results.json: up to date with every stage"
    assert all(" done (job " in line for line in lines[1:-1]), lines


HOLD = """
import sys, time
from pathlib import Path
from lightning_talos.runs.lock import run_lock
with run_lock(Path(sys.argv[1]), wait=False):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_audit_on_the_run_stops_in_one_line(
    slurm_run: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = RunContext(compose(slurm_run)).root
    # the run lock as an audit holds it while it plans and submits
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert main(["audit", *slurm_run]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"in use by pid {proc.pid}" in lines[0], lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_bad_partition_and_rejected_sbatch_leave_nothing_submitted(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*AUDIT, f"run.dir={tmp_path}", "launcher=slurm_local", "methods=[supervised]",
            "attacks=[metric]"]  # fmt: skip
    assert main(["audit", *args, "launcher.partition=nope"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown partition 'nope'; this cluster has:" in lines[0], lines
    before = _queued()
    # training jobs go in first; the attack job asks for more memory than the node has
    assert main(["audit", *args, "launcher.attack.mem_gb=100000"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch rejected job mia-supervised")
    assert "(cancelled the 2 job(s) submitted before it)" in lines[0]
    assert _queued() <= before  # the two training jobs were cancelled
    assert not (tmp_path / "tiny" / "jobs.json").exists()


def _queued() -> set[str]:
    out = subprocess.run(["squeue", "--noheader", "--format=%i|%T"], capture_output=True, text=True)
    return {
        line.split("|")[0] for line in out.stdout.split() if "PENDING" in line or "RUNNING" in line
    }


def test_cancelled_stage_is_resubmitted_and_resumes_from_its_checkpoint(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*AUDIT, f"run.dir={tmp_path}", "launcher=slurm_local", "methods=[supervised]",
            "attacks=[metric]", "supervised.max_epochs=20",
            "trainer.checkpoint_every_n_steps=1"]  # fmt: skip
    root = tmp_path / "tiny"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _env(tmp_path).items():
            mp.setenv(key, value)
        assert main(["audit", *args]) == 0
        ckpt = root / "supervised-target" / "checkpoints" / "last.ckpt"
        deadline = time.time() + WAIT_S
        while not ckpt.is_file() and time.time() < deadline:
            time.sleep(0.2)
        job = read_jobs(root)["jobs"]["supervised-target"]["job_id"]
        subprocess.run(["scancel", job], check=True)
        _wait(root, timeout=120)  # the rest: waiting on the cancelled job for ever
        capsys.readouterr()
        assert main(["status", *args]) == 0
        status = capsys.readouterr().out
        assert f"supervised-target                cancelled (job {job}" in status, status
        manifest = json.loads((root / "supervised-target" / "manifest.json").read_text())
        assert manifest["status"] == "interrupted" and manifest["checkpoint_step"] >= 1
        assert main(["audit", *args]) == 0
        out = capsys.readouterr().out
        assert "[slurm] supervised-target: job" in out and "supervised-shadow" not in out
        _wait(root)
    metrics = json.loads((root / "supervised-target" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == manifest["checkpoint_step"]
    again = json.loads((root / "supervised-target" / "manifest.json").read_text())
    assert again["status"] == "done" and again["slurm"]["job"] != job
    assert (root / "results.json").is_file()
