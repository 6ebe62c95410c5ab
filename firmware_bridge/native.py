"""The native watchdog: the C core (``firmware_bridge._watchdog``) under the common API.

Importing this module raises ImportError when the C extension is not built.
"""

from __future__ import annotations

from firmware_bridge._watchdog import Core
from firmware_bridge.api import WatchdogAPI

__all__ = ["Watchdog"]


class Watchdog(Core, WatchdogAPI):
    """A native watchdog thread that writes prepared bytes to fds and files, stops feeding a
    hw watchdog and optionally ``_exit()``\\ s when ``kick()`` is late, even while another
    thread holds the GIL. Contract: ``firmware_bridge.api``."""

    native = True
