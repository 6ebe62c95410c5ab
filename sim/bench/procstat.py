"""Another process's CPU and memory, read from ``/proc/PID`` (never from inside it).

Shared by the footprint benchmark (the agent) and its floor (``sim.bench.floor``), so both
are sampled the same way:

* ``/proc/PID/status`` ``VmRSS`` once a second over the window (the largest is reported),
  ``VmHWM`` (the peak since start) and ``Threads`` at the end;
* ``/proc/PID/stat`` ``utime + stime`` (all threads, clock ticks) at both ends of the window:
  ``cpu_percent = delta_ticks / CLK_TCK / window_wall_s * 100`` (percent of one core). The
  kernel keeps the sum exact and reports it in ticks (10 ms at the usual CLK_TCK 100), so a
  window of W seconds resolves 1 / W % of a core.

``/proc/PID/stat`` after the ``(comm)`` field, split on spaces (``man 5 proc``)::

    ") S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ..."
       0  1    2     3      4    5     6      7      8      9      10     11    12
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


class ProcessGone(RuntimeError):
    """The sampled process's ``/proc`` entry vanished (it exited)."""


@dataclass(frozen=True)
class ProcSample:
    """One reading of ``/proc/PID``: when, CPU ticks so far (all threads), resident KiB,
    peak resident KiB, threads."""

    t: float
    cpu_ticks: int
    rss_kib: int
    hwm_kib: int
    threads: int = 0


def read_proc(pid: int, now: float) -> ProcSample:
    """Sample ``/proc/PID`` (see the module docstring); ProcessGone if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise ProcessGone(f"process {pid} is gone: {exc}") from exc
    fields = stat[stat.rindex(")") + 1 :].split()
    ticks = int(fields[11]) + int(fields[12])
    got = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            got[key] = int(value.split()[0])
    return ProcSample(now, ticks, got.get("VmRSS", 0), got.get("VmHWM", 0),
                      got.get("Threads", 0))


@dataclass(frozen=True)
class Window:
    """A sampling window: its first and last sample and the largest VmRSS seen in it."""

    first: ProcSample
    last: ProcSample
    rss_max_kib: int

    @property
    def wall_s(self) -> float:
        return self.last.t - self.first.t

    @property
    def cpu_percent(self) -> float:
        """CPU over the window, percent of one core."""
        ticks = self.last.cpu_ticks - self.first.cpu_ticks
        return ticks / os.sysconf("SC_CLK_TCK") / self.wall_s * 100.0

    def per_s(self, stamps: list[float]) -> float:
        """How many of ``stamps`` (monotonic times) fall in the window, per second."""
        return sum(1 for t in stamps if self.first.t <= t <= self.last.t) / self.wall_s

    def figures(self, stamps: list[float]) -> dict[str, float]:
        """The footprint's per-run figures, ``stamps`` being the complete ticks' times."""
        return {
            "rss_mb": round(self.rss_max_kib / 1024.0, 1),
            "hwm_mb": round(self.last.hwm_kib / 1024.0, 1),
            "cpu_percent": round(self.cpu_percent, 2),
            "ticks_per_s": round(self.per_s(stamps), 1),
            "window_s": round(self.wall_s, 1),
        }


def sample_window(pid: int, window_s: float) -> Window:
    """Sample ``pid`` for ``window_s`` seconds from now (ProcessGone if it exits)."""
    first = read_proc(pid, time.monotonic())
    rss_max = first.rss_kib
    end = first.t + window_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        rss_max = max(rss_max, read_proc(pid, time.monotonic()).rss_kib)
    last = read_proc(pid, time.monotonic())
    return Window(first, last, max(rss_max, last.rss_kib))
