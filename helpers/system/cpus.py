"""Which CPUs a process may use, and how many of them are free now: every thread pool is sized from here.

Stdlib only: the servers' images ship it. On Linux the affinity mask and a cgroup CPU quota
(``docker run --cpus``) bound what a process may use and ``/proc/stat`` says what others keep busy;
elsewhere (macOS, Windows) ``os.cpu_count()`` stands in and nothing is known to be busy.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def usable_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity where the OS has one, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota (``docker run --cpus``)."""
    cpus = len(usable_cpus())
    for quota_file, period_file in ((cgroup / "cpu.max", None),  # cgroup v2: "<quota> <period>"
                                    (cgroup / "cpu" / "cpu.cfs_quota_us", cgroup / "cpu" / "cpu.cfs_period_us")):
        try:
            fields = quota_file.read_text().split()
            quota, period = fields[0], (fields[1] if period_file is None else period_file.read_text().strip())
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, int(int(quota) / int(period) + 0.5)))
    return cpus


def _busy_jiffies(cpus: set[int]) -> tuple[int, int] | None:
    """(all, busy) jiffies since boot of ``cpus``, from /proc/stat's per-CPU lines; None without /proc."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(x) for x in fields[:8]]  # guest time is already counted in user
            total, busy = total + sum(ticks), busy + sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait
    return total, busy


def free_cpus(sample_s: float = 1.0) -> int:
    """How many threads this process should run now: the CPUs it may use (affinity and cgroup quota) less
    the share of them other processes kept busy over the last ``sample_s`` seconds, at least one.

    On 2 cores shared with another busy process, two torch threads ran 3x slower than one.
    """
    cpus = usable_cpus()
    before = _busy_jiffies(cpus)
    allowed = available_cpus()
    if before is None:
        return allowed
    time.sleep(sample_s)
    after = _busy_jiffies(cpus)
    busy = (after[1] - before[1]) / max(1, after[0] - before[0]) * len(cpus)
    return max(1, min(allowed, round(allowed - busy)))
