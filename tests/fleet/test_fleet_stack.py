"""sim.fleet_stack.FleetStack: brokers, the sim MQTT twin and the sim PLC as real
processes, and the agent configuration for ``[twin] transport = "mqtt"``. The agent itself
is not started here (tests/e2e/test_e2e_fleet*.py run it); a Probe with the stack's own
device certificate shows the broker takes the agent's identity.
"""

from __future__ import annotations

import base64
import tomllib

import pytest

from agent.protocol.fleet.envelope import Opener
from agent.protocol.fleet.names import heartbeat_topic
from sim.broker import BrokerBinary
from sim.broker.probe import Probe
from sim.fleet_stack import GROUP, HOST_ID, FleetStack
from sim.stack import DEVICE_ID

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("layout", [{"brokers": 1}, {"brokers": 2}, {"bridged": True}])
def test_a_fleet_stack_serves_the_agent_identity_through_its_brokers(
        mosquitto_binary: BrokerBinary, layout: dict[str, object]) -> None:
    with FleetStack(start_agent=False, **layout) as stack:  # type: ignore[arg-type]
        config = tomllib.loads(stack.config_path.read_text())
        twin, fleet = config["twin"], config["fleet"]
        assert twin["transport"] == "mqtt" and "host" not in twin and "port" not in twin
        assert fleet["servers"] == [f"mqtts://127.0.0.1:{b.port}" for b in stack.brokers]
        assert len(fleet["servers"]) == layout.get("brokers", 1)
        assert (fleet["group"], fleet["host_id"]) == (GROUP, HOST_ID)
        key = base64.b64decode(fleet["twin_keys"][0])
        for broker in stack.brokers:
            # the agent's own certificate and CA, as the agent would present them
            ctx = broker.pki.client_context(None)
            ctx.load_cert_chain(str(stack.pki.device_cert), str(stack.pki.device_key))
            with Probe(broker.port, ctx, DEVICE_ID) as probe:
                probe.subscribe(heartbeat_topic(HOST_ID))
                got = probe.wait_message(heartbeat_topic(HOST_ID))
            envelope = Opener(HOST_ID, DEVICE_ID, (key,)).open(got.payload, fanout=True)
            assert envelope.epoch == stack.twin.epoch
