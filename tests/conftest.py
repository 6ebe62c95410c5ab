"""Shared fixtures: the simulated PLC as a real process, and a socat pty pair."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sim.plc.harness import SimPlcProcess, SocatPair


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
