"""What a SLURM job of the audit runs: the stage command, as a child process (stdlib only).

submitit starts this object in every task of the job (``srun``); it runs ``python -m
lightning_talos <command> ...`` with the job's environment, so the child is the command a user
would type in an ``sbatch`` script: it records the job id in its manifest, takes its stage lock,
resumes from its checkpoint, and (a training stage) saves and requeues the job on SIGUSR1.

SLURM signals every process of the job step, the child included, so this parent only has to
outlive them: it logs SIGUSR1 instead of dying on it (SIGTERM is logged by submitit's own
handler) and waits for the child's exit status.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


class CommandFailedError(RuntimeError):
    """The stage command exited with a non-zero status (the job then ends FAILED)."""


class StageCommand:
    """A picklable ``lightning-talos`` command line, run in ``cwd``.

    Args:
        argv: the arguments after ``lightning-talos``.
        cwd: the folder the audit was started from (relative paths in the config).
    """

    def __init__(self, argv: Sequence[str], cwd: str) -> None:
        self.argv = list(argv)
        self.cwd = cwd

    def __repr__(self) -> str:
        return shlex.join(["lightning-talos", *self.argv])

    def __call__(self) -> int:
        """Run the command; returns 0.

        Raises:
            CommandFailedError: when it exits with another status (its output is in the log).
        """
        signal.signal(signal.SIGUSR1, _note)
        print(f"[job] {self!r}", flush=True)
        code = subprocess.call(
            [sys.executable, "-m", "lightning_talos", *self.argv], cwd=Path(self.cwd)
        )
        if code != 0:
            raise CommandFailedError(f"`{self!r}` exited with status {code}")
        return 0


def _note(signum: int, frame: FrameType | None) -> None:
    print(f"[job] {signal.Signals(signum).name} received: the stage command handles it", flush=True)


def write_start_time(path: str) -> None:
    """Write the time a job's Python started running this into ``path`` (``make bench``:
    submit-to-start)."""
    Path(path).write_text(repr(time.time()))
