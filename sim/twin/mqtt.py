"""The simulated twin over MQTT 5 (``agent/protocol/fleet/WIRE.md``): one Sparkplug Primary
Host serving every agent of a group through a broker, misbehaving on demand.

Per server in ``servers`` (each its own connection, as a Sparkplug host keeps one to every
server; with a :class:`sim.broker.BridgedPair` give only the site broker) it connects as
``twin-host`` (the TLS context carries that certificate) with clean start and the Will
STATE offline, publishes STATE online (retained, QoS 1, the same timestamp as the Will,
FLEET.md §1.5) and subscribes to NBIRTH, NDATA and NDEATH of its group. A lost connection
is retried every ``RETRY_S`` with a new STATE timestamp.

Heartbeats: every ``1/rate_hz`` s one signed envelope (:func:`agent.protocol.fleet.envelope.
seal`, to ``"*"``) holding a ``Heartbeat(epoch, seq, healthy, sent_ms)`` on the fan-out topic
of every connected server, QoS 0, MQTT 5 Message Expiry 1 s. ``epoch`` is wall-clock ms at
start and grows with every ``bye``/``restart``; ``seq`` counts from 1 per epoch.

Per device (learned from its NBIRTH; the aliases too):

* NBIRTH: ``twinguard/hello`` (recorded); ``twinguard/resume`` in an NBIRTH or an NDATA:
  the telemetry sink's resume point (each one starts a new "connection" of the sink);
* NDATA: ``twinguard/record`` -> the :class:`sim.twin.sink.Sink` (``is_historical`` counted),
  ``twinguard/status`` -> ``statuses``, ``twinguard/result`` -> ``results`` /
  ``config_results``; a payload or record that does not decode is counted (``malformed_in``);
* acks: a signed NCMD ``twinguard/cmd`` ``Ack(upto=frontier)`` with ``echo`` = the highest
  ``Status.seq`` seen from the device, when ``ack_every`` records moved the frontier and
  at least every ``ack_period_s`` (default 1 s: the echo stays fresh, §7.3). Acking off
  (``set_ack(on=False)``): the acks go on with ``upto`` frozen at the last value acked: the
  twin still says it hears the agent, it just deletes nothing more.

Every publish goes through one delay line (``set_delay(ms)``): a broker that delays the
stream delays heartbeats, acks and commands alike, each signed when made and sent ``ms``
later, in order; the echo rule is what catches it.

Faults and records mirror :class:`sim.twin.server.SimTwin` where they make sense; see
``sim/twin/README.md`` (MQTT section) and ``MQTT_COMMANDS`` in :mod:`sim.twin.mqtt_control`.
Needs the ``fleet`` extra (aiomqtt, protobuf).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.properties import Properties

from agent.model.errors import ProtocolError, SparkplugError
from agent.model.messages import (
    Ack,
    AgentHello,
    Bye,
    ConfigResult,
    Heartbeat,
    Recommend,
    RecommendResult,
    Status,
    Telemetry,
    TwinMessage,
)
from agent.protocol.fleet import envelope
from agent.protocol.fleet.names import (
    M_CMD,
    M_HELLO,
    M_RECORD,
    M_RESULT,
    M_RESUME,
    M_STATUS,
    config_topic,
    heartbeat_topic,
)
from agent.protocol.sparkplug import (
    REBIRTH,
    DataType,
    Kind,
    Metric,
    Payload,
    State,
    decode_payload,
    encode_payload,
    encode_state,
    parse_topic,
    state_topic,
    topic,
)
from agent.protocol.twin.schema import decode_agent
from sim.broker.acl import HOST_USER
from sim.broker.probe import expiring
from sim.twin.faults import Faults
from sim.twin.server import RECORD_MAX, ReceivedStatus, SentHeartbeat, record_body
from sim.twin.sink import Sink

log = logging.getLogger(__name__)

HISTORY = 256  # heartbeat envelopes remembered for replay
ACK_PERIOD_S = 1.0
RETRY_S = 0.2
KEEPALIVE_S = 10
GARBAGE_KINDS = ("forged", "zero_sig", "garbage")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_key(path: Path) -> Ed25519PrivateKey:
    """The twin's Ed25519 signing key from ``path`` (PEM, PKCS#8), made (0600) if missing;
    its raw public key is written beside it in base64 in ``PATH.pub`` (what an agent's
    ``[fleet] twin_keys`` holds)."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub_path(path).write_text(public_b64(key) + "\n")
    return key


