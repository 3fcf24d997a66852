"""Torch's CPU threads on a machine that other work shares (a robot computer runs camera drivers, the control loop,
a simulator, ROS beside the policy).

Two threads on two cores make a call 1.5-1.7x faster than one on an idle machine, and 2-3x slower than one as soon as
another process keeps a core busy: a parallel region then waits for the thread the scheduler parked behind the other
process, once per op. So by default (`--threads auto`) every inference asks first how much of this process's CPUs
other work used since the last decision, and runs with the CPUs left (at least one): the whole team on an idle
machine, one thread beside a busy neighbour. That share comes from the kernel's counters (/proc/stat for the CPUs
this process may use, /proc/self/stat for its own time), measured over at least `WINDOW_S`, so one noisy instant
decides nothing. A team of one never waits on another thread, whatever the OpenMP wait policy.

The CPUs the process may use are its affinity mask, limited by a cgroup CPU quota where one is set (containers,
systemd slices), never `os.cpu_count()`. `--threads N` fixes the team instead.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

__all__ = ["CpuShare", "ThreadPolicy", "cpu_threads", "usable_cpus"]

WINDOW_S = 0.2  # the shortest span a decision measures: /proc's counters tick every 10 ms
SPARE_SHARE = 0.4  # other work below this many CPUs (interrupts, a sleeping loop) leaves the whole team


def cgroup_quota() -> float | None:
    """CPUs the process's cgroup may use per second (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None: no quota."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), as many of them as its cgroup quota allows (at least one)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    quota = cgroup_quota()
    return cpus if quota is None else cpus[: max(1, math.floor(quota))]


class CpuShare:
    """How many of `cpus` other work kept busy since the previous reading: their busy time (/proc/stat) less this
    process's (/proc/self/stat), per second of wall time. None where /proc does not tell."""

    def __init__(self, cpus: list[int]):
        self.cpus = {f"cpu{c}" for c in cpus}
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            busy = 0
            for line in Path("/proc/stat").read_text().splitlines():
                fields = line.split()
                if fields and fields[0] in self.cpus:  # user nice system idle iowait irq softirq steal ...
                    ticks = [int(v) for v in fields[1:9]]
                    busy += sum(ticks) - ticks[3] - ticks[4]
            stat = Path("/proc/self/stat").read_text()
            own = sum(int(v) for v in stat[stat.rindex(")") + 2:].split()[11:13])  # utime, stime
        except (OSError, ValueError, IndexError):
            return None
        return busy / self.tick, own / self.tick, time.monotonic()

    def others(self) -> float | None:
        """Busy CPUs of other work since the last call that returned a number (None: too soon, or no /proc)."""
        if self.last is None or time.monotonic() - self.last[2] < WINDOW_S:  # too soon: nothing read (a hot path)
            return None
        now = self._read()
        if now is None:
            return None
        (busy, own, t), (busy0, own0, t0) = now, self.last
        self.last = now
        return max(0.0, ((busy - busy0) - (own - own0)) / (t - t0))


class ThreadPolicy:
    """The process's torch CPU threads: `configure(None)` adapts them before each inference (`adapt`), `configure(n)`
    fixes them. `last` is the team of the latest inference, `reason` why."""

    def __init__(self) -> None:
        self.cpus = usable_cpus()
        self.fixed: int | None = None
        self.share: CpuShare | None = None
        self.last = torch.get_num_threads()
        self.reason = "torch's default"

    @property
    def limit(self) -> int:
        return len(self.cpus)

    def configure(self, threads: int | None) -> None:
        """`threads`: a fixed team, or None for the adaptive default (up to every usable CPU)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or auto), got {threads}")
        self.fixed = threads
        self.share = None if threads is not None else CpuShare(self.cpus)
        self._set(threads or self.limit, "fixed (--threads)" if threads else "no other work measured yet")

    def adapt(self) -> int:
        """Before an inference: the team for the CPUs other work leaves (auto), or the fixed one."""
        if self.share is not None:
            others = self.share.others()
            if others is not None:
                team = max(1, self.limit - max(0, math.ceil(others - SPARE_SHARE)))
                self._set(team, f"other work used {others:.1f} of {self.limit} CPUs")
        return self.last

    def _set(self, team: int, reason: str) -> None:
        if team != torch.get_num_threads():
            torch.set_num_threads(team)
        self.last, self.reason = team, reason

    def describe(self) -> str:
        """For the load line and benchmark notes, e.g. "threads auto (1-2 of 2 usable CPUs)"."""
        if self.fixed is not None:
            return f"threads {self.fixed} (fixed, {self.limit} usable CPUs)"
        return f"threads auto (1-{self.limit} of {self.limit} usable CPUs, fewer while other work keeps them busy)"

    def as_dict(self) -> dict:
        return {"mode": "fixed" if self.fixed is not None else "auto", "usable_cpus": self.limit,
                "last": self.last, "reason": self.reason}


cpu_threads = ThreadPolicy()  # the process's: every torch CPU call runs on the one torch thread
