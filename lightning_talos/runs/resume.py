"""Exact resume: what a checkpoint needs beyond Lightning's state, and a stop all ranks agree on.

Lightning's checkpoint holds the weights, optimiser and scheduler states and the loop counters
(epoch, batch within the epoch, global step). A run resumed from it is only the run that was
interrupted if three more things continue where they stopped:

* **the data order**: the rest of the interrupted epoch must be the samples an uninterrupted
  run would draw, in its order (``data/resumable.py``: the order of an epoch is a function of
  the seed and the epoch; here the position within it is saved and the samplers are set to it);
* **the random streams** of the training step: torch's CPU generator, every CUDA generator,
  NumPy's and Python's global ones. The batched SimCLR augmentation, dropout and Opacus' DP
  noise all draw from them (the data side draws from none of them);
* **the open logging window** (``modules/window.py``): logged training scalars are means over
  ``log_every_n_steps`` steps, and a checkpoint can fall inside a window.

:class:`ExactResume` writes them into the checkpoint (``checkpoint["exact_resume"]``, every
rank's random states and window gathered to rank 0, which writes the file) and puts them back
when the resumed fit starts, after Lightning has restored its own state.

:class:`AgreedStop` makes a stop signal end every DDP rank after the same batch: a signal only
records itself (and the launcher forwards it to the ranks it started); at every batch end the
ranks combine their flags in one all-reduce, and if any rank was signalled they all set
Lightning's stop flag there, so its loops raise ``SIGTERMException`` at the end of that batch
on every rank, ``LastCheckpoint`` saves one checkpoint of that step (rank 0 writes it) and
every rank exits 143 through ``runs/signals.py``. Lightning's
own handler instead stops each rank at the first batch end after the signal reached it, which
under DDP can be different batches (a rank then waits forever in the next all-reduce).
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import warnings
from functools import partial
from types import FrameType
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from lightning_talos.interrupts import on_main_thread, state

log = logging.getLogger(__name__)

#: Where :class:`ExactResume` keeps its state in a Lightning checkpoint.
KEY = "exact_resume"

# Lightning warns on every resume inside an epoch that the loader is "not resumable" (it
# looks for a loader with ``state_dict``); ours resume through ExactResume, so the warning
# would be false.
warnings.filterwarnings(
    "ignore",
    message="You're resuming from a checkpoint that ended before the epoch ended",
    category=PossibleUserWarning,
)


def rng_states() -> dict[str, Any]:
    """This process's global random states, as types ``torch.load(weights_only=True)`` reads.

    Returns:
        ``torch`` (uint8 tensor), ``cuda`` (one uint8 tensor per visible device; empty without
        CUDA), ``numpy`` (MT19937 keys as an int64 tensor, position, Gaussian cache) and
        ``python`` (``random.getstate()``: tuples of ints).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back states saved by :func:`rng_states` (CUDA only where devices match)."""
    torch.set_rng_state(states["torch"])
    cuda = states["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def data_position(trainer: pl.Trainer) -> dict[str, int]:
    """Where the training data stands: the epoch the next batch belongs to and how many of its
    batches were trained on (Lightning's loop counters: they count steps taken, not batches
    the loader has already fetched ahead)."""
    done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
    epoch = int(trainer.current_epoch)
    if done >= trainer.num_training_batches:  # a saved epoch end: the next epoch, from its start
        return {"epoch": epoch + 1, "batches": 0}
    return {"epoch": epoch, "batches": done}


def _gather(trainer: pl.Trainer, obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (all ranks must call it)."""
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(out, obj)
        return out
    return [obj]


