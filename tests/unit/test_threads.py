"""CPU threading defaults: set before torch loads, never over a user's choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_talos import threads
from lightning_talos.threads import SPIN_COUNT, CpuShare, configure_cpu_threads, start_cpu_share

PROBE = """
import json, os, sys
from lightning_talos.threads import configure_cpu_threads
applied = configure_cpu_threads()
print(json.dumps({"applied": applied, "spin": os.environ.get("GOMP_SPINCOUNT")}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "PYTHONPATH": os.getcwd(), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_is_set_in_a_fresh_process() -> None:
    assert _probe() == {"applied": {"GOMP_SPINCOUNT": SPIN_COUNT}, "spin": SPIN_COUNT}


@pytest.mark.parametrize("env", [{"GOMP_SPINCOUNT": "77"}, {"OMP_WAIT_POLICY": "ACTIVE"}])
def test_user_values_win(env: dict[str, str]) -> None:
    result = _probe(**env)
    assert result["applied"] == {}
    assert result["spin"] == env.get("GOMP_SPINCOUNT")


def test_nothing_is_set_once_torch_is_loaded() -> None:
    import torch  # noqa: F401  (the test process has it; the setting could not apply)

    env: dict[str, str] = {}
    assert configure_cpu_threads(env) == {} and env == {}


def test_cpu_share_splits_cores_between_live_runs(tmp_path: Path) -> None:
    share = CpuShare(tmp_path, cores=2)
    share.register()
    try:
        assert share.live_runs() == 1 and share.threads() == 2  # alone: every core
        (tmp_path / str(os.getppid())).touch()  # a second live run
        assert share.threads() == 1
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        (tmp_path / dead.stdout.strip()).touch()  # a run that died without releasing
        assert share.live_runs() == 2
        assert not (tmp_path / dead.stdout.strip()).exists()
    finally:
        share.release()
    assert not (tmp_path / str(os.getpid())).exists()


def test_user_thread_count_turns_the_share_off() -> None:
    assert start_cpu_share({"OMP_NUM_THREADS": "3"}) is None


def test_a_thread_count_set_later_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A share started by an earlier command of this process is not applied once the user
    sets ``OMP_NUM_THREADS`` (one command in-process after another, as tests run them)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_SHARE", threads.CpuShare(cores=2))
    assert threads.cpu_share() is not None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.cpu_share() is None
