"""firmware_bridge: the native watchdog and its pure-Python twin, one API (``api``).

=================  ===========================================================================
``api``            ``WatchdogAPI``: ``arm()`` (written once), the reporting, the contract
``native``         ``Watchdog``: the C core (``_watchdog.c``, stub ``_watchdog.pyi``) + the API
``pywatchdog``     ``Watchdog``: a Python thread core + the API (cannot fire while the GIL is
                   held)
``results``        the shapes ``stats()`` returns, the result codes of a fire
=================  ===========================================================================

``Watchdog`` is the native class when it can be imported, else the pure-Python twin.
``NATIVE`` (and each class's ``native``) says which one. The environment variable
``TWINGUARD_WATCHDOG`` overrides the choice:

    unset, "" or "auto"   native if importable, else Python
    "native"              native; ImportError at import if it is not built
    "python"              the Python twin (development, tests of the twin)
    anything else         ValueError at import (a typo must not silently weaken safety)

``load_watchdog(require_native=True)`` is what the agent calls when the profile says
``require_native_watchdog = true``: it raises RuntimeError rather than fall back.
"""

from __future__ import annotations

import logging
import os

from firmware_bridge import pywatchdog
from firmware_bridge.api import WatchdogAPI
from firmware_bridge.results import FireResults, WatchdogStats

__all__ = [
    "NATIVE",
    "FireResults",
    "Watchdog",
    "WatchdogAPI",
    "WatchdogStats",
    "load_watchdog",
]

log = logging.getLogger(__name__)

ENV_VAR = "TWINGUARD_WATCHDOG"
_choice = os.environ.get(ENV_VAR, "").strip().lower()
_native_error: ImportError | None = None
_native_class: type[WatchdogAPI] | None = None

if _choice not in ("", "auto", "native", "python"):
    raise ValueError(f"{ENV_VAR}={_choice!r}: expected 'native', 'python' or 'auto'")

if _choice != "python":
    try:
        from firmware_bridge.native import Watchdog as _NativeWatchdog
    except ImportError as exc:
        if _choice == "native":
            raise ImportError(
                f"{ENV_VAR}=native but firmware_bridge._watchdog is not importable: {exc}"
            ) from exc
        _native_error = exc
    else:
        _native_class = _NativeWatchdog

Watchdog: type[WatchdogAPI] = _native_class if _native_class is not None else pywatchdog.Watchdog
NATIVE: bool = _native_class is not None


def load_watchdog(require_native: bool) -> type[WatchdogAPI]:
    """The watchdog class to use.

    Raises RuntimeError when ``require_native`` and the native watchdog is not available
    (not built, or forced off with ``TWINGUARD_WATCHDOG=python``): a profile that requires
    it must not start with a watchdog that cannot fire while the GIL is held.
    """
    if _native_class is not None:
        return _native_class
    if _choice == "python":
        why = f"it is forced off by {ENV_VAR}=python"
    else:
        why = f"firmware_bridge._watchdog cannot be imported ({_native_error})"
    if require_native:
        raise RuntimeError(
            f"the profile requires the native watchdog but {why}; build it with "
            "`python setup.py build_ext --inplace` or `pip install -e .`"
        )
    log.warning("using the pure-Python watchdog, which cannot fire while the GIL is held: %s", why)
    return pywatchdog.Watchdog
