"""Fixtures for the fleet transport: a real mosquitto on loopback (:mod:`sim.broker`).

``mosquitto_binary`` (session) finds the broker (a system one, else the unpacked Debian
package in the cache) and, when there is none, tries ``sim.broker.binary.fetch`` once; a
test that uses a broker is skipped, with the reason fetch gave, when that fails too (no
apt, no network) or when paho-mqtt (the ``fleet`` extra) is not installed. ``.ci/run``
fetches before the tests.

``broker``: a :class:`~sim.broker.Broker` started in ``tmp_path`` (group ``plant``, host
``twin``, persistence on); ``bridged_brokers``: a :class:`~sim.broker.BridgedPair`;
``connect``: a factory ``connect(broker, cn, client_id=None) -> Probe`` (a client with
``cn``'s certificate, closed at teardown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sim.broker import BridgedPair, Broker, BrokerBinary, BrokerUnavailable, fetch, locate

if TYPE_CHECKING:  # paho-mqtt (the fleet extra) may be missing: imported where used
    from sim.broker.probe import Probe

_fetched: list[BrokerBinary | str] = []  # the session's one attempt: a binary or a reason


def _binary() -> BrokerBinary | str:
    if not _fetched:
        found = locate()
        if found is None:
            try:
                found = fetch()
            except (BrokerUnavailable, OSError) as exc:
                _fetched.append(f"no mosquitto broker ({exc}); run python -m sim.broker fetch")
                return _fetched[0]
        _fetched.append(found)
    return _fetched[0]


@pytest.fixture(scope="session")
def mosquitto_binary() -> BrokerBinary:
    """The mosquitto to run (skips the test when there is none, saying why)."""
    pytest.importorskip("paho.mqtt", reason="paho-mqtt missing: pip install -e '.[fleet]'")
    got = _binary()
    if isinstance(got, str):
        pytest.skip(got)
    return got


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: BrokerBinary) -> Iterator[Broker]:
    """One fleet broker on a free loopback port (group plant, host twin)."""
    with Broker(tmp_path / "broker", binary=mosquitto_binary) as b:
        yield b


@pytest.fixture
def bridged_brokers(tmp_path: Path, mosquitto_binary: BrokerBinary) -> Iterator[BridgedPair]:
    """A plant broker (``.plant``, the agents') bridged to a site broker (``.site``, the
    twin's), the bridge up."""
    with BridgedPair(tmp_path / "pair", binary=mosquitto_binary) as pair:
        yield pair


@pytest.fixture
def connect() -> Iterator[Callable[..., Probe]]:
    """``connect(broker, cn, client_id=None)``: a connected :class:`sim.broker.probe.Probe`
    presenting ``cn``'s certificate (None: no certificate); all closed at teardown."""
    from sim.broker.probe import Probe

    made: list[Probe] = []

    def make(broker: Broker, cn: str | None, client_id: str | None = None) -> Probe:
        probe = Probe(broker.port, broker.pki.client_context(cn), client_id or cn or "anon")
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()
