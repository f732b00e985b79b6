"""Stop signals at the CLI level (no Lightning import: every command installs this).

``cli_signals`` wraps one command: SIGTERM outside a training fit raises
:class:`SignalInterruptError` at once; during a fit it only records the signal, because
Lightning's own handler (which calls this one after setting ``trainer.received_sigterm``) stops
the loops at the next batch boundary and ``runs/signals.py`` saves and reports. The CLI
turns the error into one line and exit status 128 + signal number (143 SIGTERM, 130 Ctrl-C).
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

#: Exit status per signal name (the shell's 128 + signal number).
EXIT_CODES = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}


class SignalInterruptError(Exception):
    """A stop signal ended the command.

    Args:
        signal_name: ``SIGTERM`` or ``SIGINT``.
        detail: what was saved (checkpoint, epochs, step), for the one-line message.
    """

    def __init__(self, signal_name: str, detail: str = "") -> None:
        super().__init__(f"interrupted by {signal_name}" + (f" ({detail})" if detail else ""))
        self.signal_name = signal_name
        self.exit_code = EXIT_CODES.get(signal_name, 1)


class State:
    """What the handlers of one process share."""

    received: str | None = None  # the first stop signal seen
    in_fit: bool = False  # Lightning's stop-at-a-batch-boundary path is live


state = State()


def on_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    return threading.current_thread() is threading.main_thread()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    state.received = state.received or "SIGTERM"
    if not state.in_fit:  # during a fit Lightning's own handler, which calls this one, stops
        raise SignalInterruptError("SIGTERM")


@contextmanager
def cli_signals() -> Iterator[None]:
    """Install the SIGTERM handler for one CLI command; restore the previous one after."""
    if not on_main_thread():
        yield
        return
    state.received, state.in_fit = None, False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_line(err: SignalInterruptError | None, argv: Sequence[str]) -> str:
    """The one line printed on a stop: what happened and the command that resumes."""
    what = str(err) if err is not None else "interrupted by SIGINT"
    return f"{what}; re-run the same command to resume: lightning-talos {shlex.join(argv)}"
