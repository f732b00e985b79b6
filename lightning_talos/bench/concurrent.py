"""``concurrent_vs_alone``: how much slower two runs at once are than one run alone.

On a machine shared with another job, a fair outcome is that each of two CPU-bound runs takes
about twice as long as it would alone (they split the cores). The measurement starts worker
processes (:mod:`lightning_talos.bench.worker`, which apply the CLI's threading defaults before
loading torch), lets each warm up, then starts their timed SimCLR steps together: once one
worker alone, then two at once, for a few rounds. The ratio is the median time of the slower
of the pair over the median time alone; 2.0 is a fair share of a machine both runs saturate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_talos.bench.context import Bench
from lightning_talos.bench.timing import median
from lightning_talos.threads import cpu_share

#: libgomp's spin count when neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT`` is set.
LIBGOMP_DEFAULT_SPIN = "300000"


def worker_command(bench: Bench) -> list[str]:
    """The worker's command line: the bench's model, data and batch, on the CPU."""
    cfg = bench.cfg
    overrides = {
        "seed": cfg.seed,
        "model.backbone": cfg.model.backbone,
        "model.stem": cfg.model.stem,
        "model.channels_last": cfg.model.channels_last,
        "data.image_size": cfg.data.image_size,
        "data.batch_size": cfg.data.batch_size,
        "data.synthetic.quarter_size": cfg.data.synthetic.quarter_size,
        "trainer.precision": cfg.trainer.precision,
        "trainer.accelerator": "cpu",
    }
    args = [f"{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in overrides.items()]  # fmt: skip
    return [sys.executable, "-m", "lightning_talos.bench.worker", str(worker_steps(bench)), *args]


def worker_steps(bench: Bench) -> int:
    """Timed steps per worker: the bench's step count, at least two."""
    return max(2, bench.steps)


def run_together(
    commands: Sequence[Sequence[str]], *, env: Mapping[str, str] | None = None
) -> list[float]:
    """Start every command, wait until all say ``ready``, cue them at once; their timed seconds.

    Each command speaks the worker protocol: prints ``ready``, reads one stdin line, then prints
    a JSON line with ``seconds``.

    Raises:
        RuntimeError: when a worker exits or prints something else instead (its stderr attached).
    """
    procs = [
        subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ if env is None else env),
        )
        for cmd in commands
    ]
    try:
        for proc in procs:
            _expect(proc, lambda line: line.strip() == "ready")
        for proc in procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        lines = [_expect(proc, lambda line: line.startswith("{")) for proc in procs]
        for proc in procs:
            proc.wait(timeout=60)
        return [float(json.loads(line)["seconds"]) for line in lines]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _expect(proc: subprocess.Popen[str], ok: Any) -> str:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not ok(line):
        proc.kill()
        _, err = proc.communicate()
        tail = (err or "").strip().splitlines()[-3:]
        raise RuntimeError(f"bench worker said {line.strip()!r}: {' | '.join(tail)}")
    return line


def pair_vs_alone(
    command: Sequence[str],
    *,
    rounds: int,
    env: Mapping[str, str] | None = None,
    baseline_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Alternate one worker alone and two at once (and one alone under ``baseline_env``).

    Returns:
        ``ratio``: the median pair time over the median alone time (a round's pair time is its
        slower worker's); with ``baseline_env``, ``alone_vs_baseline``: the median alone time
        over the median alone time under the baseline settings; and every round's seconds.
    """
    alone: list[float] = []
    pair: list[float] = []
    baseline: list[float] = []
    for _ in range(rounds):
        if baseline_env is not None:
            baseline += run_together([command], env=baseline_env)
        alone += run_together([command], env=env)
        pair.append(max(run_together([command, command], env=env)))
    out: dict[str, Any] = {"ratio": median(pair) / median(alone), "alone_s": alone, "pair_s": pair}
    if baseline:
        out.update(alone_vs_baseline=median(alone) / median(baseline), baseline_alone_s=baseline)
    return out


def libgomp_default_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with libgomp's own waiting behaviour, as before the CLI set any default.

    An explicit ``GOMP_SPINCOUNT`` equal to libgomp's default is used because the worker, like the
    CLI, fills in the project's default whenever the variable is missing.
    """
    out = {k: v for k, v in env.items() if k != "OMP_WAIT_POLICY"}
    out["GOMP_SPINCOUNT"] = LIBGOMP_DEFAULT_SPIN
    return out


def concurrent_vs_alone(bench: Bench) -> dict[str, Any]:
    """The headline measurement (skipped with ``BENCH_CONCURRENT=0`` and on GPU benches).

    Besides the pair-vs-alone ratio under the CLI's settings, one worker alone under libgomp's
    defaults gives ``alone_vs_baseline``: what the settings cost a run that has the machine to
    itself.
    """
    if os.environ.get("BENCH_CONCURRENT", "1") == "0" or bench.device.type != "cpu":
        return {"ratio": float("nan"), "skipped": True}
    command = worker_command(bench)
    env = dict(os.environ)
    share = cpu_share()
    if share is not None:
        share.release()  # this process only waits for its workers: not a run to share with
    try:
        result = pair_vs_alone(
            command, rounds=bench.rounds, env=env, baseline_env=libgomp_default_env(env)
        )
    finally:
        if share is not None:
            share.register()
    return {**result, "worker_steps": worker_steps(bench), "cpu_count": os.cpu_count()}
