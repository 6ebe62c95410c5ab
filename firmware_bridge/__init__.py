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
    anything else         :func:`load_watchdog` raises ValueError (a typo must not silently
                          weaken safety); importing the package still works, so every
                          command can say so instead of ending in a traceback

``load_watchdog(require_native=True)`` is what the agent calls when the profile says
``require_native_watchdog = true``: it raises RuntimeError rather than fall back.
:func:`native_problem` says, without raising, why the native watchdog would not be used.
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
    "native_problem",
]

log = logging.getLogger(__name__)

ENV_VAR = "TWINGUARD_WATCHDOG"
_choice = os.environ.get(ENV_VAR, "").strip().lower()
_native_error: ImportError | None = None
_native_class: type[WatchdogAPI] | None = None

_env_error: str | None = None
if _choice not in ("", "auto", "native", "python"):
    _env_error = (f"{ENV_VAR}={_choice!r}: expected 'native', 'python' or 'auto' "
                  f"(or unset it)")
    _choice = "auto"

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


def native_problem() -> str | None:
    """Why the native watchdog would not be used here (a bad ``TWINGUARD_WATCHDOG``, forced
    off, or not built), or None when it will be."""
    if _env_error is not None:
        return _env_error
    if _native_class is not None:
        return None
    if _choice == "python":
        return f"it is forced off by {ENV_VAR}=python"
    return (f"firmware_bridge._watchdog cannot be imported ({_native_error}): it was not "
            "built (no C compiler when the package was installed?); install gcc and the "
            "Python headers (apt-get install gcc python3-dev) and reinstall")


def load_watchdog(require_native: bool) -> type[WatchdogAPI]:
    """The watchdog class to use.

    Raises ValueError for a bad ``TWINGUARD_WATCHDOG``, and RuntimeError when
    ``require_native`` and the native watchdog is not available (not built, or forced off
    with ``TWINGUARD_WATCHDOG=python``): a profile that requires it must not start with a
    watchdog that cannot fire while the GIL is held.
    """
    if _env_error is not None:
        raise ValueError(_env_error)
    if _native_class is not None:
        return _native_class
    why = native_problem()
    if require_native:
        raise RuntimeError(
            f"the profile requires the native watchdog but {why}; build it with "
            "`python setup.py build_ext --inplace` or `pip install -e .`"
        )
    log.warning("using the pure-Python watchdog, which cannot fire while the GIL is held: %s", why)
    return pywatchdog.Watchdog
