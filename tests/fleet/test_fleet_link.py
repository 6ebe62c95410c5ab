"""FleetLink against a real mosquitto and a scripted twin host (tests/fleet/fleet_kit.py):
the Sparkplug edge-node rules keyed by their tck-ids (FLEET.md §1.5, §7.4, §7.9) and the
fail-safe rules of §7.3 (only verified heartbeats count)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fleet_kit import ScriptedTwin, in_thread, now_ms, settings, start

from agent.model.messages import Heartbeat, Status, TwinHello
from sim.broker import Broker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def twin(broker: Broker):
    t = ScriptedTwin(broker)
    yield t
    t.close()


def test_session_opens_on_the_first_verified_heartbeat_after_nbirth(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait: NBIRTH only after STATE
    online; the session (TwinHello, then the heartbeat) only on a verified heartbeat."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        await h.until(lambda: h.link.counters.connects == 1, "CONNACK")
        await in_thread(twin.heartbeat)
        await asyncio.sleep(0.3)
        assert twin.births() == [] and h.connections == []
        await in_thread(twin.state, True, now_ms())
        await in_thread(twin.probe.wait_message, "spBv1.0/plant/NBIRTH/sim-tank-01")
        assert h.connections == []
        await in_thread(twin.heartbeat)
        await h.until(lambda: h.connections, "session up")
        assert h.connections[0][0] is True
        kinds = [type(m) for m, _ in h.messages]
        assert kinds[:2] == [TwinHello, Heartbeat]
        assert await h.link.send(Status("RUNNING", "shadow", 1, now_ms()))
        await in_thread(twin.probe.wait_message, "spBv1.0/plant/NDATA/sim-tank-01")
        await h.stop()

    asyncio.run(scenario())
