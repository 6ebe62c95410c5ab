"""Helpers for the watchdog tests: a child process's environment, the watchdog threads alive,
the address space mapped."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parents[1]


def child_env() -> dict[str, str]:
    """This process's environment for a child Python, with the checkout and this folder *after*
    any PYTHONPATH it has, so the child imports the same firmware_bridge build as this
    process (CI's sanitizer leg puts its sanitized build first) and can import this module."""
    path = [p for p in (os.environ.get("PYTHONPATH"), str(ROOT), str(TESTS)) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def watchdog_threads() -> int:
    """Watchdog threads of this process: the native one by its OS name, the Python one by
    its thread name (other tests leave unrelated threads that may come and go)."""
    native = 0
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/self/task/{task}/comm").read_text().strip()
            native += comm == "tg-watchdog"
    python = sum(t.name == "twinguard-pywatchdog" and t.is_alive() for t in threading.enumerate())
    return native + python


def watchdog_threads_once(expected: int, within_s: float = 5.0) -> int:
    """watchdog_threads() as soon as it is ``expected``, else its value after ``within_s``.

    After close() has joined the native thread, the thread can still be listed in
    /proc/self/task for a moment: pthread_join returns when the kernel clears the thread's
    tid, before the task is unlisted (natively, 4 to 7 joins in 2,000 were still listed,
    for up to 10 us; under qemu-user 12 to 19 %, for up to 10 ms, as qemu wakes the joiner
    before its own teardown of the thread). A thread still running stays listed."""
    deadline = time.monotonic() + within_s
    while (n := watchdog_threads()) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    return n


def mapped_bytes() -> int:
    """Bytes this process has mapped (/proc/self/maps; under qemu-user, the guest's own
    mappings). A joinable thread's stack stays mapped until the thread is joined."""
    total = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = line.split(maxsplit=1)[0].split("-")
            total += int(end, 16) - int(start, 16)
    return total
