"""One process at a time per run folder: an OS file lock plus a note of who holds it.

Two commands writing the same run would train the same stages twice and race on manifests. The
lock is an OS lock (``flock`` through the ``filelock`` package), so the kernel drops it when its
process dies, even by ``kill -9``: a stale lock never blocks a later run. The holder's pid, host,
command and start time go to a note beside the lock, so a second command can say who holds it.

The CLI stops the second command (one line, exit 2) rather than waiting: a queued duplicate of a
long audit is more often a mistake than an intent, and re-running it later costs nothing since
finished stages are reused. :func:`run_lock` can also wait, for callers that want to queue.

Under DDP every rank re-runs the command; only the launching rank (rank 0) takes the lock, the
others run inside it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from filelock import FileLock, Timeout

from lightning_talos.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.holder.json"

#: Commands that never write into a run folder; every other one (the registry's training and
#: attack stages, ``audit``, ``report``) takes the lock.
# audit-encoder takes the lock itself, once its inputs are checked (bad input writes nothing).
UNLOCKED_COMMANDS = frozenset({"data", "compare", "bench", "audit-encoder"})

#: Environment variables a launcher sets to a process's rank, in the order Lightning reads them.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def launcher_rank() -> int:
    """This process's rank as its launcher set it (0 when none did).

    Read from the environment, not from ``torch.distributed``: the lock is taken before any
    process group exists.
    """
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def holder(root: Path) -> dict[str, object] | None:
    """The note the current (or last) holder of ``root``'s lock left, or None."""
    try:
        return json.loads((root / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _describe(note: dict[str, object] | None) -> str:
    if not note:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(note.get("since", 0))))
    return f"pid {note.get('pid')} on {note.get('host')} ({note.get('command')}, since {since})"


@contextmanager
def run_lock(root: Path, *, wait: bool) -> Iterator[None]:
    """Hold the OS lock of run folder ``root`` for the duration of the block.

    Args:
        root: the run folder (``<run.dir>/<run.name>``); created if missing.
        wait: block until the holder finishes (logging who it is once), instead of stopping.

    Raises:
        UserError: when ``wait`` is False and another process holds the lock (naming it: pid,
            host, command, start time), or when the run folder cannot be created.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create run folder {root}: {err.strerror or err}") from None
    lock = FileLock(root / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise UserError(
                f"run {root} is in use by {_describe(holder(root))}; wait for it to finish "
                "(or stop it), then re-run: finished stages are reused"
            ) from None
        log.warning("waiting for run %s, in use by %s", root, _describe(holder(root)))
        lock.acquire()
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["lightning-talos", *sys.argv[1:]]),
        "since": time.time(),
    }
    try:
        (root / HOLDER_NAME).write_text(json.dumps(note))
        yield
    finally:
        (root / HOLDER_NAME).unlink(missing_ok=True)
        lock.release()


def command_lock(command: str, args: Sequence[str]) -> AbstractContextManager[None]:
    """The lock a CLI command takes: its run folder's, on rank 0 only; a no-op otherwise.

    Args:
        command: the CLI command (``audit``, ``pretrain``, ...).
        args: its arguments: ``key=value`` overrides and ``--`` flags (a ``--dry-run`` writes
            nothing and takes no lock; other flags are not part of the config).

    Raises:
        UserError: for a bad config (the command would fail the same way).
    """
    if command in UNLOCKED_COMMANDS or "--dry-run" in args or launcher_rank() != 0:
        return nullcontext()
    from lightning_talos.config.load import compose
    from lightning_talos.pipeline.rundir import run_root

    overrides = [a for a in args if not a.startswith("--")]
    return run_lock(run_root(compose(overrides)), wait=False)
