"""SIGTERM to a two-process DDP pretrain (gloo, CPU): every rank stops after the same batch and
exits 143, one checkpoint, and the rerun under DDP ends as the uninterrupted DDP run did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures.processes import REPO, batch_position, launch, wait_for_position
from tests.fixtures.wandb_history import history, offline_runs, training_rows
from tests.integration.test_exact_resume import _equal

#: Bitwise equality holds at a fixed thread count: every process of these tests runs one.
pytestmark = pytest.mark.usefixtures("one_thread")


#: 128 members, a half per rank, batches of 8: one epoch of eight batches on each rank.
BATCHES = 8


def _args(tiny_args: list[str], name: str) -> list[str]:
    return [*tiny_args, f"run.name={name}", "data.synthetic.quarter_size=128",
            "data.batch_size=8", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.strategy=ddp", "simclr.max_epochs=1", "trainer.checkpoint_every_n_steps=3",
            "trainer.log_every_n_steps=2", "logger.mode=offline"]  # fmt: skip


def _run(args: list[str]) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", PYTHONPATH=path)
    cmd = [sys.executable, "-m", "lightning_talos", "pretrain", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.ddp
def test_sigterm_to_the_launcher_stops_all_ranks_at_one_step_and_resumes_exactly(
    tiny_args: list[str], tmp_path: Path
) -> None:
    plain = _run(_args(tiny_args, "plain"))
    assert plain.returncode == 0, plain.stderr[-2000:]

    args = _args(tiny_args, "stopped")
    folder = tmp_path / "runs" / "stopped" / "pretrain-target"
    ckpt = folder / "checkpoints" / "last.ckpt"
    proc = launch("pretrain", args, stderr=subprocess.PIPE, wandb="offline")
    try:  # SIGTERM to the launcher (rank 0) once the first step checkpoint (step 3) is written
        wait_for_position(proc, ckpt, lambda epoch, done: True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    [line] = [x for x in err.splitlines() if "interrupted by SIGTERM" in x and "ranks" in x]
    assert "the other ranks exited [143]" in line and "Traceback" not in err
    stopped_at = int(torch.load(ckpt, weights_only=True, mmap=True)["global_step"])
    epoch, done = batch_position(ckpt)
    assert 0 < done < BATCHES and epoch == 0  # inside the first epoch
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["checkpoint_step"] == stopped_at
    assert not list(folder.rglob("*.tmp")) and not list(folder.glob("hpc_ckpt_*"))

    resumed = _run(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == stopped_at
    a = torch.load(tmp_path / "runs" / "plain" / "pretrain-target" / LAST, weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["global_step"] == b["global_step"] == BATCHES
    _equal(a["state_dict"], b["state_dict"], "state_dict")
    _equal(a["optimizer_states"], b["optimizer_states"], "optimizer_states")

    # W&B: one run id over both processes; their training rows are the uninterrupted run's,
    # each step once (the stop saved the step it stopped at: nothing is logged twice)
    wandb_id = json.loads((folder / "manifest.json").read_text())["wandb_id"]
    logs = [p for p in offline_runs(folder.parent) if p.name == f"run-{wandb_id}.wandb"]
    assert len(logs) == 2
    [plain_log] = offline_runs(tmp_path / "runs" / "plain")
    got = [row for log in logs for row in training_rows(history(log))]
    assert got == training_rows(history(plain_log))


LAST = Path("checkpoints") / "last.ckpt"