def pub_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def public_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key of ``key`` in base64 (an agent's ``[fleet] twin_keys``)."""
    return base64.b64encode(envelope.public_bytes([key])[0]).decode()


@dataclass
class Device:
    """What the twin knows of one agent (one edge node)."""

    device_id: str
    sink: Sink = field(default_factory=Sink)
    aliases: dict[int, str] = field(default_factory=dict)
    server: int | None = None  # the server its last message came through
    births: int = 0
    deaths: int = 0
    bd_seq: int | None = None
    online: bool = False
    status_seq: int | None = None  # the highest Status.seq seen (the echo)
    resume_after: int | None = None
    stream: int = 0  # resumes seen: the sink's "connection" the records arrive on
    ndata: int = 0
    records: int = 0
    unknown_aliases: int = 0
    cmd_seq: int = 0  # seq of the signed NCMD stream to this device (acks, recommends)
    acks_sent: int = 0
    last_ack_upto: int | None = None
    last_ack_t: float = 0.0
    hello: dict[str, Any] | None = None

    def stats(self) -> dict[str, Any]:
        return {"births": self.births, "deaths": self.deaths, "bd_seq": self.bd_seq,
                "online": self.online, "server": self.server, "status_seq": self.status_seq,
                "ndata": self.ndata, "records": self.records,
                "unknown_aliases": self.unknown_aliases, "acks_sent": self.acks_sent,
                "last_ack_upto": self.last_ack_upto, "hello": self.hello,
                "telemetry": self.sink.stats()}


@dataclass
class _Server:
    index: int
    host: str
    port: int
    client: aiomqtt.Client | None = None
    connected: bool = False
    connects: int = 0
    state_ts: int = 0  # the timestamp of this connection's STATE online (and its Will)


@dataclass(frozen=True)
class _Out:
    due: float
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry_s: int | None
    servers: tuple[int, ...] | None  # None: every connected server


class MqttTwin(Faults):
    """The simulated MQTT twin; ``await start()``, faults, ``stats()``, ``await stop()``.

    ``servers``: ``(host, port)`` of each broker; ``tls``: a client context presenting the
    ``twin-host`` certificate (:meth:`sim.broker.pki.FleetPki.client_context`); ``key``: the
    signing key; ``host_id``/``group``: the Sparkplug Primary Host id and group;
    ``ack_period_s``: the longest time between two acks to a device online."""

    def __init__(self, servers: Sequence[tuple[str, int]], tls: ssl.SSLContext,
                 key: Ed25519PrivateKey, *, host_id: str = "twin", group: str = "plant",
                 rate_hz: float = 10.0, epoch: int | None = None,
                 client_id: str = HOST_USER, ack_period_s: float = ACK_PERIOD_S) -> None:
        if not servers:
            raise ValueError("the MQTT twin needs at least one server")
        if not rate_hz > 0 or not ack_period_s > 0:
            raise ValueError(f"rate_hz and ack_period_s must be > 0, got {rate_hz}, "
                             f"{ack_period_s}")
        self.ack_period_s = ack_period_s
        self.servers = [_Server(i, h, p) for i, (h, p) in enumerate(servers)]
        self.port = servers[0][1]
        self._tls = tls
        self._key = key
        self.public_key = public_b64(key)
        self.host_id, self.group, self.client_id = host_id, group, client_id
        self.rate_hz = rate_hz
        self.epoch = epoch if epoch is not None else now_ms()
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._out: asyncio.Queue[_Out] | None = None
        self._closing = False
        self.init_faults()  # sending, healthy, delay_ms, ack_every, acking
        self._history: deque[bytes] = deque(maxlen=HISTORY)
        # records
        self.devices: dict[str, Device] = {}
        self.heartbeats: deque[SentHeartbeat] = deque(maxlen=RECORD_MAX)
        self.statuses: deque[tuple[ReceivedStatus, str]] = deque(maxlen=RECORD_MAX)
        self.results: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.config_results: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.recommended: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.pushes: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.states: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)  # STATE published
        self.malformed_in = 0
        self.replayed = 0
        self.garbage_sent = 0
        self.publish_errors = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect to every server (returns once each connected once; TimeoutError if one
        did not within ``timeout_s``) and start the heartbeat and ack timers."""
        self._out = asyncio.Queue()
        self._spawn(self._sender())
        for server in self.servers:
            self._spawn(self._connection(server))
        end = time.monotonic() + timeout_s
        while not all(s.connected for s in self.servers):
            if time.monotonic() > end:
                down = [f"{s.host}:{s.port}" for s in self.servers if not s.connected]
                raise TimeoutError(f"MQTT twin: not connected to {', '.join(down)} "
                                   f"within {timeout_s} s")
            await asyncio.sleep(0.01)
        self._spawn(self._beat())
        self._spawn(self._ack_timer())

    async def stop(self) -> None:
        """A clean end: STATE offline on every server (as the Will would say), disconnect."""
        self._closing = True
        for server in self.servers:
            if server.connected and server.client is not None:
                with contextlib.suppress(aiomqtt.MqttError):
                    await server.client.publish(
                        state_topic(self.host_id), encode_state(State(False, server.state_ts)),
                        qos=1, retain=True, timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connection(self, server: _Server) -> None:
        """Keep one connection to ``server``: connect, STATE online, subscribe, read."""
        while not self._closing:
            server.state_ts = now_ms()
            will = aiomqtt.Will(state_topic(self.host_id),
                                encode_state(State(False, server.state_ts)), qos=1, retain=True)
            client = aiomqtt.Client(server.host, server.port, identifier=self.client_id,
                                    protocol=aiomqtt.ProtocolVersion.V5, will=will,
                                    clean_start=True, keepalive=KEEPALIVE_S,
                                    tls_context=self._tls, timeout=5.0)
            try:
                async with client:
                    server.client = client
                    await client.publish(state_topic(self.host_id),
                                         encode_state(State(True, server.state_ts)),
                                         qos=1, retain=True)
                    self.states.append({"t": time.monotonic(), "server": server.index,
                                        "online": True, "timestamp": server.state_ts})
                    for kind in (Kind.NBIRTH, Kind.NDATA, Kind.NDEATH):
                        await client.subscribe(f"spBv1.0/{self.group}/{kind}/+", qos=1)
                    server.connected = True
                    server.connects += 1
                    log.info("MQTT twin: connected to %s:%d", server.host, server.port)
                    async for message in client.messages:
                        self._received(server, message.topic.value, bytes(message.payload)
                                       if isinstance(message.payload, bytes | bytearray)
                                       else b"")
            except aiomqtt.MqttError as exc:
                log.info("MQTT twin: %s:%d: %s", server.host, server.port, exc)
            finally:
                server.connected = False
                server.client = None
            await asyncio.sleep(RETRY_S)

    # --- the delay line ---------------------------------------------------------------

    def _emit(self, topic_name: str, payload: bytes, *, qos: int = 0, retain: bool = False,
              expiry_s: int | None = None, servers: tuple[int, ...] | None = None) -> None:
        assert self._out is not None, "start() first"
        self._out.put_nowait(_Out(time.monotonic() + self.delay_ms / 1000.0, topic_name,
                                  payload, qos, retain, expiry_s, servers))

    async def _sender(self) -> None:
        assert self._out is not None
        while True:
            out = await self._out.get()
            wait = out.due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            props: Properties | None = expiring(out.expiry_s) if out.expiry_s else None
            for server in self.servers:
                if out.servers is not None and server.index not in out.servers:
                    continue
                if not server.connected or server.client is None:
                    continue
                try:
                    await server.client.publish(out.topic, out.payload, qos=out.qos,
                                                retain=out.retain, properties=props,
                                                timeout=2.0)
                except aiomqtt.MqttError as exc:
                    self.publish_errors += 1
                    log.info("MQTT twin: publish %s on %s:%d: %s", out.topic, server.host,
                             server.port, exc)

    # --- heartbeats -------------------------------------------------------------------

    def _seal_fanout(self, msg: Heartbeat | Bye) -> bytes:
        self._seq += 1
        return envelope.seal(msg, self._key, host=self.host_id, to=envelope.FANOUT,
                             epoch=self.epoch, seq=self._seq, sent_ms=now_ms())

    async def _beat(self) -> None:
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while True:
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            next_t = max(next_t, time.monotonic() - period)  # no catch-up burst after a stall
            if not self.sending or self.paused():
                continue
            if not any(s.connected for s in self.servers):
                continue
            hb = Heartbeat(self.epoch, self._seq + 1, self.healthy, now_ms())
            wire = self._seal_fanout(hb)
            self._history.append(wire)
            self.heartbeats.append(SentHeartbeat(time.monotonic(), 0, hb.epoch, hb.seq,
                                                 hb.healthy))
            self._emit(heartbeat_topic(self.host_id), wire, expiry_s=1)

    # --- what agents send -------------------------------------------------------------

    def _received(self, server: _Server, topic_name: str, data: bytes) -> None:
        try:
            group, kind, device_id = parse_topic(topic_name)
            if group != self.group:
                return
            payload = decode_payload(data)
            dev = self.devices.setdefault(device_id, Device(device_id))
            dev.server = server.index
            if kind is Kind.NBIRTH:
                self._birth(dev, payload)
            elif kind is Kind.NDATA:
                self._data(dev, payload)
            elif kind is Kind.NDEATH:
                dev.deaths += 1
                dev.online = False
        except (SparkplugError, ProtocolError, ValueError, TypeError) as exc:
            self.malformed_in += 1
            log.warning("MQTT twin: %s: %s", topic_name, exc)

    def _birth(self, dev: Device, payload: Payload) -> None:
        dev.births += 1
        dev.online = True
        dev.aliases = {m.alias: m.name for m in payload.metrics
                       if m.alias is not None and m.name is not None}
        for m in payload.metrics:
            if m.name == "bdSeq" and isinstance(m.value, int):
                dev.bd_seq = m.value
            elif m.name == M_HELLO and isinstance(m.value, bytes):
                hello = decode_agent(_unpack(m.value))
                if isinstance(hello, AgentHello):
                    dev.hello = {"t": time.monotonic(), "agent_version": hello.agent_version,
                                 "heartbeat_timeout_ms": hello.heartbeat_timeout_ms,
                                 "heartbeat_late_ms": hello.heartbeat_late_ms}
        self._data(dev, payload, birth=True)
        self._send_ack(dev)

    def _data(self, dev: Device, payload: Payload, *, birth: bool = False) -> None:
        now = time.monotonic()
        if not birth:
            dev.ndata += 1
        for m in payload.metrics:
            name = m.name if m.name is not None else dev.aliases.get(m.alias or -1)
            if name is None:
                dev.unknown_aliases += 1  # not in its NBIRTH: a host would ask for a rebirth
                continue
            if name == M_RESUME and isinstance(m.value, int):
                self._resume(dev, m.value)
                continue
            if not isinstance(m.value, bytes) or name not in (M_RECORD, M_STATUS, M_RESULT):
                continue
            msg = decode_agent(_unpack(m.value))
            if isinstance(msg, Telemetry):
                dev.records += 1
                if dev.sink.receive(dev.stream, msg.seq, msg.prev, m.is_historical):
                    dev.sink.note_body(msg.seq, record_body(msg.body))
                due = dev.sink.ack_due(self.ack_every) if self.acking else None
                if due is not None:
                    self._send_ack(dev, due)
            elif isinstance(msg, Status):
                dev.status_seq = msg.seq if dev.status_seq is None else max(dev.status_seq,
                                                                            msg.seq)
                self.statuses.append((ReceivedStatus(now, 0, msg.state, msg.mode, msg.seq,
                                                     msg.authority), dev.device_id))
            elif isinstance(msg, RecommendResult):
                self.results.append({"t": now, "device": dev.device_id, "id": msg.id,
                                     "accepted": msg.accepted, "reason": msg.reason,
                                     "detail": msg.detail})
            elif isinstance(msg, ConfigResult):
                self.config_results.append({"t": now, "device": dev.device_id,
                                            "version": msg.version, "accepted": msg.accepted,
                                            "reason": msg.reason, "detail": msg.detail})

    # --- what the twin sends each device ----------------------------------------------

    def _command(self, dev: Device, msg: TwinMessage | None, *, rebirth: bool = False,
                 key: Ed25519PrivateKey | None = None) -> None:
        """One NCMD to ``dev``: ``msg`` signed (by ``key``, default the twin's; ``echo`` =
        the highest status seq seen), or a plain ``Node Control/Rebirth``."""
        stamp = now_ms()
        metrics: list[Metric] = []
        if msg is not None:
            dev.cmd_seq += 1
            wire = envelope.seal(msg, key or self._key, host=self.host_id, to=dev.device_id,
                                 epoch=self.epoch, seq=dev.cmd_seq, sent_ms=stamp,
                                 echo=dev.status_seq)
            metrics.append(Metric(name=M_CMD, alias=None, datatype=DataType.Bytes, value=wire,
                                  timestamp_ms=stamp))
        if rebirth:
            metrics.append(Metric(name=REBIRTH, alias=None, datatype=DataType.Boolean,
                                  value=True, timestamp_ms=stamp))
        data = encode_payload(Payload(timestamp_ms=stamp, seq=None, metrics=tuple(metrics)))
        servers = None if dev.server is None else (dev.server,)
        self._emit(topic(self.group, Kind.NCMD, dev.device_id), data, servers=servers)

    def _resume(self, dev: Device, after: int) -> None:
        """``twinguard/resume`` (in an NBIRTH or an NDATA): the agent's spool stream starts
        again after ``after`` (the sink's new "connection")."""
        dev.stream += 1
        dev.resume_after = after
        dev.sink.resume(dev.stream, after)

    def _send_ack(self, dev: Device, upto: int | None = None) -> None:
        """A signed Ack: ``upto`` (default: the frontier, or the last value acked when
        acking is off; the resume point before anything was acked; 0 before a resume)."""
        if upto is None:
            sink = dev.sink
            if self.acking and sink.frontier is not None:
                upto = sink.mark_acked()
            else:
                upto = dev.last_ack_upto if dev.last_ack_upto is not None else dev.resume_after
        if upto is None:  # no resume point yet: 0 deletes nothing, the echo still counts
            upto = 0
        self._command(dev, Ack(upto))
        dev.acks_sent += 1
        dev.last_ack_upto = upto
        dev.last_ack_t = time.monotonic()

    async def _ack_timer(self) -> None:
        while True:
            await asyncio.sleep(self.ack_period_s / 4)
            now = time.monotonic()
            for dev in list(self.devices.values()):
                if dev.online and now - dev.last_ack_t >= self.ack_period_s:
                    self._send_ack(dev)

    def _targets(self, device: str | None) -> list[Device]:
        if device is None:
            return [d for d in self.devices.values() if d.online]
        if device not in self.devices:
            raise ValueError(f"no device {device!r} has been seen (known: "
                             f"{', '.join(sorted(self.devices)) or 'none'})")
        return [self.devices[device]]

    # --- faults (the control channel; the shared switches are Faults') -------------

    def bye(self, reason: str | None = None) -> int:
        """A signed ``bye`` for the current epoch on the fan-out topic; the next epoch
        after (heartbeats go on in it). Returns the new epoch."""
        self._emit(heartbeat_topic(self.host_id), self._seal_fanout(Bye(self.epoch, reason)),
                   expiry_s=1)
        return self.restart()

    def restart(self) -> int:
        """A new epoch (seq from 1), as a twin that restarted."""
        self.epoch = max(self.epoch + 1, now_ms())
        self._seq = 0
        for dev in self.devices.values():
            dev.cmd_seq = 0
        return self.epoch

    def replay(self, count: int = 3) -> int:
        """Re-publish the ``count`` oldest remembered heartbeat envelopes, byte for byte."""
        old = list(self._history)[: max(0, count)]
        for wire in old:
            self._emit(heartbeat_topic(self.host_id), wire, expiry_s=1)
        self.replayed += len(old)
        return len(old)

    def unsigned(self, kind: str) -> None:
        """One heartbeat the agent must refuse on the fan-out topic: ``forged`` (signed by
        a key not the twin's: "signature"), ``zero_sig`` (64 zero bytes as the signature:
        "signature"), ``garbage`` (not an envelope: "malformed")."""
        hb = Heartbeat(self.epoch, self._seq + 1, self.healthy, now_ms())
        if kind == "forged":
            wire = envelope.seal(hb, Ed25519PrivateKey.generate(), host=self.host_id,
                                 to=envelope.FANOUT, epoch=self.epoch, seq=self._seq + 1,
                                 sent_ms=now_ms())
        elif kind == "zero_sig":
            signed = envelope.seal(hb, self._key, host=self.host_id, to=envelope.FANOUT,
                                   epoch=self.epoch, seq=self._seq + 1, sent_ms=now_ms())
            raw, _, _ = envelope.unpack(signed)
            wire = msgpack.packb([raw, bytes(64)], use_bin_type=True)
        elif kind == "garbage":
            wire = b"\xc1not an envelope"
        else:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(GARBAGE_KINDS)}")
        self.garbage_sent += 1
        self._emit(heartbeat_topic(self.host_id), wire, expiry_s=1)

    def forge_ack(self, upto: int | None = None, device: str | None = None) -> dict[str, Any]:
        """An ``Ack`` signed by a key that is not the twin's (as a broker could make one):
        ``upto`` defaults to the highest seq received, so an agent that took it would
        delete everything the twin holds, acknowledged or not."""
        sent = []
        for dev in self._targets(device):
            target = upto if upto is not None else max(dev.sink.received, default=0)
            self._command(dev, Ack(target), key=Ed25519PrivateKey.generate())
            sent.append({"device": dev.device_id, "upto": target})
        return {"forged": sent}

    def state_offline(self) -> dict[str, Any]:
        """A valid STATE offline on every server (its connection's own timestamp)."""
        for server in self.servers:
            self._emit(state_topic(self.host_id),
                       encode_state(State(False, server.state_ts)), qos=1, retain=True,
                       servers=(server.index,))
            self.states.append({"t": time.monotonic(), "server": server.index,
                                "online": False, "timestamp": server.state_ts})
        return {"servers": len(self.servers)}

    def forge_state_online(self) -> dict[str, Any]:
        """STATE online (a fresh timestamp) and no heartbeats from now on: a host that says
        it is there and proves nothing."""
        self.sending = False
        stamp = now_ms()
        for server in self.servers:
            server.state_ts = stamp
            self.states.append({"t": time.monotonic(), "server": server.index,
                                "online": True, "timestamp": stamp})
        self._emit(state_topic(self.host_id), encode_state(State(True, stamp)), qos=1,
                   retain=True)
        return {"timestamp": stamp}

    def recommend(self, output: str, value: float, valid_s: float,
                  rec_id: str | None = None, device: str | None = None) -> dict[str, Any]:
        """A signed recommendation to ``device`` (default: every device online) now."""
        rid = rec_id or f"r{len(self.recommended) + 1}"
        targets = self._targets(device)
        for dev in targets:
            self._command(dev, Recommend(rid, output, value, valid_s))
        sent = {"t": time.monotonic(), "id": rid, "output": output, "value": value,
                "valid_s": valid_s, "devices": [d.device_id for d in targets]}
        self.recommended.append(sent)
        return sent

    def rebirth(self, device: str | None = None) -> dict[str, Any]:
        targets = self._targets(device)
        for dev in targets:
            self._command(dev, None, rebirth=True)
        return {"devices": [d.device_id for d in targets]}

    def push(self, bundle: bytes, device: str | None = None) -> dict[str, Any]:
        """The bundle, retained (QoS 1), on ``device``'s config topic (default: every
        device seen)."""
        devices = [device] if device is not None else sorted(self.devices)
        if not devices:
            raise ValueError("no device to push to: name one ('device') or wait for a birth")
        for dev_id in devices:
            self._emit(config_topic(self.group, dev_id), bundle, qos=1, retain=True)
        sent = {"t": time.monotonic(), "bytes": len(bundle), "devices": devices}
        self.pushes.append(sent)
        return sent

    # --- records ----------------------------------------------------------------------

    def device(self, device: str | None) -> Device:
        """``device``, or the only/first one seen when None (ValueError if none)."""
        if device is None:
            if not self.devices:
                raise ValueError("no device has been seen yet")
            return next(iter(self.devices.values()))
        return self._targets(device)[0]

    def telemetry(self, seqs: bool = False, events: bool = False, policy: bool = False,
                  device: str | None = None) -> dict[str, Any]:
        """The sink's stats of ``device`` (as the TLS twin's ``telemetry``)."""
        return self.device(device).sink.report(seqs, events, policy)

    def stats(self, last: int = 100) -> dict[str, Any]:
        """A JSON-able summary; ``heartbeats``/``statuses`` as the TLS twin's (``conn`` is 0:
        there are no connections to agents; a status's ``conn`` is its device id), plus
        ``devices`` and ``servers``."""
        hbs = list(self.heartbeats)[-last:] if last > 0 else []
        sts = list(self.statuses)[-last:] if last > 0 else []
        return {
            "epoch": self.epoch, "seq": self._seq, "rate_hz": self.rate_hz,
            "sending": self.sending, "paused": self.paused(),
            "healthy": self.healthy, "delay_ms": self.delay_ms, "public_key": self.public_key,
            "servers": [{"host": s.host, "port": s.port, "connected": s.connected,
                         "connects": s.connects, "state_ts": s.state_ts} for s in self.servers],
            "connections": sum(s.connected for s in self.servers),
            "malformed_in": self.malformed_in, "replayed": self.replayed,
            "garbage_sent": self.garbage_sent, "publish_errors": self.publish_errors,
            "heartbeats_sent": len(self.heartbeats),
            "last_heartbeat_t": self.heartbeats[-1].t if self.heartbeats else None,
            "heartbeats": [[h.t, h.conn, h.epoch, h.seq, h.healthy] for h in hbs],
            "statuses_received": len(self.statuses),
            "statuses": [[s.t, dev, s.state, s.mode, s.seq, s.authority] for s, dev in sts],
            "devices": {k: d.stats() for k, d in self.devices.items()},
            "ack_every": self.ack_every, "acking": self.acking,
            "states": list(self.states)[-last:] if last > 0 else [],
            "recommended": list(self.recommended)[-last:] if last > 0 else [],
            "results": list(self.results)[-last:] if last > 0 else [],
            "pushes": list(self.pushes)[-last:] if last > 0 else [],
            "config_results": list(self.config_results)[-last:] if last > 0 else [],
        }


def _unpack(data: bytes) -> dict[str, Any]:
    """A msgpack wire map from a Bytes metric; ProtocolError if it is not one."""
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not msgpack: {exc}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("not a map")
    return frame
