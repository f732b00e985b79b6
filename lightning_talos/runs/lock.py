"""One process at a time per run folder: an OS file lock plus a note of who holds it.

Two commands writing the same run would train the same stages twice and race on manifests. The
lock is an OS lock (``flock`` through the ``filelock`` package), so the kernel drops it when its
process dies, even by ``kill -9``: a stale lock never blocks a later run. The holder's pid, host,
command and start time go to a note beside the lock, so a second command can say who holds it.

The CLI stops the second command (one line, exit 2) rather than waiting: a queued duplicate of a
long audit is more often a mistake than an intent, and re-running it later costs nothing since
finished stages are reused. :func:`run_lock` can also wait, for callers that want to queue.

Two levels, so that an audit's stages can run side by side as separate jobs (``launcher=local``
or ``slurm``): ``audit`` and ``report`` hold the **run lock** (``<run>/.lock``) while they plan,
submit or write ``results.json`` (a ``launcher=none`` or ``local`` audit: for its whole run), so
two audits of one run never overlap; each stage runner holds its **stage lock**
(``<run>/.locks/<stage>-<key>.lock``) while it trains or attacks, so one stage is never written
by two processes, whichever commands started them.

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
#: Folder of the stage locks inside a run folder.
STAGE_LOCKS = ".locks"

#: Commands that hold the run lock; the registry's training and attack stages (and
#: ``references``) hold the lock of each stage they write instead (see the runners).
RUN_LOCKED_COMMANDS = frozenset({"audit", "report"})

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
    return holder_note(root / HOLDER_NAME)


def holder_note(path: Path) -> dict[str, object] | None:
    """A lock holder's note (pid, host, command, since), or None."""
    try:
        return json.loads(path.read_text())
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
    with _hold(root, root / LOCK_NAME, root / HOLDER_NAME, f"run {root}", wait=wait):
        yield


def stage_lock_path(root: Path, name: str) -> Path:
    """``<run>/.locks/<name>.lock``: the lock of stage folder ``name``."""
    return root / STAGE_LOCKS / f"{name}.lock"


@contextmanager
def stage_lock(root: Path, name: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock of stage folder ``<root>/<name>`` for the duration of the block (rank 0
    only: DDP children run inside their launcher's lock).

    Raises:
        UserError: when ``wait`` is False and another process writes that stage (naming it).
    """
    if launcher_rank() != 0:
        yield
        return
    lock = stage_lock_path(root, name)
    note = lock.with_name(f"{name}.holder.json")
    with _hold(lock.parent, lock, note, f"stage {root / name}", wait=wait):
        yield


@contextmanager
def _hold(
    folder: Path, lock_path: Path, note_path: Path, what: str, *, wait: bool
) -> Iterator[None]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create run folder {folder}: {err.strerror or err}") from None
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise UserError(
                f"{what} is in use by {_describe(holder_note(note_path))}; wait for it to finish "
                "(or stop it), then re-run: finished stages are reused"
            ) from None
        log.warning("waiting for %s, in use by %s", what, _describe(holder_note(note_path)))
        lock.acquire()
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["lightning-talos", *sys.argv[1:]]),
        "since": time.time(),
    }
    try:
        note_path.write_text(json.dumps(note))
        yield
    finally:
        note_path.unlink(missing_ok=True)
        lock.release()


def command_lock(command: str, args: Sequence[str]) -> AbstractContextManager[None]:
    """The lock a CLI command takes: its run folder's for ``audit`` and ``report``, on rank 0
    only; a no-op otherwise (stage commands lock each stage they write).

    Args:
        command: the CLI command (``audit``, ``pretrain``, ...).
        args: its arguments: ``key=value`` overrides and ``--`` flags (a ``--dry-run`` writes
            nothing and takes no lock; other flags are not part of the config).

    Raises:
        UserError: for a bad config (the command would fail the same way).
    """
    if command not in RUN_LOCKED_COMMANDS or "--dry-run" in args or launcher_rank() != 0:
        return nullcontext()
    from lightning_talos.config.load import compose
    from lightning_talos.runs.settings import run_root

    overrides = [a for a in args if not a.startswith("--")]
    return run_lock(run_root(compose(overrides)), wait=False)
