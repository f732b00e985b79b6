"""``last.ckpt`` during training, and reading it back safely.

Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when
training ends (its epoch-end save of ``last`` follows a top-k save, and there is none), so a kill
lost the whole run. :class:`LastCheckpoint` writes it every epoch, optionally every N optimizer
steps or every N minutes, and when a stop signal ends the fit (see ``runs/signals.py``).
Writes go through the trainer's checkpoint IO (``AtomicCheckpointIO``: temporary file + rename),
so a kill during a write leaves the previous file.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_talos.errors import UserError
from lightning_talos.runs.records import LAST


class LastCheckpoint(Checkpoint):
    """Write ``path`` at every epoch end, every ``every_n_steps`` steps, every ``every_minutes``.

    Also writes it when Lightning stops the fit on SIGTERM (``SIGTERMException``; Ctrl-C is
    routed the same way by ``runs/signals.py``), at a batch boundary, so the state is
    consistent. A state already on disk (same global step) is not written twice.

    Args:
        path: the checkpoint file (``<stage>/checkpoints/last.ckpt``).
        every_n_steps: also save after every this many optimizer steps (None = off).
        every_minutes: also save when this many minutes passed since the last save (None = off).

    Raises:
        ValueError: for a non-positive interval.
    """

    def __init__(
        self, path: Path, *, every_n_steps: int | None = None, every_minutes: float | None = None
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if every_minutes is not None and every_minutes <= 0:
            raise ValueError(f"every_minutes must be > 0, got {every_minutes}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.every_minutes = every_minutes
        self._saved_step = -1
        self._clock = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._clock = time.monotonic()
        self._saved_step = trainer.global_step  # a resumed state is already on disk

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        steps_due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0  # type: ignore[operator]
        time_due = False
        if self.every_minutes is not None:
            time_due = time.monotonic() - self._clock >= 60 * self.every_minutes
            # ranks' clocks differ: rank 0 decides, or the ranks would wait on each other's save
            time_due = bool(trainer.strategy.broadcast(time_due))
        if steps_due or time_due:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)
        # Lightning's SLURM requeue saves (SIGUSR1) are superseded by the final last.ckpt; left
        # in place, a later `trainer.validate(model)` on SLURM would load the oldest weights
        # from them (ckpt_path=None means "hpc" there when such a file exists).
        if trainer.is_global_zero:
            for path in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"):
                path.unlink(missing_ok=True)
        trainer.strategy.barrier("lightning_talos.hpc_cleanup")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Only Lightning's stop on signal is saved: it is raised at a batch or epoch boundary.
        # A raw KeyboardInterrupt or an error can land mid-step, with half-updated weights.
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        """Write the checkpoint now (all ranks call it; rank 0 writes)."""
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        if trainer.global_step in (0, self._saved_step):  # nothing trained, or already saved
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
        self._saved_step = trainer.global_step
        self._clock = time.monotonic()


@dataclass(frozen=True)
class Progress:
    """Where a checkpoint stands: full epochs done and optimizer steps taken."""

    epochs: int
    global_step: int


def read_progress(path: Path, *, rebuild: str) -> Progress:
    """Epochs and global step recorded in a Lightning checkpoint (memory-mapped: weights unread).

    Also proves the file is a complete checkpoint (a truncated zip or garbage fails here), so
    callers check it before they touch the stage's manifest.

    Args:
        path: the checkpoint file.
        rebuild: the command that rebuilds it, named in the error.

    Raises:
        UserError: one line naming the file and ``rebuild`` when it is unreadable.
    """
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; its index is at the end
        raise UserError(
            f"corrupt checkpoint {path} (truncated, or not a PyTorch checkpoint); "
            f"rebuild it: {rebuild}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epoch = state["loops"]["fit_loop"]["epoch_progress"]["current"]
        # `processed` counts epochs whose training ended; `completed` lags by one when the
        # save happened in on_train_epoch_end (Lightning increments it after the hooks).
        progress = Progress(epochs=int(epoch["processed"]), global_step=int(state["global_step"]))
        if not isinstance(state.get("state_dict"), dict):
            raise KeyError("state_dict")
    except Exception as err:  # truncated, garbage or foreign: one line, never a traceback
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"corrupt checkpoint {path} ({type(err).__name__}: {reason}); rebuild it: {rebuild}"
        ) from None
    return progress


def resume_checkpoint(stage_dir: Path, *, rebuild: str) -> tuple[Path, Progress] | None:
    """The newest checkpoint of a stage to resume from, with its progress (None when none).

    Candidates are ``checkpoints/last.ckpt`` and the ``hpc_ckpt_N.ckpt`` files Lightning writes
    in the stage folder on SLURM's requeue signal (SIGUSR1); the one with the most steps wins,
    so a requeued job continues from whichever was written last.

    Raises:
        UserError: when a candidate is unreadable (naming it and ``rebuild``).
    """
    candidates = [stage_dir / LAST, *sorted(stage_dir.glob("hpc_ckpt_*.ckpt"))]
    found = [(p, read_progress(p, rebuild=rebuild)) for p in candidates if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda item: item[1].global_step)
