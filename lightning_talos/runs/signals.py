"""SIGTERM and Ctrl-C: stop at a batch boundary, save ``last.ckpt``, mark the stage, exit 143/130.

How Lightning 2.6 behaves on its own: during ``fit`` its signal connector replaces the SIGTERM
handler with one that sets ``trainer.received_sigterm`` (calling any handler installed before it
too); the loops then raise ``SIGTERMException`` (a ``SystemExit`` with no code) at the next batch
or epoch boundary, so the process exits 0, a scheduler records success, and nothing is saved.
Ctrl-C raises ``KeyboardInterrupt`` wherever the code is, and Lightning turns it into
``sys.exit(1)``. On SLURM with auto-requeue, SIGUSR1 saves ``hpc_ckpt_N.ckpt`` and requeues the job,
and SIGTERM is then "bypassed" (the flag above is still set).

What this module adds:

* ``lightning_talos.interrupts.cli_signals`` (around a CLI command): SIGTERM outside a fit
  raises ``SignalInterruptError``; during a fit it only records the signal, and Lightning's
  handler does the stopping.
* :class:`GracefulInterrupt` (a trainer callback): during training the first Ctrl-C takes the
  SIGTERM path (stop at the next batch boundary, where ``LastCheckpoint`` saves); a second one
  raises ``KeyboardInterrupt`` at once (nothing saved: the weights may be mid-update).
* ``runs/resume.AgreedStop`` (a trainer callback): during training it takes SIGTERM from
  Lightning's handler, so that every DDP rank stops after the same batch (agreed in an
  all-reduce per step) and Lightning's loops then raise ``SIGTERMException`` on all of them.
* :func:`stop_on_signal` (around ``fit``/``validate``): turns the stop into
  ``SignalInterruptError`` and marks the stage's manifest ``interrupted``; the CLI prints one
  line and exits 128 + signal number.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_talos.errors import UserError
from lightning_talos.interrupts import SignalInterruptError, on_main_thread, state
from lightning_talos.runs.checkpoints import read_progress


class GracefulInterrupt(Callback):
    """During training, route the first Ctrl-C through Lightning's SIGTERM stop."""

    def __init__(self) -> None:
        self._previous: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_train_start runs after Lightning registered its handlers, which it restores at
        # teardown; installing earlier (on_fit_start) would make ours the one restored.
        state.in_fit = True
        if on_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        stop = signal.getsignal(signal.SIGTERM)
        if state.received == "SIGINT" or not callable(stop):
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        state.received = "SIGINT"
        stop(signal.SIGTERM, frame)  # Lightning's notifier: stop at the next batch boundary

    def _restore(self) -> None:
        state.in_fit = False
        if self._previous is not None and on_main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


def _signal_of(err: BaseException, trainer: pl.Trainer) -> str | None:
    """The stop signal behind an exception leaving fit/validate (None: not a stop)."""
    if isinstance(err, SignalInterruptError):
        return err.signal_name
    if isinstance(err, SIGTERMException):
        return state.received or "SIGTERM"
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT"
    # Lightning ends a KeyboardInterrupt with sys.exit(1) after marking the trainer interrupted
    if isinstance(err, SystemExit) and trainer.interrupted:
        return state.received or "SIGINT"
    return None


def mark_interrupted(manifest_path: Path, fields: dict[str, Any]) -> None:
    """Set ``status: interrupted`` (plus ``fields``) in a stage manifest, atomically; a manifest
    already marked (by the signal handler, on the way out) is left as it is."""
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("status") == "interrupted":
        return
    manifest.update(status="interrupted", **fields)
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    os.replace(tmp, manifest_path)


@contextmanager
def stop_on_signal(
    trainer: pl.Trainer,
    *,
    manifest_path: Path,
    checkpoint: Path,
) -> Iterator[None]:
    """Turn a stop signal inside the block into :class:`SignalInterruptError`, marking the manifest.

    Args:
        trainer: the trainer whose ``fit``/``validate`` runs in the block.
        manifest_path: the stage's ``manifest.json``.
        checkpoint: the stage's ``last.ckpt`` (reported when present).

    Raises:
        SignalInterruptError: when SIGTERM or Ctrl-C ended the block.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt, SystemExit) as err:
        name = _signal_of(err, trainer)
        if name is None:
            raise
        fields: dict[str, Any] = {"interrupted_by": name}
        detail = "no checkpoint yet"
        if checkpoint.is_file():
            try:
                done = read_progress(checkpoint, rebuild="")
            except UserError:
                detail = f"{checkpoint} is unreadable"
            else:
                fields.update(checkpoint_epochs=done.epochs, checkpoint_step=done.global_step)
                detail = f"{checkpoint}: {done.epochs} full epochs, global step {done.global_step}"
        if trainer.is_global_zero:
            mark_interrupted(manifest_path, fields)
        raise SignalInterruptError(name, detail) from None
