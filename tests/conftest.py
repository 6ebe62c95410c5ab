"""Shared fixtures: the simulated PLC as a real process, a socat pty pair, and the two
watchdog implementations (the native one and the pure-Python twin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_bridge import WatchdogAPI, pywatchdog
from sim.plc.harness import SimPlcProcess, SocatPair

try:
    from firmware_bridge import native
except ImportError:  # pragma: no cover - the build is wired in setup.py
    native = None  # type: ignore[assignment]


@pytest.fixture
def sim_plc() -> Iterator[SimPlcProcess]:
    """``python -m sim plc`` with the sim-tank profile on a free loopback TCP port."""
    with SimPlcProcess("sim-tank") as plc:
        yield plc


@pytest.fixture
def socat_pair() -> Iterator[SocatPair]:
    """Two linked ptys; ``.a`` for the server, ``.b`` for the client."""
    with SocatPair() as pair:
        yield pair


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
