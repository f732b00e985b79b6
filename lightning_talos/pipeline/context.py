"""What every stage of one run shares: the config, the run folder, the pool and the splits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig

from lightning_talos.data.pool import Pool
from lightning_talos.data.registry import load_pool
from lightning_talos.data.splits import Splits, member_split, resolve_splits
from lightning_talos.pipeline.rundir import run_root

#: The model each attacked method is: which training stage produced its classifier.
MODEL_STAGE = {"supervised": "supervised", "contrastive": "linear", "talos": "talos_linear"}

#: The encoder stage a linear stage reads, per method.
ENCODER_STAGE = {"contrastive": "pretrain", "talos": "talos"}


@dataclass
class RunContext:
    """Lazily loaded, shared state of one run (one process may run many stages)."""

    cfg: DictConfig

    @property
    def root(self) -> Path:
        return run_root(self.cfg)

    @cached_property
    def pool(self) -> Pool:
        return load_pool(self.cfg.data, seed=self.cfg.seed)

    @cached_property
    def splits(self) -> Splits:
        """The run's quarters, saved in ``<run>/splits.json`` and never re-drawn."""
        computed = member_split(
            len(self.pool), seed=self.cfg.seed, pool_size=self.cfg.data.pool_size
        )
        return resolve_splits(computed, self.root / "splits.json")

    def stage_dir(self, stage: str, role: str) -> Path:
        """``<run.dir>/<run.name>/<stage>-<role>``."""
        return self.root / f"{stage}-{role}"
