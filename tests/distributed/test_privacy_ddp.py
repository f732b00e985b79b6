"""``PrivacyAudit`` under two-process gloo DDP gives the numbers of a one-process audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.integration.test_privacy_callback import TinyClassifier, callback, datasets

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ddp
def test_two_process_audit_equals_one_process(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.distributed.privacy_ddp_worker", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    histories = [json.loads((tmp_path / f"history-rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0 measured on both shards and shared the row: every rank holds the same history
    assert histories[0] == histories[1]
    assert [row["epoch"] for row in histories[0]] == [4, 9]
    # the same trained weights audited in this one process give the same numbers
    model = TinyClassifier()
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    one = callback(*datasets()).audit(model)
    last = {k: v for k, v in histories[0][-1].items() if k != "epoch"}
    assert last.keys() == one.keys()
    for key, value in one.items():
        assert last[key] == pytest.approx(value, abs=1e-12), key
    # and only rank 0 wrote the history file and the logged rows
    logged = json.loads((tmp_path / "ddp" / "version_0" / "privacy_history.json").read_text())
    assert logged == histories[0]
