"""Faults made to happen to a real mosquitto (sim.broker.Broker): frozen (SIGSTOP), killed
(SIGKILL), restarted; persistence on and off; the bridge comes back after the site broker
restarts. Asserted from outside: /proc, the port, what a client sees."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sim.bench.procstat import ProcessGone
from sim.broker import BridgedPair, Broker, BrokerBinary
from sim.broker.acl import hb_topic, state_topic
from sim.broker.probe import ProbeError
from sim.broker.process import proc_state
from sim.stack import wait_for

pytestmark = pytest.mark.timeout(60)

DEV = "sim-tank-01"
ACCEPTED = (0x00, 0x10)  # MQTT 5 PUBACK: success, success with no matching subscribers


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_freeze_holds_everything_and_thaw_delivers_it(broker: Broker, connect) -> None:
    host = connect(broker, "twin-host")
    dev = connect(broker, DEV)
    dev.subscribe(state_topic("twin"))
    broker.freeze()
    assert proc_state(broker.pid) == "T"
    info = host.client.publish(state_topic("twin"), b"online", qos=1)
    with pytest.raises(ProbeError, match="message on"):
        dev.wait_message(state_topic("twin"), timeout_s=0.5)  # a hung broker says nothing
    assert not info.is_published()
    assert dev.disconnected_at is None  # the sockets stay open: nothing tells the client
    broker.thaw()
    assert proc_state(broker.pid) in ("S", "R")
    assert dev.wait_message(state_topic("twin")).payload == b"online"
    wait_for(info.is_published, 10, "the PUBACK after thaw")


def test_kill_drops_every_client_at_once(broker: Broker, connect) -> None:
    dev = connect(broker, DEV)
    pid, port = broker.pid, broker.port
    broker.kill()
    dev.wait_disconnect(timeout_s=5)
    assert dev.disconnect_code != 0
    assert not broker.alive()
    with pytest.raises(ProcessGone):
        broker.proc_sample()
    assert not Path(f"/proc/{pid}").exists()
    assert _refused(port)


def test_a_stopped_broker_exits_cleanly_and_starts_on_the_same_port(broker: Broker,
                                                                    connect) -> None:
    host = connect(broker, "twin-host")
    assert host.publish(state_topic("twin"), b"online", qos=1, retain=True) in ACCEPTED
    port = broker.port
    assert broker.stop() == 0  # SIGTERM: mosquitto saves its database and exits 0
    host.wait_disconnect()
    broker.start()
    assert broker.port == port
    dev = connect(broker, DEV)
    dev.subscribe(state_topic("twin"))
    assert dev.wait_message(state_topic("twin")).retain


def test_without_persistence_a_restart_forgets_retained_state(
        tmp_path: Path, mosquitto_binary: BrokerBinary, connect) -> None:
    with Broker(tmp_path / "b", persistence=False, binary=mosquitto_binary) as broker:
        host = connect(broker, "twin-host")
        assert host.publish(state_topic("twin"), b"online", qos=1, retain=True) in ACCEPTED
        assert host.publish("twinguard/v1/twin/info", b"info", qos=1,
                            retain=True) in ACCEPTED
        broker.restart()
        dev = connect(broker, DEV)
        dev.subscribe(state_topic("twin"))
        dev.subscribe("twinguard/v1/twin/info")
        # retained copies come right after each SUBACK; this live one comes after both
        host2 = connect(broker, "twin-host", "host-2")
        assert host2.publish("twinguard/v1/twin/info", b"after", qos=1) == 0
        assert dev.wait_message("twinguard/v1/twin/info").payload == b"after"
        assert [m.payload for m in dev.messages()] == [b"after"]


def test_proc_figures(broker: Broker) -> None:
    sample = broker.proc_sample()
    assert sample.rss_kib > 0 and sample.cpu_ticks >= 0 and sample.threads >= 1


def test_the_bridge_comes_back_after_the_site_restarts(bridged_brokers: BridgedPair,
                                                       connect) -> None:
    pair = bridged_brokers
    assert pair.plant is not None
    dev = connect(pair.plant, DEV)
    dev.subscribe(hb_topic("twin"), qos=0)
    offset = pair.site.log_size()
    pair.site.restart()
    pair.wait_bridge(offset)
    host = connect(pair.site, "twin-host")
    host.publish(hb_topic("twin"), b"after restart", qos=0)
    assert dev.wait_message(hb_topic("twin")).payload == b"after restart"


def test_a_quiet_log_still_starts(tmp_path: Path, mosquitto_binary: BrokerBinary,
                                  connect) -> None:
    """Readiness reads the "running" line (log level information), which is kept whatever
    the caller asks for (the benchmark logs errors only)."""
    with Broker(tmp_path / "b", log_types=("error",), binary=mosquitto_binary) as broker:
        assert "log_type information" in broker.conf_path.read_text()
        assert connect(broker, DEV).connect_code == 0
