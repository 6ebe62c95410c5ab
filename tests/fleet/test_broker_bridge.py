"""A plant broker bridged to a site broker (sim.broker.BridgedPair, FLEET.md 7.8): the
twin on the site, the devices on the plant; heartbeat, STATE, NCMD and config come in,
births and data go out, and the plant's ACL still binds the devices."""

from __future__ import annotations

import pytest

from sim.broker import BridgedPair
from sim.broker.acl import config_topic, hb_topic, node_topic, state_topic
from sim.broker.probe import expiring

pytestmark = pytest.mark.timeout(60)

DEV, GROUP, HOST = "sim-tank-01", "plant", "twin"


def _site_host(pair: BridgedPair, connect, *filters: str):
    """The plant broker, and twin-host on the site subscribed to ``filters``."""
    assert pair.plant is not None
    host = connect(pair.site, "twin-host")
    for f in filters:
        assert host.subscribe(f) == [1]
    return pair.plant, host


def test_retained_state_and_config_come_in(bridged_brokers: BridgedPair, connect) -> None:
    plant, host = _site_host(bridged_brokers, connect)
    watcher = connect(plant, DEV, "watcher")  # subscribed before: sees them arrive live
    watcher.subscribe("spBv1.0/STATE/+")
    watcher.subscribe(config_topic(GROUP, DEV))
    assert host.publish(state_topic(HOST), b"online", qos=1, retain=True) == 0
    assert host.publish(config_topic(GROUP, DEV), b"bundle", qos=1, retain=True) == 0
    assert not watcher.wait_message(state_topic(HOST)).retain
    watcher.wait_message(config_topic(GROUP, DEV))
    # now the plant broker holds both: a device connecting later gets them retained
    dev = connect(plant, DEV)
    dev.subscribe("spBv1.0/STATE/+")
    dev.subscribe(config_topic(GROUP, DEV))
    state = dev.wait_message(state_topic(HOST))
    assert (state.payload, state.retain) == (b"online", True)
    assert dev.wait_message(config_topic(GROUP, DEV)).retain


def test_heartbeat_and_commands_come_in_data_goes_out(bridged_brokers: BridgedPair,
                                                      connect) -> None:
    plant, host = _site_host(bridged_brokers, connect, "spBv1.0/#")
    dev = connect(plant, DEV)
    dev.subscribe(hb_topic(HOST), qos=0)
    dev.subscribe(node_topic(GROUP, "NCMD", DEV))
    host.publish(hb_topic(HOST), b"hb-1", qos=0, properties=expiring(60))
    hb = dev.wait_message(hb_topic(HOST))
    assert hb.payload == b"hb-1"
    # the MQTT 5 bridge keeps the expiry: what is left, in whole seconds (two hops may each
    # cross a second boundary)
    assert hb.expiry_s is not None and 58 <= hb.expiry_s <= 60
    host.publish(node_topic(GROUP, "NCMD", DEV), b"rebirth", qos=0)
    assert dev.wait_message(node_topic(GROUP, "NCMD", DEV)).payload == b"rebirth"
    for kind in ("NBIRTH", "NDATA", "NDEATH"):
        assert dev.publish(node_topic(GROUP, kind, DEV), kind.encode(), qos=1) == 0
        assert host.wait_message(node_topic(GROUP, kind, DEV)).payload == kind.encode()


def test_a_forged_heartbeat_on_the_plant_reaches_no_one(bridged_brokers: BridgedPair,
                                                        connect) -> None:
    plant, host = _site_host(bridged_brokers, connect, "twinguard/v1/#", "spBv1.0/#")
    listener = connect(plant, "sim-tank-02")
    listener.subscribe(hb_topic(HOST), qos=0)
    dev = connect(plant, DEV)
    assert dev.publish(hb_topic(HOST), b"forged", qos=1) == 0x87
    assert dev.publish(state_topic(HOST), b"online", qos=1) == 0x87
    barrier = node_topic(GROUP, "NDATA", DEV)
    assert dev.publish(barrier, b"barrier", qos=1) == 0
    host.wait_message(barrier)  # a refused one would have come first (one client's order)
    host.publish(hb_topic(HOST), b"genuine", qos=0)
    assert listener.wait_message(hb_topic(HOST)).payload == b"genuine"
    assert [m.payload for m in listener.messages()] == [b"genuine"]
    # the site's host hears its own heartbeat back, nothing the device sent
    host.wait_message(hb_topic(HOST))
    assert [m.payload for m in host.messages(hb_topic(HOST))] == [b"genuine"]
    assert host.messages(state_topic(HOST)) == []
