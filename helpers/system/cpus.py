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


THREADS_VARIABLE = "SLM_LAB_THREADS"  # a learner's own thread count for every backend, e.g. SLM_LAB_THREADS=4


def _jiffies(cpus: set[int]) -> dict[int, tuple[int, int]] | None:
    """CPU -> (all, busy) jiffies since boot, from /proc/stat's per-CPU lines; None without /proc."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(x) for x in fields[:8]]  # guest time is already counted in user
            out[int(name[3:])] = (sum(ticks), sum(ticks) - ticks[3] - ticks[4])  # less idle and iowait
    return out


_last_sample: list = [0.0, {}]  # (when, busy_share): one sample serves the backends started within seconds


def busy_share(sample_s: float = 1.0, reuse_s: float = 10.0) -> dict[int, float]:
    """CPU -> the share of ``sample_s`` that other processes kept it busy (0 idle .. 1 busy), for the CPUs this
    process may use; every CPU idle where the OS has no /proc/stat (macOS, Windows). A sample younger than
    ``reuse_s`` seconds is reused."""
    if time.monotonic() - _last_sample[0] < reuse_s:
        return _last_sample[1]
    cpus = usable_cpus()
    before = _jiffies(cpus)
    if before is None:
        return dict.fromkeys(sorted(cpus), 0.0)
    time.sleep(sample_s)
    after = _jiffies(cpus)
    share = {cpu: (after[cpu][1] - before[cpu][1]) / max(1, after[cpu][0] - before[cpu][0]) for cpu in sorted(before)}
    _last_sample[:] = time.monotonic(), share
    return share


def free_cpus(sample_s: float = 1.0, busy: dict[int, float] | None = None) -> int:
    """How many threads this process should run now: the CPUs it may use (affinity and cgroup quota) less
    the share of them other processes kept busy over the last ``sample_s`` seconds, at least one.

    On 2 cores shared with another busy process, two torch threads ran 3x slower than one.
    """
    busy = busy_share(sample_s, reuse_s=0) if busy is None else busy
    allowed = available_cpus()
    return max(1, min(allowed, round(allowed - sum(busy.values()))))


def thread_cpus(sample_s: float = 1.0) -> list[int]:
    """The CPUs a backend starting now should run its threads on, least busy first: as many as ``free_cpus``
    (or ``SLM_LAB_THREADS``). A thread pool larger than the free cores stalls: llama.cpp's and OpenMP's workers
    wait for each other by spinning, so one worker that loses its core holds up every token."""
    busy = busy_share(sample_s)
    wanted = os.environ.get(THREADS_VARIABLE, "").strip()
    count = max(1, min(int(wanted), len(busy))) if wanted.isdigit() else free_cpus(busy=busy)
    return sorted(sorted(busy, key=lambda cpu: busy[cpu])[:count])
