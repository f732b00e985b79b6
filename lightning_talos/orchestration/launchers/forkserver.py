"""The fork server ``launcher=local`` starts its jobs from (stdlib only until it runs a job).

Importing torch, Lightning, scikit-learn and the stage runners costs seconds per process, more
than a small stage's training. A multiprocessing fork server imports them once (importing runs
no OpenMP region, so forking afterwards is safe) and forks a process per job, which runs
``python -m lightning_talos ARGS`` (the module as ``__main__``) in it. :func:`warm_up` starts the
server at the beginning of ``audit launcher=local`` so its imports overlap the audit's planning.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import sys
from multiprocessing.context import BaseContext

#: Modules the server imports for every job.
PRELOAD = [
    "torch",
    "pytorch_lightning",
    "sklearn.linear_model",
    "lightning_talos.stages.training",
    "lightning_talos.stages.attacking",
    "lightning_talos.stages.builders",
    "lightning_talos.stages.attack",
    "lightning_talos.stages.references",
]


def fork_server() -> BaseContext:
    """The multiprocessing context whose processes fork from the server with :data:`PRELOAD`."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm_up() -> None:
    """Start the fork server now: it imports :data:`PRELOAD` while the caller goes on."""
    fork_server()
    multiprocessing.forkserver.ensure_running()


def run_command(argv: list[str], log: str) -> None:
    """``python -m lightning_talos ARGV`` in this (forked) process, output to ``log``; the
    process exits with the command's status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.argv = ["lightning-talos", *argv]
    code = 1
    try:
        runpy.run_module("lightning_talos", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        atexit._run_exitfuncs()  # a forked child skips them otherwise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
