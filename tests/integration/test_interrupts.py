"""SIGTERM and Ctrl-C mid-training: exit 143 / 130, last.ckpt saved, stage `interrupted`, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lightning_talos.cli import main
from tests.fixtures.processes import checkpoint_position, launch, wait_for_file

#: 64 training images in batches of 32: two optimizer steps per epoch.
STEPS_PER_EPOCH = 2
EPOCHS = 10


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_saves_marks_interrupted_and_resumes(
    signum: signal.Signals, status: int, tiny_args: list[str], tmp_path: Path
) -> None:
    args = [*tiny_args, f"simclr.max_epochs={EPOCHS}"]
    folder = tmp_path / "runs" / "default" / "pretrain-target"
    ckpt = folder / "checkpoints" / "last.ckpt"
    proc = launch("pretrain", args, stderr=subprocess.PIPE)
    try:
        wait_for_file(proc, ckpt)  # training is running: the first epoch has ended
        _, first_step = checkpoint_position(ckpt)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if "interrupted by" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"interrupted by {signum.name}" in lines[0]
    assert "re-run the same command to resume: lightning-talos pretrain" in lines[0]
    _, step = checkpoint_position(ckpt)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["interrupted_by"] == signum.name
    assert manifest["checkpoint_step"] == step  # saved on the signal, at a batch boundary
    assert first_step <= step < STEPS_PER_EPOCH * EPOCHS  # mid-run
    assert main(["pretrain", *args]) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == step
    assert metrics["resumed_from_epoch"] == step // STEPS_PER_EPOCH  # full epochs in it
    assert metrics["epochs"] == EPOCHS
    assert metrics["global_step"] == STEPS_PER_EPOCH * EPOCHS  # no step repeated or lost
    assert json.loads((folder / "manifest.json").read_text())["status"] == "done"


@pytest.mark.slow
def test_slurm_requeue_signal_then_sigterm_resumes_from_the_newest_checkpoint(
    tiny_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What SLURM does with `#SBATCH --signal=USR1@90`: SIGUSR1 before the time limit
    # (Lightning saves hpc_ckpt_1.ckpt and runs `scontrol requeue`), then SIGTERM.
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "talos", "SLURM_JOB_ID": "4242",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "localhost", "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    args = [*tiny_args, f"simclr.max_epochs={EPOCHS}"]
    folder = tmp_path / "runs" / "default" / "pretrain-target"
    last, hpc = folder / "checkpoints" / "last.ckpt", folder / "hpc_ckpt_1.ckpt"
    proc = launch("pretrain", args)
    try:
        wait_for_file(proc, last)
        proc.send_signal(signal.SIGUSR1)
        wait_for_file(proc, calls)  # written after the hpc checkpoint
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert calls.read_text().split() == ["requeue", "4242"]
    steps = {checkpoint_position(p)[1] for p in (last, hpc)}
    assert max(steps) < STEPS_PER_EPOCH * EPOCHS
    assert main(["pretrain", *args]) == 0  # the requeued job: same command, still on SLURM
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == max(steps)
    assert metrics["global_step"] == STEPS_PER_EPOCH * EPOCHS
    assert not list(folder.glob("hpc_ckpt_*.ckpt"))  # superseded by the final last.ckpt
