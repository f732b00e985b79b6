"""A real two-process DDP (gloo, CPU) SimCLR run through the command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.ddp
def test_two_process_ddp_pretrain_writes_one_run(tiny_args: list[str], tmp_path: Path) -> None:
    quarter, batch = 64, 16
    args = [*tiny_args, f"data.synthetic.quarter_size={quarter}", f"data.batch_size={batch}",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
            "simclr.max_epochs=2"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_talos", "pretrain", *args],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "runs" / "default" / "pretrain-target"
    manifest = json.loads((folder / "manifest.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert manifest["status"] == "done"
    # each rank sees half of the members: the step count is that of one rank's shard
    assert metrics["global_step"] == 2 * math.ceil(quarter / 2 / batch)
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert not list(folder.glob("*.tmp"))
