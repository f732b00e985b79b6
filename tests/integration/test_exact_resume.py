"""Exact resume: a run killed (kill -9) inside an epoch after a step checkpoint and re-run with
the same command ends with the weights, optimiser state and logged losses of a run never
interrupted, for every training stage. A reference model is an ordinary stage run for another
role (``stages/references.py``): the same runner, loaders and callbacks, so these cover it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from lightning_talos.cli import main
from tests.fixtures.processes import batch_position, launch, wait_for_file, wait_for_position
from tests.fixtures.wandb_history import history, offline_runs, training_rows

#: Bitwise equality holds at a fixed thread count: every process of these tests runs one.
pytestmark = pytest.mark.usefixtures("one_thread")


#: 64 training images in batches of 16: four batches per epoch.
BATCHES = 4
#: stage -> (stages trained before it, extra settings). Talos runs its alternating schedule
#: (two passes per epoch, the adversary's pass steps another optimiser).
STAGES: dict[str, tuple[list[str], list[str]]] = {
    "pretrain": ([], []),
    "linear": (["pretrain"], []),
    "supervised": ([], []),
    "talos": ([], ["talos.schedule=alternating", "talos.max_epochs=1"]),
    "dp_supervised": ([], []),
}


#: The sections whose ``max_epochs`` the stages count.
SECTIONS = ("simclr", "linear", "supervised", "talos", "dp")


#: The stage whose test also reads the W&B log back.
WANDB_STAGE = "pretrain"


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, float]]:
    """``(batches trained before, name, value)`` of every ``train/`` scalar a module logs in
    this process (what Lightning hands to the logger)."""
    rows: list[tuple[int, str, float]] = []
    original = pl.LightningModule.log

    def spy(self: pl.LightningModule, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if name.startswith("train/"):
            step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
            rows.append((int(step), name, float(value)))
        original(self, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    return rows


def _args(tiny_args: list[str], name: str, extra: list[str]) -> list[str]:
    return [
        *tiny_args,
        f"run.name={name}",
        "data.batch_size=16",
        *(f"{section}.max_epochs=2" for section in SECTIONS),
        # step checkpoints fall inside epochs; a logging window (2 batches) spans one of them
        "trainer.checkpoint_every_n_steps=5",
        "trainer.log_every_n_steps=2",
        "logger.mode=offline",
        *extra,
    ]


def _equal(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` hold the same structure and values; tensors bitwise (``torch.equal``)."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def _stage_log(folder: Path) -> list[Path]:
    wandb_id = json.loads((folder / "manifest.json").read_text())["wandb_id"]
    return [p for p in offline_runs(folder.parent) if p.name == f"run-{wandb_id}.wandb"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_mid_epoch_and_rerun_equals_uninterrupted(
    stage: str,
    tiny_args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logged: list[tuple[int, str, float]],
) -> None:
    # W&B offline for one stage (its start-up costs seconds per run): the resumed run's log
    wandb = "offline" if stage == WANDB_STAGE else "disabled"
    monkeypatch.setenv("WANDB_MODE", wandb)
    upstream, extra = STAGES[stage]
    runs = tmp_path / "runs"
    for name in upstream:  # trained once, copied: both runs read the same encoder
        assert main([name, *_args(tiny_args, "plain", extra)]) == 0
    if upstream:
        shutil.copytree(runs / "plain", runs / "killed")
    del logged[:]
    assert main([stage, *_args(tiny_args, "plain", extra)]) == 0
    plain_logged = list(logged)

    args = _args(tiny_args, "killed", extra)
    folder = runs / "killed" / f"{stage}-target"
    ckpt = folder / "checkpoints" / "last.ckpt"
    proc = launch(stage, args, wandb=wandb, own_group=True)
    try:  # kill -9 the job (with its W&B service) once a checkpoint inside an epoch is on disk
        wait_for_position(proc, ckpt, lambda epoch, done: 0 < done < BATCHES)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone when it failed early
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    epoch, done = batch_position(ckpt)
    assert 0 < done < BATCHES  # the rerun starts inside an epoch
    resumed_at = torch.load(ckpt, weights_only=True, mmap=True)["global_step"]
    del logged[:]
    assert main([stage, *args]) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == resumed_at

    plain = runs / "plain" / f"{stage}-target"
    a = torch.load(plain / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["global_step"] == b["global_step"] > resumed_at
    _equal(a["state_dict"], b["state_dict"], "state_dict")
    _equal(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    _equal(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")

    # every training scalar logged after the resume point: those of the uninterrupted run
    batches_before = epoch * BATCHES + done
    assert logged == [row for row in plain_logged if row[0] >= batches_before]
    assert len(logged) >= 4
    if wandb == "offline":  # and in W&B: the same run id, the same rows, none missing
        [plain_log] = _stage_log(plain)
        *_, resumed_log = _stage_log(folder)
        expected = training_rows(history(plain_log))
        got = training_rows(history(resumed_log))
        assert got == [row for row in expected if row["trainer/global_step"] >= batches_before]
        assert len(got) >= 2


@pytest.mark.slow
def test_sigterm_before_the_first_step_leaves_nothing_to_resume(
    tiny_args: list[str], tmp_path: Path
) -> None:
    args = [*tiny_args, "data.batch_size=16"]
    folder = tmp_path / "runs" / "default" / "pretrain-target"
    proc = launch("pretrain", args, stderr=subprocess.PIPE)
    try:  # the manifest is written just before set-up begins: the signal lands in set-up
        wait_for_file(proc, folder / "manifest.json")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    [line] = [x for x in err.splitlines() if "interrupted by SIGTERM" in x]
    assert "Traceback" not in err and "re-run the same command" in line
    assert not (folder / "checkpoints" / "last.ckpt").exists()
    assert json.loads((folder / "manifest.json").read_text())["status"] == "interrupted"
    assert main(["pretrain", *args]) == 0  # starts from scratch
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] is None and metrics["global_step"] == BATCHES
