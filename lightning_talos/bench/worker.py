"""One process of the ``concurrent_vs_alone`` measurement: a few SimCLR steps, timed on cue.

Run as ``python -m lightning_talos.bench.worker STEPS [key=value ...]``. It applies the CLI's
threading defaults before torch is imported (as ``lightning-talos`` does), builds the bench's
SimCLR module and batches, warms up, prints ``ready``, waits for a line on stdin, trains
``STEPS`` steps and prints ``{"seconds": ...}``. Waiting for the cue lets two workers start their
timed steps together, after both paid for imports and warm-up.
"""

from __future__ import annotations

import json
import sys
import time

from lightning_talos.threads import configure_cpu_threads, start_cpu_share

#: Untimed steps before the cue (the first steps pay for allocations and kernel selection).
WARMUP_STEPS = 2


def main(argv: list[str]) -> None:
    """Run the worker protocol (see the module docstring)."""
    configure_cpu_threads()
    share = start_cpu_share()
    import torch

    from lightning_talos.bench.context import Bench
    from lightning_talos.bench.run import CPU_DEFAULTS
    from lightning_talos.bench.training import PlainStepper
    from lightning_talos.config.load import compose

    steps, overrides = int(argv[0]), argv[1:]
    if not any(a.startswith("experiment=") for a in overrides):
        overrides = [*CPU_DEFAULTS, *overrides]
    bench = Bench(compose(overrides), steps=steps)
    batches = bench.batches([bench.batch_size] * (WARMUP_STEPS + steps))
    stepper = PlainStepper(bench, bench.simclr(), bench.loader(batches), bench.precision)
    for _ in range(WARMUP_STEPS):
        stepper.step()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for _ in range(steps):
        if share is not None:
            share.apply()  # as the training loop does (FairCpuShare)
        stepper.step()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
