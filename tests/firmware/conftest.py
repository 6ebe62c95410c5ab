"""The watchdog's fixtures: each implementation in turn (the native one and the pure-Python
twin), and a fresh watchdog of each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_bridge import WatchdogAPI, pywatchdog

try:
    from firmware_bridge import native
except ImportError:  # pragma: no cover - the build is wired in setup.py
    native = None  # type: ignore[assignment]


@pytest.fixture(params=["native", "python"])
def impl(request: pytest.FixtureRequest) -> type[WatchdogAPI]:
    """Each watchdog class in turn (test ids ``[native]``/``[python]``: CI's sanitizer leg
    selects ``-k native``); a missing native build fails rather than skips."""
    if request.param == "native":
        if native is None:
            pytest.fail("firmware_bridge._watchdog is not built")
        return native.Watchdog
    return pywatchdog.Watchdog


@pytest.fixture
def wd(impl: type[WatchdogAPI]) -> Iterator[WatchdogAPI]:
    """A fresh watchdog of each implementation, closed afterwards."""
    w = impl()
    yield w
    w.close()
