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

Two tests at a time (``pytest -n 2 --dist loadfile``, as ``.ci/run`` runs the suite): most
end-to-end tests spend their time waiting on real processes and deadlines, so two of them
share the 2-core machine well. The tests whose figures or deadlines need the machine to
themselves run ``alone``: with no other test beside them (:data:`ALONE` by file, with the
reason; or ``pytest.mark.alone`` on a test). The other worker waits between two of its own
tests, outside their timeouts (:func:`pytest_runtest_protocol`). Without ``-n`` nothing
changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
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
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        # the controller, before it starts the workers (they inherit the environment)
        os.environ[LOCKS_ENV] = tempfile.mkdtemp(prefix="twinguard-pytest-locks-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if (not hasattr(config, "workerinput") and config.getoption("numprocesses", None)
            and LOCKS_ENV in os.environ):
        shutil.rmtree(os.environ.pop(LOCKS_ENV), ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    return (f"hypothesis: profile {_profile(config)}, seed "
            f"{config.getoption('hypothesis_seed', None) or 'random'}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    terminalreporter.write_line(pytest_report_header(config))


LOCKS_ENV = "TWINGUARD_TEST_LOCKS"  # the run's lock directory, made by the xdist controller

# Files whose tests run alone under pytest -n, and why.
ALONE = {
    "tests/simulator/test_bench_fleet.py": "benchmark figures (1000 simulated agents)",
    "tests/simulator/test_bench_floor.py": "CPU and memory figures",
    "tests/simulator/test_bench_load.py": "puts the machine under stress-ng load",
    "tests/simulator/test_bench_reaction.py": "reaction figures",
    "tests/simulator/test_bench_restart.py": "restart figures",
    "tests/simulator/test_bench_suite.py": "benchmark figures",
    "tests/e2e/test_e2e_realtime.py": "SCHED_FIFO agents and their latencies",
    "tests/e2e/test_e2e_twin_flood.py": "an 8000-message flood on the agent's loop",
    "tests/e2e/test_e2e_chain.py": "holds the agent's GIL on purpose",
    "tests/firmware/test_watchdog_hang.py": "holds the GIL on purpose",
    "tests/firmware/test_watchdog_api.py": "the native watchdog's own lateness",
}


def _alone(item: pytest.Item) -> bool:
    path = Path(str(item.fspath)).resolve().relative_to(Path(__file__).resolve().parents[1])
    return path.as_posix() in ALONE or item.get_closest_marker("alone") is not None


@contextlib.contextmanager
def _turn(alone: bool) -> Iterator[None]:
    """A writer-preferring lock shared by the xdist workers of one run: a shared hold for
    an ordinary test, an exclusive one for an ``alone`` test. The gate is taken first by
    both, so a waiting ``alone`` test blocks new shared holds and is not starved."""
    base = Path(os.environ[LOCKS_ENV])
    with open(base / "gate", "a") as gate, open(base / "lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)  # outermost: before pytest-timeout's timer
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # an xdist worker of this run itself (a pytest a test starts inherits the environment,
    # never the worker's config: it must not queue behind its own parent for the lock)
    if not hasattr(item.config, "workerinput") or LOCKS_ENV not in os.environ:
        yield
        return
    with _turn(_alone(item)):
        yield


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
