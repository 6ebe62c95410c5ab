"""The fleet broker's front door: TLS with a client certificate from the fleet CA, nothing
else, on 127.0.0.1 only (FLEET.md 7.8), against a real mosquitto."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from agent.io.pki import init_pki
from agent.io.twin.settings import TwinLinkSettings, make_client_context
from sim.broker import Broker
from sim.broker.acl import hb_topic, node_topic
from sim.broker.pki import FleetPki
from sim.broker.probe import Probe, ProbeError

pytestmark = pytest.mark.timeout(60)


def _listening(pid: int) -> set[tuple[str, int]]:
    """The TCP (v4 and v6) sockets process ``pid`` listens on, as (address, port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                addr, port = cols[1].split(":")
                if table == "tcp":
                    host = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
                else:
                    host = "v6:" + addr
                found.add((host, int(port, 16)))
    return found


def test_a_client_certificate_connects_with_its_cn_as_user(broker: Broker, connect) -> None:
    offset = broker.log_size()
    probe = connect(broker, "twin-host", "host-1")
    assert probe.connect_code == 0
    broker.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as host-1 .*u'twin-host'",
                    10, offset=offset)


def test_it_listens_on_loopback_only(broker: Broker) -> None:
    assert _listening(broker.pid) == {("127.0.0.1", broker.port)}


def test_a_client_without_a_certificate_is_refused(broker: Broker) -> None:
    offset = broker.log_size()
    with pytest.raises(ProbeError, match=r"refused|cannot connect") as refused:
        Probe(broker.port, broker.pki.client_context(None), "no-cert", timeout_s=10)
    assert "CONNACK 0" not in str(refused.value)
    broker.wait_log("peer did not return a certificate", 10, offset=offset)
    assert "New client connected" not in broker.log_since(offset)


def test_a_certificate_from_another_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = init_pki(tmp_path / "other", device_id="sim-tank-01")  # same CN, wrong CA
    ctx = broker.pki.client_context(None)
    ctx.load_cert_chain(str(other.device_cert), str(other.device_key))
    offset = broker.log_size()
    with pytest.raises(ProbeError):
        Probe(broker.port, ctx, "sim-tank-01", timeout_s=10)
    broker.wait_log("certificate verify failed|unknown ca|OpenSSL Error", 10, offset=offset)
    assert "New client connected" not in broker.log_since(offset)


def test_plain_mqtt_without_tls_is_refused(broker: Broker) -> None:
    offset = broker.log_size()
    with pytest.raises(ProbeError):
        Probe(broker.port, None, "plain", timeout_s=10)
    broker.wait_log("wrong version number", 10, offset=offset)
    assert "New client connected" not in broker.log_since(offset)


def test_the_client_refuses_a_broker_it_cannot_verify(broker: Broker, tmp_path: Path) -> None:
    other = init_pki(tmp_path / "other", device_id="x")
    ctx = ssl.create_default_context(cafile=str(other.ca_cert))
    files = broker.pki.client("sim-tank-01")
    ctx.load_cert_chain(str(files.cert), str(files.key))
    with pytest.raises(ProbeError, match="certificate verify failed"):
        Probe(broker.port, ctx, "sim-tank-01", timeout_s=10)


def test_the_agents_own_tls_context_and_a_stack_pki_work(tmp_path: Path,
                                                         mosquitto_binary) -> None:
    """What FleetLink will do: the PKI a ``sim.stack`` makes (adopted by FleetPki: its CA
    signs the broker's certificate), the agent's ``make_client_context`` with server name
    localhost; the device cert's CN is the ACL's user."""
    paths = init_pki(tmp_path / "pki", device_id="sim-tank-01")
    with Broker(tmp_path / "broker", pki=FleetPki(tmp_path / "pki"),
                binary=mosquitto_binary) as broker:
        settings = TwinLinkSettings(
            host="localhost", port=broker.port, ca_file=paths.ca_cert,
            cert_file=paths.device_cert, key_file=paths.device_key, server_name="localhost",
            device_id="sim-tank-01")
        with Probe(broker.port, make_client_context(settings), "sim-tank-01",
                   host="localhost") as probe:
            assert probe.publish(node_topic("plant", "NDATA", "sim-tank-01"), b"x",
                                 qos=1) in (0x00, 0x10)
            assert probe.publish(hb_topic("twin"), b"x", qos=1) == 0x87
