"""GPU-hours a job would take: epochs times a measured per-epoch cost, else its time limit.

The per-epoch cost of a training stage comes from a finished run of the same stage with the
same settings (``config_hash`` of its manifest, which leaves epochs out) under ``run.dir``: its
``wall_time_s / epochs_completed``. Without one, the estimate is the bound the job's resources
set (GPUs times time limit).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from lightning_talos.config.load import hash_dict
from lightning_talos.orchestration.launchers.jobs import TRAIN, Job, Planned
from lightning_talos.runs.settings import stage_config
from lightning_talos.stages.registry import TrainStage


@dataclass(frozen=True)
class Estimate:
    """GPU-hours of one job: ``measured`` when every task had a per-epoch cost, else the bound."""

    gpu_hours: float
    measured: bool
    note: str


def job_gpus(cfg: DictConfig, job: Job) -> int:
    res = cfg.launcher.train if job.kind == TRAIN else cfg.launcher.attack
    return int(res.nodes) * int(res.gpus_per_node)


def estimate(cfg: DictConfig, planned: Planned, job: Job) -> Estimate:
    """GPU-hours of ``job``'s tasks."""
    gpus = job_gpus(cfg, job)
    res = cfg.launcher.train if job.kind == TRAIN else cfg.launcher.attack
    bound = gpus * len(job.tasks) * int(res.time_min) / 60
    if gpus == 0:
        return Estimate(0.0, True, "no GPU")
    seconds, notes = 0.0, []
    for task in job.tasks:
        for key in task.nodes:
            unit, node, _ = planned.nodes[key]
            stage = node.stage
            if not isinstance(stage, TrainStage):
                return Estimate(bound, False, f"at most {bound:.2f} (time limit)")
            per_epoch = per_epoch_seconds(unit.cfg, stage)
            if per_epoch is None:
                return Estimate(bound, False, f"at most {bound:.2f} (no earlier run; time limit)")
            epochs = stage.epochs(unit.cfg)
            seconds += per_epoch * epochs
            notes.append(f"{stage.name} {per_epoch:.1f}s/epoch x {epochs}")
    hours = gpus * seconds / 3600
    return Estimate(hours, True, "measured: " + ", ".join(dict.fromkeys(notes)))


def per_epoch_seconds(cfg: DictConfig, stage: TrainStage) -> float | None:
    """Median seconds per epoch of finished runs of ``stage`` with these settings under
    ``run.dir`` (runs and their seed folders), or None."""
    wanted = hash_dict(stage_config(cfg, stage.sections))
    base = Path(cfg.run.dir).expanduser()
    found = []
    for pattern in (f"*/{stage.name}-*/manifest.json", f"*/*/{stage.name}-*/manifest.json"):
        for path in base.glob(pattern):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            epochs, wall = manifest.get("epochs_completed") or 0, manifest.get("wall_time_s")
            same = manifest.get("stage") == stage.name and manifest.get("config_hash") == wanted
            if same and manifest.get("status") == "done" and epochs > 0 and wall:
                found.append(float(wall) / epochs)
    return statistics.median(found) if found else None