class ExactResume(Callback):
    """Save and restore the data position, random states and logging window (module doc)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        window = getattr(pl_module, "window", None)
        checkpoint[KEY] = {
            "data": data_position(trainer),
            "rng": _gather(trainer, rng_states()),
            "window": _gather(trainer, window.state_dict() if window is not None else None),
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get(KEY)
        if self._pending is None:
            log.warning("checkpoint without exact-resume state: the rest of training may differ")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The last hook before the first training step, after Lightning restored its state and
        # built the loaders; nothing after it draws from the global generators before the step.
        saved, self._pending = self._pending, None
        if saved is None:
            return
        rank = trainer.global_rank
        if len(saved["rng"]) != trainer.world_size:
            log.warning(
                "resuming %d ranks from a checkpoint of %d: data order and random streams "
                "continue only approximately",
                trainer.world_size,
                len(saved["rng"]),
            )
            rank = 0
        self._resume_data(trainer, saved["data"])
        window = getattr(pl_module, "window", None)
        if window is not None and saved["window"][rank] is not None:
            window.load_state_dict(saved["window"][rank], device=pl_module.device)
        set_rng_states(saved["rng"][rank])

    @staticmethod
    def _resume_data(trainer: pl.Trainer, position: dict[str, int]) -> None:
        """Point the training samplers at ``position`` and restart the loader's iterator (built
        before the checkpoint was loaded, at the epoch's start)."""
        fit_loop = trainer.fit_loop
        loaders = fit_loop._combined_loader.flattened if fit_loop._combined_loader else []
        found = False
        for loader in loaders:
            for name in ("sampler", "batch_sampler"):
                sampler = getattr(loader, name, None)
                if callable(getattr(sampler, "resume_at", None)):
                    sampler.resume_at(position["epoch"], position["batches"])
                    found = True
        if not found:
            log.warning("the training loader cannot resume inside an epoch: fresh order")
            return
        if fit_loop._data_fetcher is not None:
            iter(fit_loop._data_fetcher)


class AgreedStop(Callback):
    """Stop every rank after the same batch when any of them got SIGTERM (or Ctrl-C).

    See the module doc. Installed for the training part of a fit only; Lightning's own handler
    (restored after) covers set-up and validation.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._forwarded = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._forwarded = False
        if on_main_thread():
            self._previous = signal.signal(signal.SIGTERM, partial(self._on_signal, trainer))
        # a signal during set-up (Lightning's handler recorded it): stop before the first step,
        # with nothing saved (LastCheckpoint skips a save at the step it started from)
        if self._agreed(trainer):
            raise SIGTERMException

    def _on_signal(self, trainer: pl.Trainer, signum: int, frame: FrameType | None) -> None:
        state.received = state.received or "SIGTERM"
        launcher = trainer.strategy.launcher
        if not self._forwarded and launcher is not None:
            self._forwarded = True
            launcher.kill(signum)  # the ranks this process started (none elsewhere)

    @staticmethod
    def _agreed(trainer: pl.Trainer) -> bool:
        """Whether any rank got a stop signal (one all-reduce under DDP; all ranks call it)."""
        local = state.received is not None or trainer.received_sigterm
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            flag = torch.tensor([int(local)], device=trainer.strategy.root_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return local

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._stop_if_agreed(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_agreed(trainer)  # a signal during the epoch-end validation

    @staticmethod
    def _stop_if_agreed(trainer: pl.Trainer) -> None:
        """On every rank at once: raise Lightning's flag, so that its loops raise
        ``SIGTERMException`` at the end of this batch (or epoch), after the step's metrics went
        to the logger; ``LastCheckpoint.on_exception`` then saves this step."""
        if AgreedStop._agreed(trainer):
            trainer._signal_connector.received_sigterm = True

    def _restore(self) -> None:
        if self._previous is not None and on_main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


def wait_for_ranks(trainer: pl.Trainer, *, timeout: float = 120.0) -> list[int]:
    """Exit statuses of the ranks this process launched (after they exit; empty when none).

    The launcher (rank 0 of Lightning's subprocess launcher) returns only when the whole group
    has stopped, so a scheduler sees the job end after its last rank.
    """
    procs = getattr(trainer.strategy.launcher, "procs", None) or []
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
