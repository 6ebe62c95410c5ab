"""The fleet ACL (sim.broker.acl, FLEET.md 7.8) enforced by a real mosquitto 2.0.11: what a
device certificate may publish and read, what only ``twin-host`` may, and the generator.

A refused QoS 1 PUBLISH gets PUBACK 0x87 (Not authorized). That it also reached nobody is
shown with a barrier: the same client then publishes something it may, and once that has
arrived at the subscriber (the broker keeps one client's messages in order) the refused
one cannot come any more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.broker import Broker
from sim.broker.acl import acl_text, config_topic, hb_topic, node_topic, state_topic
from sim.broker.cli import EXAMPLES
from sim.broker.conf import example_files

pytestmark = pytest.mark.timeout(60)

OK, NOT_AUTHORIZED = 0x00, 0x87
DEV, OTHER = "sim-tank-01", "sim-tank-02"
GROUP, HOST = "plant", "twin"


@pytest.fixture
def host(broker: Broker, connect):
    """twin-host, subscribed to everything it may read."""
    probe = connect(broker, "twin-host")
    assert probe.subscribe("spBv1.0/#") == [1]
    assert probe.subscribe("twinguard/v1/#") == [1]
    return probe


@pytest.mark.parametrize("topic", [
    hb_topic(HOST),
    state_topic(HOST),
    node_topic(GROUP, "NDATA", OTHER),
    node_topic(GROUP, "NBIRTH", OTHER),
    node_topic(GROUP, "NCMD", DEV),
    config_topic(GROUP, DEV),
    "twinguard/v1/twin/info",
    "anything/else",
])
def test_a_device_cannot_publish_outside_its_own_topics(broker: Broker, connect, host,
                                                         topic: str) -> None:
    dev = connect(broker, DEV)
    assert dev.publish(topic, b"forged", qos=1) == NOT_AUTHORIZED
    barrier = node_topic(GROUP, "NDATA", DEV)
    assert dev.publish(barrier, b"barrier", qos=1) == OK
    host.wait_message(barrier)
    assert host.messages(topic) == []


@pytest.mark.parametrize("kind", ["NBIRTH", "NDATA", "NDEATH"])
def test_a_device_publishes_its_own_node_topics(broker: Broker, connect, host,
                                                kind: str) -> None:
    dev = connect(broker, DEV)
    topic = node_topic(GROUP, kind, DEV)
    assert dev.publish(topic, kind.encode(), qos=1) == OK
    assert host.wait_message(topic).payload == kind.encode()


def test_a_device_publishes_its_own_device_topics(broker: Broker, connect, host) -> None:
    dev = connect(broker, DEV)
    topic = f"spBv1.0/{GROUP}/DDATA/{DEV}/pump"
    assert dev.publish(topic, b"d", qos=1) == OK
    host.wait_message(topic)
    assert dev.publish(f"spBv1.0/{GROUP}/DDATA/{OTHER}/pump", b"d", qos=1) == NOT_AUTHORIZED


def test_a_device_receives_nothing_on_another_devices_commands(broker: Broker, connect,
                                                               host) -> None:
    """mosquitto 2.0.11's acl_file grants the SUBSCRIBE (it checks read access when it
    delivers), so what is asserted is that nothing is delivered."""
    dev, other = connect(broker, DEV), connect(broker, OTHER)
    dev.subscribe(node_topic(GROUP, "NCMD", OTHER))
    dev.subscribe(node_topic(GROUP, "NCMD", "+"))
    assert dev.subscribe(node_topic(GROUP, "NCMD", DEV)) == [1]
    assert other.subscribe(node_topic(GROUP, "NCMD", OTHER)) == [1]
    assert host.publish(node_topic(GROUP, "NCMD", OTHER), b"for other", qos=1) == OK
    assert host.publish(node_topic(GROUP, "NCMD", DEV), b"for dev", qos=1) == OK
    assert other.wait_message(node_topic(GROUP, "NCMD", OTHER)).payload == b"for other"
    assert dev.wait_message(node_topic(GROUP, "NCMD", DEV)).payload == b"for dev"
    # once per matching subscription (MQTT 5 overlapping subscriptions), never "for other"
    assert {m.payload for m in dev.messages()} == {b"for dev"}


def test_a_device_reads_no_other_devices_data_or_config(broker: Broker, connect,
                                                        host) -> None:
    dev, other = connect(broker, DEV), connect(broker, OTHER)
    dev.subscribe("spBv1.0/#")
    dev.subscribe(config_topic(GROUP, "+"))
    assert other.publish(node_topic(GROUP, "NDATA", OTHER), b"other's data", qos=1) == OK
    assert host.publish(config_topic(GROUP, OTHER), b"other's bundle", qos=1,
                        retain=True) == OK
    assert host.publish(config_topic(GROUP, DEV), b"dev's bundle", qos=1, retain=True) == OK
    assert dev.wait_message(config_topic(GROUP, DEV)).payload == b"dev's bundle"
    assert [m.topic for m in dev.messages()] == [config_topic(GROUP, DEV)]


def test_twin_host_publishes_state_retained_and_a_device_reads_it(broker: Broker, connect,
                                                                   host) -> None:
    state = b'{"online": true, "timestamp": 1}'
    assert host.publish(state_topic(HOST), state, qos=1, retain=True) == OK
    dev = connect(broker, DEV)  # connects after the publish: only the retained copy
    assert dev.subscribe("spBv1.0/STATE/+") == [1]
    got = dev.wait_message(state_topic(HOST))
    assert (got.payload, got.retain) == (state, True)


def test_a_device_reads_the_heartbeat_info_and_its_retained_config(broker: Broker, connect,
                                                                    host) -> None:
    assert host.publish(config_topic(GROUP, DEV), b"bundle", qos=1, retain=True) == OK
    assert host.publish("twinguard/v1/twin/info", b"info", qos=1, retain=True) == OK
    dev = connect(broker, DEV)
    for topic in (hb_topic(HOST), "twinguard/v1/twin/info", config_topic(GROUP, DEV)):
        assert dev.subscribe(topic) == [1]
    assert dev.wait_message(config_topic(GROUP, DEV)).retain
    assert dev.wait_message("twinguard/v1/twin/info").retain
    assert host.publish(hb_topic(HOST), b"hb", qos=0) is None
    assert dev.wait_message(hb_topic(HOST)).payload == b"hb"


def test_a_will_is_bound_by_the_acl_too(broker: Broker, connect, host) -> None:
    """A device's Will on the heartbeat topic is not published when it drops; its Will on
    its own NDEATH is (the barrier: dropped after the forged one)."""
    from sim.broker.probe import Probe

    forged = Probe(broker.port, broker.pki.client_context(OTHER), "forger",
                   will=(hb_topic(HOST), b"forged will", 1, False))
    honest = Probe(broker.port, broker.pki.client_context(DEV), DEV,
                   will=(node_topic(GROUP, "NDEATH", DEV), b"bdSeq", 1, False))
    offset = broker.log_size()
    forged.drop()
    broker.wait_log("Client forger closed its connection|forger disconnected", 10,
                    offset=offset)
    honest.drop()
    assert host.wait_message(node_topic(GROUP, "NDEATH", DEV)).payload == b"bdSeq"
    assert host.messages(hb_topic(HOST)) == []


def test_the_host_cannot_speak_for_a_device(broker: Broker, connect, host) -> None:
    """twin-host writes what 7.8 lists, not a device's birth or another host's STATE."""
    assert host.publish(node_topic(GROUP, "NBIRTH", DEV), b"x", qos=1) == NOT_AUTHORIZED
    assert host.publish(state_topic("other-host"), b"x", qos=1) == NOT_AUTHORIZED
    assert host.publish(node_topic("other-group", "NCMD", DEV), b"x", qos=1) == NOT_AUTHORIZED


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "a b"])
def test_the_generator_refuses_ids_that_are_not_one_topic_level(bad: str) -> None:
    with pytest.raises(ValueError, match="single MQTT topic level"):
        acl_text(bad, HOST)
    with pytest.raises(ValueError, match="single MQTT topic level"):
        acl_text(GROUP, bad)


def test_the_example_files_are_what_the_generator_writes() -> None:
    files = example_files()
    assert sorted(files) == sorted(p.name for p in Path(EXAMPLES).iterdir())
    for name, text in files.items():
        assert (EXAMPLES / name).read_text() == text, f"{name}: python -m sim.broker examples"
