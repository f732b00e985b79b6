"""Two processes on one run: the second stops with one line naming the first; death frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_talos.cli import main
from lightning_talos.runs.lock import (
    command_lock,
    holder,
    holder_note,
    run_lock,
    stage_lock_path,
)

HOLD = """
import sys, time
from pathlib import Path
from lightning_talos.runs.lock import run_lock, stage_lock
root, seconds, stage = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
with run_lock(root, wait=False) if not stage else stage_lock(root, stage):
    print("held", flush=True)
    time.sleep(seconds)
"""


def _hold(root: Path, seconds: float, stage: str = "") -> subprocess.Popen[str]:
    """A separate process holding ``root``'s lock (or its ``stage``'s) for ``seconds``
    (returns once it holds it)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), str(seconds), stage],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_command_stops_naming_the_holder_and_trains_nothing(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs" / "default"
    proc = _hold(root, 60, stage="pretrain-target")
    note = stage_lock_path(root, "pretrain-target").with_name("pretrain-target.holder.json")
    try:
        assert holder_note(note)["pid"] == proc.pid  # type: ignore[index]
        assert main(["pretrain", *tiny_args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"in use by pid {proc.pid}" in lines[0], lines
        assert not (root / "pretrain-target").exists()  # nothing was started
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up code runs: only the OS frees the lock
        proc.wait()
    assert note.is_file()  # the dead holder's note is left behind...
    assert main(["pretrain", *tiny_args]) == 0  # ...yet the lock does not block
    assert not note.exists()


def test_stages_of_one_run_train_side_by_side_but_audits_do_not(
    tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs" / "default"
    proc = _hold(root, 60, stage="pretrain-target")  # e.g. a launcher's job on that stage
    try:
        assert main(["supervised", *tiny_args]) == 0  # another stage of the same run
        assert (root / "supervised-target" / "metrics.json").is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _hold(root, 60)  # an audit planning or writing results
    try:
        assert main(["audit", *tiny_args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"run {root} is in use by pid {proc.pid}" in lines[0], lines
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_waiting_lock_runs_after_the_holder_exits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "run"
    proc = _hold(root, 1.0)
    started = time.monotonic()
    with run_lock(root, wait=True):
        assert time.monotonic() - started > 0.8  # the holder slept 1 s after saying "held"
        assert holder(root)["pid"] == os.getpid()  # type: ignore[index]
    assert f"in use by pid {proc.pid}" in caplog.text
    proc.wait()


def test_other_ranks_and_dry_runs_take_no_lock(
    tiny_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs" / "default"
    proc = _hold(root, 60)
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child re-running the command
        with command_lock("pretrain", tiny_args):
            pass
        monkeypatch.delenv("LOCAL_RANK")
        with command_lock("audit", ["--dry-run", *tiny_args]), command_lock("data", tiny_args):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_unwritable_run_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    from lightning_talos.errors import UserError

    with (
        pytest.raises(UserError, match="cannot create run folder"),
        run_lock(blocker / "run", wait=False),
    ):
        pass
