"""``lightning-talos bench [key=value ...]``: throughput ratios of the training and attack paths.

Each measurement prints one JSON line (with backbone, image size, batch, precision and device);
a table follows, and everything is written to ``bench.json`` in the current directory
(``$BENCH_OUT`` overrides the path). Without ``experiment=...`` the CPU preset
``synthetic_cpu`` is used (small CNN, 32 px) shrunk to batch 128 and quarters of 512 images (see
:data:`CPU_DEFAULTS`): the whole run takes 1.5 to 4 minutes on 2 shared cores. A GPU run::

    lightning-talos bench trainer.accelerator=gpu trainer.precision=bf16-mixed \\
        model.backbone=resnet18 data.image_size=96 data.batch_size=512 \\
        data.synthetic.quarter_size=15000

Environment: ``BENCH_STEPS`` (timed steps per round, default 8), ``BENCH_ROUNDS`` (alternating
rounds, default 3), ``BENCH_THREADS`` (torch intra-op threads, default 1 on CPU), ``BENCH_OUT``,
``BENCH_CONCURRENT=0`` (skip ``concurrent_vs_alone``, whose worker processes keep the CLI's
threading: torch's default thread count unless ``OMP_NUM_THREADS`` is set), ``BENCH_AUDIT=0``
(skip ``audit_local_vs_sequential``, two small audits: about a minute on 2 cores),
``BENCH_SLURM=0`` (skip ``slurm_submit_to_start_s``: seconds, not a ratio; skipped anyway
without a SLURM cluster). ``demo_predicted_s`` is seconds too: ``make demo``'s wall time
predicted from this machine's SimCLR throughput with every core (:mod:`.demo`).
The numbers are ratios measured side by side, so they hold on a noisy machine; nothing here
asserts on time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from lightning_talos.bench.concurrent import concurrent_vs_alone
from lightning_talos.bench.context import Bench, thread_count
from lightning_talos.bench.demo import demo_time
from lightning_talos.bench.launchers import audit_local_vs_sequential, slurm_submit_to_start
from lightning_talos.bench.other import attacks, augmentation
from lightning_talos.bench.training import data_path, framework_overhead, precision_layout
from lightning_talos.config.load import compose
from lightning_talos.runs.records import git_commit, machine_info

#: Without ``experiment=``: the CPU preset, shrunk so the whole run takes ~2-3 min on 2 cores.
#: Later ``key=value`` arguments override these.
CPU_DEFAULTS = (
    "experiment=synthetic_cpu",
    "data.batch_size=128",
    "data.synthetic.quarter_size=512",
    "mia.label_only_samples=32",
    "mia.aug_samples=256",
)

#: Headline key in bench.json -> (measurement, target, "min" when the ratio must reach it).
HEADLINES: dict[str, tuple[Callable[[Bench], dict[str, Any]], float, str]] = {
    "lightning_vs_plain": (framework_overhead, 0.97, "min"),
    "datapath_vs_model": (data_path, 0.90, "min"),
    "aug_batched_vs_pil": (augmentation, 15.0, "min"),
    "attacks_vs_extraction": (attacks, 1.0, "max"),
    "bf16_channels_last_vs_fp32": (precision_layout, 1.0, "info"),
    "concurrent_vs_alone": (concurrent_vs_alone, 2.3, "max"),
    "audit_local_vs_sequential": (audit_local_vs_sequential, 0.85, "max"),
    "slurm_submit_to_start_s": (slurm_submit_to_start, 5.0, "max"),
    # seconds, not a ratio: `make demo`'s predicted wall time here (README: under 10 minutes)
    "demo_predicted_s": (demo_time, 600.0, "max"),
}


def machine() -> dict[str, Any]:
    """CPU count, device name and library versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    host = machine_info()
    return {
        "cpu": host["cpu"],
        "cpu_capability": host["cpu_capability"],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "gpu": gpu,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def _met(value: float | None, target: float, kind: str) -> bool | None:
    if kind == "info" or value is None:  # None: the measurement was skipped
        return None
    return value >= target if kind == "min" else value <= target


def run_bench(cfg: DictConfig, *, steps: int = 8, rounds: int = 3, out: Path) -> dict[str, Any]:
    """Run every measurement, print a JSON line each, write and return the report.

    Args:
        cfg: the composed config (model, data, trainer precision/accelerator, attack epochs).
        steps: timed steps (or repeats) per round.
        rounds: alternating rounds of the two sides of each ratio.
        out: where to write the JSON report.
    """
    bench = Bench(cfg, steps=steps, warmup=3 if steps > 2 else 1, rounds=rounds)
    torch.set_num_threads(thread_count(bench.device))
    started = time.perf_counter()
    report: dict[str, Any] = {"details": {}, "targets": {}}
    for key, (measure, target, kind) in HEADLINES.items():
        t0 = time.perf_counter()
        result = {**bench.info(), **measure(bench), "wall_s": time.perf_counter() - t0}
        print(json.dumps({"measure": key, **result}, default=float), flush=True)
        ratio = float(result["ratio"])
        report[key] = None if math.isnan(ratio) else ratio
        report["details"][key] = result
        report["targets"][key] = {
            "target": target,
            "kind": kind,
            "met": _met(report[key], target, kind),
        }
    report["machine"] = machine()
    report["config"] = bench.info()
    report["git_commit"] = git_commit()  # for the README's bench block
    report["wall_s"] = time.perf_counter() - started
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(table(report))
    return report


def table(report: dict[str, Any]) -> str:
    """The headline ratios with their targets, one row each."""
    rows = [f"{'measure':30s} {'ratio':>8s} {'target':>9s}  met"]
    for key, t in report["targets"].items():
        sign = {"min": ">=", "max": "<=", "info": "  "}[t["kind"]]
        met = {True: "yes", False: "NO", None: "-"}[t["met"]]
        value = "skipped" if report[key] is None else f"{report[key]:.3f}"
        rows.append(f"{key:30s} {value:>8s} {sign}{t['target']:7.2f}  {met}")
    rows.append(f"total wall time {report['wall_s']:.1f} s")
    return "\n".join(rows)


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(args: list[str]) -> dict[str, Any]:
    """Compose the config (:data:`CPU_DEFAULTS` unless an experiment is given) and run."""
    if not any(a.startswith("experiment=") for a in args):
        args = [*CPU_DEFAULTS, *args]
    _quiet_lightning()
    cfg = compose(args)
    steps = int(os.environ.get("BENCH_STEPS", 8))
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    out = Path(os.environ.get("BENCH_OUT", "bench.json"))
    return run_bench(cfg, steps=steps, rounds=rounds, out=out)
