"""Shared fixtures: the simulated PLC as a real process and a socat pty pair.

The tests mirror the packages: ``core/``, ``config/``, ``protocol/``, ``io/``, ``runtime/``,
``cli/`` (``agent``'s layers), ``e2e/`` (the whole plant as processes), ``simulator/``
(``sim``), ``firmware/`` (``firmware_bridge``; its fixtures are in its ``conftest.py``) and
``fleet/`` (the fleet transport against a real mosquitto; its fixtures in its ``conftest.py``).
No folder is named after a top-level package (``sim``, ``firmware_bridge``): without
``__init__.py`` files this folder is on ``sys.path``, and CI's sanitizer leg runs pytest with
``-P`` (the checkout off ``sys.path``), where such a folder would shadow the package as a
namespace package. Helpers more than one folder uses (``bundle_kit``, ``hostile_modbus``)
live here, next to this file. The agents ``sim.stack.Stack`` starts here ask for no real
time unless a test asks (see ``Stack.realtime_default`` below).

Property tests (hypothesis) are set up here, in one place, so that a landing never depends
on luck:

* profile ``ci`` (the default, whoever runs pytest: CI's ``.ci/run``, the README's test
  command, a merge): every run draws the same examples. The seed is fixed
  (:data:`CI_SEED`, printed in the header and the summary), the example database is off
  (no failure found on one machine replays on another), and per-test ``derandomize`` is
  left as it is. A failure prints its ``@reproduce_failure`` blob.
* profile ``fuzz`` (``python -m sim.bench fuzz``, or ``--hypothesis-profile=fuzz``): a
  random seed unless ``--hypothesis-seed`` names one (the bench prints it), every property
  test's ``max_examples`` multiplied by ``$TWINGUARD_FUZZ_SCALE`` (default 20) and its
  ``derandomize`` turned off. What it finds becomes an ``@example`` or a regression test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from sim.plc.harness import SimPlcProcess, SocatPair
from sim.stack import Stack

# The agents the tests start ask nothing of the scheduler (scheduling = "other", memory not
# locked) unless a test asks for real time (Stack(realtime=True): tests/e2e/test_e2e_realtime.py):
# on a shared machine an agent hung on purpose with the GIL held would otherwise spin at
# SCHED_FIFO for seconds, holding a core from everything else, the sims included, and what
# the other tests assert does not depend on the agent's priority. The benchmarks and the demo
# run the profile's own [realtime] (production's defaults).
Stack.realtime_default = False

CI_SEED = 1313  # the ci profile's seed: change it only on purpose, in its own commit
FUZZ_SCALE_ENV = "TWINGUARD_FUZZ_SCALE"
settings.register_profile("ci", database=None, print_blob=True)
settings.register_profile("fuzz", database=None, print_blob=True, derandomize=False)
settings.load_profile("ci")


def _profile(config: pytest.Config) -> str:
    chosen = config.getoption("hypothesis_profile", None)
    return str(chosen) if chosen else "ci"


@pytest.hookimpl(tryfirst=True)  # before hypothesis' own pytest_configure reads the seed
def pytest_configure(config: pytest.Config) -> None:
    if _profile(config) == "ci" and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(CI_SEED)


def pytest_report_header(config: pytest.Config) -> str:
    return (f"hypothesis: profile {_profile(config)}, seed "
            f"{config.getoption('hypothesis_seed', None) or 'random'}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    terminalreporter.write_line(pytest_report_header(config))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the fuzz profile, scale every property test's examples (once per function)."""
    if _profile(config) != "fuzz":
        return
    scale = int(os.environ.get(FUZZ_SCALE_ENV, "20"))
    done: set[int] = set()
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is None or id(test) in done:
            continue
        done.add(id(test))
        test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
            current, max_examples=current.max_examples * scale, derandomize=False)


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


@pytest.fixture
def rtu_profile(tmp_path: Path) -> str:
    """sim-coupler (the sim-tank plant without a PLC program: outputs stay as written) on
    RTU, 19200 baud, no parity and 2 stop bits (the serial line rule for no parity), which
    every pty accepts; the path of the copy."""
    coupler = Path(__file__).resolve().parents[1] / "hw_profiles" / "sim-coupler.toml"
    text = coupler.read_text()
    tcp = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
    assert tcp in text
    rtu = 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\nbaudrate = 19200\nparity = "N"\n'
    path = tmp_path / "sim-coupler-rtu-n2.toml"
    path.write_text(text.replace(tcp, rtu))
    return str(path)
