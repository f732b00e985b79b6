"""The pair-vs-alone protocol, driven by workers whose timed part is a fixed sleep."""

from __future__ import annotations

import os
import sys

import pytest

from lightning_talos.bench.concurrent import (
    LIBGOMP_DEFAULT_SPIN,
    libgomp_default_env,
    pair_vs_alone,
    run_together,
)

SLEEPER = """
import json, sys, time
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
time.sleep(float(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""


def test_sleepers_share_nothing_so_the_pair_ratio_is_one() -> None:
    command = [sys.executable, "-c", SLEEPER, "0.2"]
    result = pair_vs_alone(command, rounds=2)
    assert len(result["alone_s"]) == 2 and len(result["pair_s"]) == 2
    assert all(s >= 0.2 for s in result["alone_s"] + result["pair_s"])
    assert 0.8 < result["ratio"] < 1.5  # sleeping workers do not compete for the CPU


def test_pair_time_is_the_slower_worker() -> None:
    fast, slow = ([sys.executable, "-c", SLEEPER, s] for s in ("0.05", "0.3"))
    seconds = run_together([fast, slow])
    assert seconds[0] < 0.25 <= seconds[1]


def test_a_failing_worker_is_reported() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_together([[sys.executable, "-c", "raise SystemExit('boom')"]])


@pytest.mark.slow
def test_real_worker_speaks_the_protocol() -> None:
    command = [sys.executable, "-m", "lightning_talos.bench.worker", "2",
               "data.batch_size=8", "data.synthetic.quarter_size=16"]  # fmt: skip
    (seconds,) = run_together([command])
    assert 0 < seconds < 60


def test_baseline_rounds_give_the_alone_slowdown() -> None:
    command = [sys.executable, "-c", SLEEPER + "\nimport os\nassert os.environ['MARK'] == 'x'",
               "0.1"]  # fmt: skip
    env = {**os.environ, "MARK": "x"}
    result = pair_vs_alone(command, rounds=1, env=env, baseline_env=env)
    assert len(result["baseline_alone_s"]) == 1
    assert 0.6 < result["alone_vs_baseline"] < 1.6


def test_libgomp_default_env_drops_the_user_policy() -> None:
    env = libgomp_default_env({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "5", "A": "1"})
    assert env == {"GOMP_SPINCOUNT": LIBGOMP_DEFAULT_SPIN, "A": "1"}


def test_worker_command_carries_the_bench_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_talos.bench.concurrent import concurrent_vs_alone, worker_command
    from lightning_talos.bench.context import Bench
    from lightning_talos.config.load import compose

    bench = Bench(compose(["experiment=synthetic_cpu", "data.batch_size=8",
                           "data.synthetic.quarter_size=16"]), steps=1)  # fmt: skip
    command = worker_command(bench)
    assert command[3] == "2"  # at least two timed steps
    assert "data.batch_size=8" in command and "trainer.accelerator=cpu" in command
    seen: list[dict] = []
    monkeypatch.setattr(
        "lightning_talos.bench.concurrent.pair_vs_alone",
        lambda cmd, **kw: seen.append(kw) or {"ratio": 2.0, "alone_s": [1.0], "pair_s": [2.0]},
    )
    result = concurrent_vs_alone(bench)
    assert result["worker_steps"] == 2 and result["ratio"] == 2.0
    assert seen[0]["baseline_env"]["GOMP_SPINCOUNT"] == LIBGOMP_DEFAULT_SPIN
