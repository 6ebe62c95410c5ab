"""Helpers for the watchdog tests: a child process's environment, the watchdog threads alive."""

from __future__ import annotations

import contextlib
import os
import threading
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
