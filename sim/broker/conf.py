"""mosquitto.conf text for a twinguard fleet broker (design notes FLEET.md 7.8), and the
bridge section that joins a plant broker to a site broker.

The listener is always declared (mosquitto 2.0 without one listens on localhost 1883 only
when no other listener option is given; a test must never meet a surprise listener), and
``per_listener_settings false`` makes the security options global. TLS is mandatory: the
client must present a certificate from ``cafile`` (``require_certificate true``), whose CN
becomes its user name for the ACL (``use_identity_as_username true``). This module imports
nothing of the agent; paths are written as given.

A bridge (on the plant broker, ``bridge=BridgeSpec(...)``) is an MQTT 5 client of the site
broker with its own certificate: ``cleansession true``, host → nodes topics ``in``
(heartbeat, info, STATE, NCMD, DCMD, config), nodes → host ``out`` (births, data, deaths),
the lists of :mod:`sim.broker.acl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sim.broker.acl import acl_text, inbound_topics, outbound_topics

MAX_PACKET_SIZE = 131072  # design 7.4: >= 64 KiB; a 32 KiB config bundle fits with margin
LOG_TYPES = ("error", "warning", "notice", "information", "subscribe")


@dataclass(frozen=True)
class TlsFiles:
    """A CA to verify the peer with, and our own certificate and key (PEM paths)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge to the site broker at ``address``:``port`` as MQTT client ``client_id``,
    presenting ``tls.cert`` (whose CN the site's ACL names, :func:`acl_text`'s
    ``bridge_users``), verifying the site with ``tls.ca``."""

    name: str
    address: str
    port: int
    tls: TlsFiles
    group_id: str
    host_id: str
    client_id: str = ""
    restart_timeout_s: int = 1  # reconnect delay after the site broker went away

    def topics(self) -> list[tuple[str, str, int]]:
        """``(filter, direction, qos)``: the heartbeat at QoS 0 (it expires in 1 s; a
        late one is worthless), everything else at QoS 1 (the broker downgrades to what
        the publisher used)."""
        inbound = inbound_topics(self.group_id, self.host_id)
        return [(t, "in", 0 if t.endswith("/hb") else 1) for t in inbound] + [
            (t, "out", 1) for t in outbound_topics(self.group_id)]


def bridge_section(bridge: BridgeSpec) -> list[str]:
    lines = [
        "",
        f"# bridge to the site broker: {bridge.name}",
        f"connection {bridge.name}",
        f"address {bridge.address}:{bridge.port}",
        "bridge_protocol_version mqttv50",
        "cleansession true",
        f"remote_clientid {bridge.client_id or bridge.name}",
        "notifications false",
        f"restart_timeout {bridge.restart_timeout_s}",
        "start_type automatic",
        f"bridge_cafile {bridge.tls.ca}",
        f"bridge_certfile {bridge.tls.cert}",
        f"bridge_keyfile {bridge.tls.key}",
        "bridge_tls_version tlsv1.2",
        "bridge_insecure false",
    ]
    return lines + [f"topic {t} {d} {q}" for t, d, q in bridge.topics()]


def mosquitto_conf(*, port: int, tls: TlsFiles, acl_file: Path, bind: str = "127.0.0.1",
                   persistence_dir: Path | None = None, user: str | None = None,
                   log_dest: str = "stderr", log_types: Sequence[str] = LOG_TYPES,
                   max_packet_size: int = MAX_PACKET_SIZE,
                   bridge: BridgeSpec | None = None,
                   header: str = "twinguard fleet broker (mosquitto 2.0)") -> str:
    """The configuration file's text. ``persistence_dir`` None turns persistence off
    (retained STATE and config are then lost when the broker stops); ``user`` None leaves
    mosquitto's default (it drops root privileges to ``mosquitto``); ``header`` becomes
    the leading comment (one ``#`` line per line)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if user is not None:
        lines.append(f"user {user}")
    lines += [
        "per_listener_settings false",
        f"listener {port} {bind}",
        f"cafile {tls.ca}",
        f"certfile {tls.cert}",
        f"keyfile {tls.key}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        f"max_packet_size {max_packet_size}",
        f"acl_file {acl_file}",
        "allow_anonymous false",
    ]
    if persistence_dir is None:
        lines.append("persistence false")
    else:  # keeps retained STATE and desired config across restarts
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    lines.append(f"log_dest {log_dest}")
    lines += [f"log_type {t}" for t in log_types]
    lines.append("connection_messages true")
    if bridge is not None:
        lines += bridge_section(bridge)
    return "\n".join(lines) + "\n"


EXAMPLE_HEADER = """\
twinguard fleet broker: mosquitto 2.0 (FLEET.md 7.8). Generated by
`python -m sim.broker examples` from sim/broker/conf.py; the tests run this configuration
with loopback paths.
Every client presents a certificate from the CA; its CN is its user name for the ACL.
"""
BRIDGE_HEADER = """\
A plant broker bridged to the site broker (where the twin connects): the agents connect
here, heartbeat/info/STATE/NCMD/DCMD/config come in, births/data/deaths go out. The site
broker's ACL names the bridge's certificate CN (`python -m sim.broker examples`).
"""


def example_files(group_id: str = "plant", host_id: str = "twin",
                  bridge_name: str = "plant-bridge") -> dict[str, str]:
    """The documented example files (``sim/broker/examples/``): name -> text. The ACL is
    the site broker's (with the bridge user), the configurations use production paths."""
    tls = TlsFiles(Path("/etc/twinguard/ca.crt"), Path("/etc/mosquitto/broker.crt"),
                   Path("/etc/mosquitto/broker.key"))
    acl = Path("/etc/mosquitto/twinguard.acl")

    def conf(header: str, bridge: BridgeSpec | None = None) -> str:
        return mosquitto_conf(port=8883, tls=tls, acl_file=acl, bind="0.0.0.0",
                              persistence_dir=Path("/var/lib/mosquitto"), user="mosquitto",
                              log_dest="syslog", log_types=("error", "warning", "notice"),
                              bridge=bridge, header=header)

    bridge = BridgeSpec(name=bridge_name, address="site-broker.example", port=8883,
                        tls=TlsFiles(Path("/etc/twinguard/ca.crt"),
                                     Path("/etc/mosquitto/bridge.crt"),
                                     Path("/etc/mosquitto/bridge.key")),
                        group_id=group_id, host_id=host_id, restart_timeout_s=5)
    return {
        "twinguard.acl": acl_text(group_id, host_id, bridge_users=(bridge_name,)),
        "mosquitto.conf": conf(EXAMPLE_HEADER),
        "plant-bridge.conf": conf(BRIDGE_HEADER, bridge),
    }
