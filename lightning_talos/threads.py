"""CPU threading defaults, set before torch loads its OpenMP runtime.

The pip builds of torch use GNU OpenMP (libgomp). After each parallel region its worker threads
spin for a while before sleeping, so the next region starts without a wake-up. On a machine
shared with another job those spinning threads burn the cores the other job's threads are
waiting for, and both jobs slow down far beyond a fair share (the issue measured 6.9x for two
runs on two cores). Capping the spin (``GOMP_SPINCOUNT``) keeps the short waits between
back-to-back operations cheap while a waiting thread gives its core up soon after.
``OMP_WAIT_POLICY=PASSIVE`` (no spinning at all) is fair too, but slows a run alone.

libgomp reads these variables once, when torch is first imported, so :func:`configure_cpu_threads`
must run before that; the CLI's ``main`` calls it first. Values the user set win, and the thread
count is left alone: Lightning divides the cores between DDP processes itself when
``OMP_NUM_THREADS`` is unset.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

#: Spin iterations of an idle libgomp thread before it sleeps (libgomp's default is 300,000;
#: see the README's "Speed" section for the measurements behind this value).
SPIN_COUNT = "10000"

#: Variables that express a user's own choice of waiting behaviour.
_USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure_cpu_threads(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the fair-waiting default in ``environ`` unless the user chose one or torch is loaded.

    Args:
        environ: the environment to update (default ``os.environ``).

    Returns:
        The variables set (empty when the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``,
        or when torch is already imported and the setting could no longer take effect).
    """
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or any(name in env for name in _USER_CHOICES):
        return {}
    env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {"GOMP_SPINCOUNT": SPIN_COUNT}


class CpuShare:
    """This process's fair share of the cores among the ``lightning-talos`` runs on the machine.

    Capping the spin makes a waiting thread give its core up, but two runs that each keep one
    OpenMP thread per core still oversubscribe the machine: every parallel region then waits for
    a thread the scheduler has parked (measured: two bench workers in bf16 on 2 cores ran 89x
    slower than one alone). So each run registers itself (a file named by its pid in a shared
    folder) and trains with ``max(1, cores // live runs)`` threads, re-checked during training:
    a run started later takes its share and the earlier one gives part of its own up; a run
    alone keeps every core. A user's ``OMP_NUM_THREADS`` turns this off.

    Args:
        folder: where runs register (default: ``<tmp>/lightning_talos-cpu-share``).
        cores: cores to share (default: the cores this process may run on).
    """

    def __init__(self, folder: Path | None = None, cores: int | None = None) -> None:
        self.folder = folder or Path(tempfile.gettempdir()) / "lightning_talos-cpu-share"
        self.cores = cores or available_cores()
        self.pid = os.getpid()
        self._applied: int | None = None

    def register(self) -> None:
        """Count this process among the runs (until :meth:`release` or its exit)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(self.pid)).touch()
        atexit.register(self.release)

    def release(self) -> None:
        (self.folder / str(self.pid)).unlink(missing_ok=True)

    def live_runs(self) -> int:
        """Registered processes still alive (files of dead ones are removed); at least 1."""
        live = 0
        for entry in self.folder.glob("[0-9]*"):
            if _alive(int(entry.name)):
                live += 1
            else:
                entry.unlink(missing_ok=True)
        return max(1, live)

    def threads(self) -> int:
        return max(1, self.cores // self.live_runs())

    def apply(self) -> int:
        """Set torch's intra-op threads to the current share; returns it."""
        import torch

        share = self.threads()
        if share != self._applied:
            torch.set_num_threads(share)
            self._applied = share
        return share


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; every core off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


_SHARE: CpuShare | None = None


def cpu_share() -> CpuShare | None:
    """The process's registered :class:`CpuShare`, or None when the user set the thread count
    (``OMP_NUM_THREADS``, read now: set after a share started, it still wins) or the CLI did not
    set the threading defaults up."""
    return None if "OMP_NUM_THREADS" in os.environ else _SHARE


def start_cpu_share(environ: MutableMapping[str, str] | None = None) -> CpuShare | None:
    """Register this process for a fair share of the cores, unless ``OMP_NUM_THREADS`` is set."""
    global _SHARE
    env = os.environ if environ is None else environ
    if "OMP_NUM_THREADS" in env:
        return None
    if _SHARE is None:
        _SHARE = CpuShare()
        _SHARE.register()
    return _SHARE
