"""What every stage of one run shares: the config, the run folder, the pool and the splits."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lightning_talos.data.pool import Pool
from lightning_talos.data.registry import load_pool
from lightning_talos.data.splits import Splits, member_split, resolve_splits
from lightning_talos.runs.folder import StageFolder
from lightning_talos.runs.settings import run_root


class RunContext:
    """Shared state of one run (one process may run many stages).

    Args:
        cfg: the composed config.
        pool: the loaded pool, when the caller already has it (loaded lazily otherwise).
        splits: the run's quarters, likewise.
    """

    def __init__(
        self, cfg: DictConfig, *, pool: Pool | None = None, splits: Splits | None = None
    ) -> None:
        self.cfg = cfg
        self._pool = pool
        self._splits = splits
        self._folders: dict[str, StageFolder] = {}

    @property
    def root(self) -> Path:
        return run_root(self.cfg)

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = load_pool(self.cfg.data, seed=self.cfg.seed)
        return self._pool

    @property
    def splits(self) -> Splits:
        """The run's quarters, saved in ``<run>/splits.json`` and never re-drawn."""
        if self._splits is None:
            computed = member_split(
                len(self.pool), seed=self.cfg.seed, pool_size=self.cfg.data.pool_size
            )
            self._splits = resolve_splits(computed, self.root / "splits.json")
        return self._splits

    def stage_dir(self, stage: str, key: str) -> Path:
        """``<run.dir>/<run.name>/<stage>-<key>`` (key: a role, or the attacked method)."""
        return self.root / f"{stage}-{key}"

    def folder(self, stage: str, key: str) -> StageFolder:
        """The folder of ``stage`` for ``key``: one object per folder and run, so a command
        reads each manifest once (and sees what it wrote since)."""
        return self.folder_named(f"{stage}-{key}")

    def folder_named(self, name: str) -> StageFolder:
        """The stage folder ``<run>/<name>`` (see :meth:`folder`)."""
        found = self._folders.get(name)
        if found is None:
            found = self._folders[name] = StageFolder(self.root / name)
        return found

    def forget_folders(self) -> None:
        """Read every manifest anew on next use (after other processes wrote them)."""
        self._folders.clear()
