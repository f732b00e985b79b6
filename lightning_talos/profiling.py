"""Where a stage's wall time goes on the host: CPU time, threads, and the hypervisor's steal.

Two 2-core machines of one CPU class can run the same stage at very different speeds: one has
fewer cores busy (threads waiting on each other, another process on the machine), or its
virtual CPUs are not its own (the hypervisor runs other guests on them: Linux counts that time
as *steal*). A stage records what it saw (:func:`host_profile`), so a slow run says why.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: The machine-wide CPU counters (``cpu`` line of ``/proc/stat``; absent off Linux).
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class HostSample:
    """One reading of the clocks a profile compares.

    Attributes:
        wall: seconds on a monotonic clock.
        cpu: CPU seconds of this process and its waited-for children (user + system).
        steal: machine-wide clock ticks the hypervisor gave to others (None off Linux).
        ticks: machine-wide clock ticks of every kind (None off Linux).
    """

    wall: float
    cpu: float
    steal: int | None
    ticks: int | None


def _cpu_ticks(stat: Path = PROC_STAT) -> tuple[int | None, int | None]:
    """(steal, total) ticks from ``/proc/stat``'s first line, or (None, None) if unreadable."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None, None
    if len(fields) < 9 or fields[0] != "cpu":
        return None, None
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    # counted in user and nice, so the total is the first eight.
    counts = [int(v) for v in fields[1:9]]
    return counts[7], sum(counts)


def host_sample(stat: Path = PROC_STAT) -> HostSample:
    """Read the wall clock, this process's CPU time and the machine's steal counter now."""
    times = os.times()
    steal, ticks = _cpu_ticks(stat)
    cpu = times.user + times.system + times.children_user + times.children_system
    return HostSample(time.perf_counter(), cpu, steal, ticks)


def host_profile(start: HostSample, end: HostSample, *, threads: int) -> dict[str, float | None]:
    """What happened between two samples.

    Args:
        start, end: :func:`host_sample` readings, ``end`` taken later.
        threads: torch's intra-op threads during the stage.

    Returns:
        ``wall_s``; ``cpu_s`` (this process); ``cores_busy`` (``cpu_s / wall_s``: about
        ``threads`` when every thread computes all the time); ``threads``; ``steal_fraction``
        (share of the machine's CPU time the hypervisor gave to other guests; None when
        unknown).
    """
    wall = max(end.wall - start.wall, 1e-9)
    cpu = end.cpu - start.cpu
    steal = None
    if None not in (start.steal, end.steal, start.ticks, end.ticks):
        ticks = end.ticks - start.ticks  # type: ignore[operator]
        steal = (end.steal - start.steal) / ticks if ticks > 0 else 0.0  # type: ignore[operator]
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cores_busy": round(cpu / wall, 3),
        "threads": threads,
        "steal_fraction": None if steal is None else round(steal, 4),
    }
