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

import os
import sys
from collections.abc import MutableMapping

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
