"""Shared fixtures: the simulated PLC as a real process and a socat pty pair.

The tests mirror the packages: ``core/``, ``config/``, ``protocol/``, ``io/``, ``runtime/``,
``cli/`` (``agent``'s layers), ``e2e/`` (the whole plant as processes), ``simulator/``
(``sim``) and ``firmware/`` (``firmware_bridge``; its fixtures are in its ``conftest.py``).
No folder is named after a top-level package (``sim``, ``firmware_bridge``): without
``__init__.py`` files this folder is on ``sys.path``, and CI's sanitizer leg runs pytest with
``-P`` (the checkout off ``sys.path``), where such a folder would shadow the package as a
namespace package. Helpers more than one folder uses (``bundle_kit``, ``hostile_modbus``)
live here, next to this file.
"""

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
