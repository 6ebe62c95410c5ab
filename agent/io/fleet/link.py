"""The fleet link: the twin through an MQTT 5 broker, as a Sparkplug B edge node.

Same surface as :class:`agent.io.twin.link.TwinLink` (``run``, ``send``, ``send_many``,
``reply``, ``close``, ``connected``, ``session``, ``delivering``, ``closing``,
``counters``, ``twin_protocol``; callbacks ``on_message(msg, t)`` and
``on_connection(up, reason, t)``), so the runtime, the heartbeat monitor, authority,
recommendations, the telemetry pump and config push do not know which link they have.
The rules live in the sans-IO :class:`agent.protocol.fleet.session.FleetSession`; this
adapter does the MQTT (aiomqtt over paho-mqtt 2) and the Sparkplug bytes. Topics and
payloads: ``agent/protocol/fleet/WIRE.md``.

One connection attempt, to ``servers[at]``::

    bdSeq + 1 written to state_dir/fleet.bdseq (fsync) BEFORE the CONNECT
    CONNECT: MQTT 5, clean start, Session Expiry 0, keepalive_s, Receive Maximum 16,
      Maximum Packet Size, Will = NDEATH(bdSeq) QoS 1 not retained, TLS with the
      agent's pinned context (agent.io.twin.settings.make_client_context)
      → CONNACK → SUBSCRIBE own NCMD (1), STATE/<host> (1), the heartbeat fan-out (0),
        own config topic (1)
      → STATE online (timestamp >= the last) → NBIRTH (seq 0)
      → the first verified heartbeat → session UP: on_connection(True), TwinHello, ...
    until: the broker or the network drops us (a loss at once), a valid STATE offline
    (NDEATH, disconnect), the echo rule, no verified heartbeat for idle_timeout_s
    (half-open), or close() (NDEATH, DISCONNECT).
    Then the existing jittered backoff (agent.core.backoff; paho's reconnect is off) and
    the next server in order, wrapping.

Sending (only while a session is UP, else counted in ``dropped``): ``Status``,
``Telemetry`` (backlog with ``is_historical``), ``Resume``, ``RecommendResult`` and
``ConfigResult`` become NDATA metrics, QoS 0. MQTT never buffers for us beyond one
write: the spool stays the only buffer, and only a signed ack (NCMD ``twinguard/cmd``)
reaches the pump's ``on_ack``.

``run()`` never raises because of the broker, the twin or the network; errors are counted
and kept in ``counters.last_error``. Callback exceptions are logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent import __version__
from agent.core.backoff import Backoff
from agent.core.pacing import RateBudget
from agent.io.fleet.bdseq import BdSeqStore
from agent.io.twin.link import SESSION_NUMBERS, OnConnection, OnMessage
from agent.io.twin.settings import LinkCounters, TwinLinkSettings, make_client_context, to_ms
from agent.model.endpoint import Endpoint
from agent.model.errors import SparkplugError
from agent.model.messages import (
    CONFIG_BUNDLE_MAX,
    PROTOCOL_LATEST,
    PROTOCOL_VERSION,
    AgentHello,
    AgentMessage,
    ConfigPush,
    ConfigResult,
    Origin,
    RecommendResult,
    Resume,
    Status,
    Telemetry,
    TwinMessage,
)
from agent.protocol import sparkplug as sp
from agent.protocol.fleet import names
from agent.protocol.fleet.session import (
    Action,
    Birth,
    Deliver,
    Down,
    Drop,
    FleetSession,
    SessionSettings,
    Up,
)
from agent.protocol.twin.schema import to_wire

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 16
MAX_PACKET = 128 * 1024  # the broker's max_packet_size (FLEET.md 7.8)
NDATA_BYTES = 48 * 1024  # a telemetry range is split into NDATA payloads of about this
TICK_S = 0.05  # how often the idle and echo rules are checked
NDEATH_TIMEOUT_S = 1.0  # a deliberate NDEATH waits this long for its PUBACK at most
_BYTES = sp.DataType.Bytes
_U64 = sp.DataType.UInt64
_STR = sp.DataType.String
BIRTH_TYPES: dict[str, sp.DataType] = {
    names.M_HELLO: _BYTES, names.M_RESUME: _U64, names.M_STATUS: _BYTES, names.M_STATE: _STR,
    names.M_MODE: _STR, names.M_AUTHORITY: _STR, names.M_SPOOL_SEQ: _U64,
    names.M_SPOOL_PREV: _U64, names.M_RECORD: _BYTES, names.M_RESULT: _BYTES,
}
ALIASES = sp.AliasTable.build(names.BIRTH_METRICS)


@dataclass(frozen=True)
class FleetLinkSettings:
    """Where the brokers are, who the twin is, the timers. ValueError on impossible values.

    ``heartbeat_timeout_s``/``heartbeat_late_s`` only go into the NBIRTH's hello (the twin
    paces itself by them); the link never times heartbeats itself (the monitor does).
    """

    servers: tuple[Endpoint, ...]
    group: str
    host_id: str
    device_id: str
    twin_keys: tuple[bytes, ...]
    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path | None = None
    keepalive_s: int = 10
    echo_timeout_s: float = 3.0
    idle_timeout_s: float = 2.0
    connect_timeout_s: float = 3.0
    backoff_min_s: float = 0.2
    backoff_max_s: float = 5.0
    heartbeat_timeout_s: float = 0.5
    heartbeat_late_s: float = 0.25
    reply_rate: float = 100.0
    agent_version: str = __version__

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("servers must name at least one broker")
        if not 1 <= self.keepalive_s <= 65535:
            raise ValueError(f"keepalive_s must be in 1..65535, got {self.keepalive_s}")
        for name in ("connect_timeout_s", "backoff_min_s", "reply_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for what, value in (("group", self.group), ("host id", self.host_id),
                            ("device id", self.device_id)):
            problem = sp.topics.id_problem(value)
            if problem is not None:
                raise ValueError(f"{what} {value!r} {problem}")
        self.session_settings()  # its own checks

    def session_settings(self) -> SessionSettings:
        return SessionSettings(self.host_id, self.device_id, self.twin_keys,
                               idle_timeout_s=self.idle_timeout_s,
                               echo_timeout_s=self.echo_timeout_s)

    def tls(self, server: Endpoint) -> TwinLinkSettings:
        """The TLS settings for ``server`` (for make_client_context: the same pinned CA,
        CRL, client certificate and host name check as the TLS link)."""
        return TwinLinkSettings(
            host=server.host, port=server.port, ca_file=self.ca_file,
            cert_file=self.cert_file, key_file=self.key_file,
            server_name=server.server_name, device_id=self.device_id,
            crl_file=self.crl_file, connect_timeout_s=self.connect_timeout_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            heartbeat_late_s=self.heartbeat_late_s)

    def hello(self) -> AgentHello:
        """What the NBIRTH says about the agent (``twinguard/hello``)."""
        return AgentHello(self.device_id, self.agent_version, PROTOCOL_VERSION,
                          to_ms(self.heartbeat_timeout_s), to_ms(self.heartbeat_late_s))


@dataclass
class FleetCounters(LinkCounters):
    """The link counters, plus what only the fleet link has."""

    births: int = 0  # NBIRTHs published (rebirths included)
    rebirths: int = 0  # of them, asked by the host
    bd_seq: int | None = None  # the bdSeq of the current (or last) connection


class _End(Exception):
    """Internal: the connection ends for this reason."""


def _pack(msg: AgentMessage) -> bytes:
    data: bytes = msgpack.packb(to_wire(msg), use_bin_type=True)
    return data


def _metric(name: str, value: sp.metrics.Value, *, timestamp_ms: int | None = None,
            historical: bool = False) -> sp.Metric:
    return sp.Metric(name=name, alias=ALIASES.alias(name), datatype=BIRTH_TYPES[name],
                     value=value, timestamp_ms=timestamp_ms, is_historical=historical)


def metrics_of(msg: AgentMessage) -> list[sp.Metric]:
    """The NDATA metrics ``msg`` becomes (``WIRE.md``); ValueError for a message that has
    no NDATA form (AgentHello travels in the NBIRTH)."""
    if isinstance(msg, Status):
        return [_metric(names.M_STATUS, _pack(msg)), _metric(names.M_STATE, msg.state),
                _metric(names.M_MODE, msg.mode), _metric(names.M_AUTHORITY, msg.authority)]
    if isinstance(msg, Telemetry):
        t, old = msg.t_ms, msg.historical
        return [_metric(names.M_SPOOL_SEQ, msg.seq, timestamp_ms=t, historical=old),
                _metric(names.M_SPOOL_PREV, msg.prev, timestamp_ms=t, historical=old),
                _metric(names.M_RECORD, _pack(msg), timestamp_ms=t, historical=old)]
    if isinstance(msg, Resume):
        return [_metric(names.M_RESUME, msg.after)]
    if isinstance(msg, RecommendResult | ConfigResult):
        return [_metric(names.M_RESULT, _pack(msg))]
    raise ValueError(f"a {type(msg).__name__} is not sent as NDATA")


class FleetLink:
    """The MQTT 5 / Sparkplug B twin link. See the module docstring."""

    def __init__(self, settings: FleetLinkSettings, on_message: OnMessage,
                 on_connection: OnConnection, *, state_dir: Path,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 backoff: Backoff | None = None) -> None:
        """Raises OSError / ssl.SSLError at once if the certificates cannot be loaded."""
        self.settings = settings
        self.twin_protocol = PROTOCOL_LATEST
        self.core = FleetSession(settings.session_settings(), numbers=SESSION_NUMBERS)
        self.counters = FleetCounters()
        self.counters.refused = self.core.refused
        self._on_message = on_message
        self._on_connection = on_connection
        self._clock = clock
        self._wall_ms = wall_ms
        self._backoff = backoff or Backoff(settings.backoff_min_s, settings.backoff_max_s)
        self._bdseq = BdSeqStore(state_dir)
        for server in settings.servers:
            make_client_context(settings.tls(server))  # fail fast on a bad configuration
        self._client: aiomqtt.Client | None = None
        self._bd = 0
        self._closing = False
        self._stop = asyncio.Event()
        self._ended: asyncio.Future[str] | None = None  # set to end the connection
        self._delivering: Origin | None = None
        self._replies = RateBudget(settings.reply_rate)
        self._at = 0
        self._config_seen: bytes | None = None
        self._last: dict[str, sp.metrics.Value] = {}  # the newest value of each metric
        g, d = settings.group, settings.device_id
        self.topics = _Topics(
            nbirth=sp.topic(g, sp.Kind.NBIRTH, d), ndata=sp.topic(g, sp.Kind.NDATA, d),
            ndeath=sp.topic(g, sp.Kind.NDEATH, d), ncmd=sp.topic(g, sp.Kind.NCMD, d),
            state=sp.state_topic(settings.host_id), hb=names.heartbeat_topic(settings.host_id),
            config=names.config_topic(g, d))

    # --- the TwinLink surface -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is UP (a verified heartbeat after NBIRTH, not ended)."""
        return self.core.session is not None

    @property
    def session(self) -> Origin | None:
        return self.core.session

    @property
    def delivering(self) -> Origin | None:
        """During an ``on_message`` call: the session and epoch it came on."""
        return self._delivering

    @property
    def closing(self) -> bool:
        return self._closing

    async def run(self) -> None:
        """Connect, serve, reconnect until ``close()``. Never raises for peer faults."""
        while not self._closing:
            reason = "closed"
            try:
                await self._connection()
            except _End as exc:
                reason = str(exc)
            except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._client is None:
                    self.counters.failures += 1
            except Exception as exc:  # a bug; the link must go on
                log.exception("fleet link: unexpected error")
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                self._finish(reason if not self._closing else "closed")
            if self.closing:
                break
            delay = self._backoff.failed(self._clock())
            if len(self.settings.servers) > 1:
                self._at = (self._at + 1) % len(self.settings.servers)
                self.counters.switches += 1
            log.info("fleet link: %s; connecting to %s in %.2f s", reason,
                     self.settings.servers[self._at], delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def send(self, msg: AgentMessage) -> bool:
        """Publish ``msg`` as NDATA; False (counted in ``dropped``) if no session is UP."""
        return await self.send_many((msg,))

    async def send_many(self, msgs: Sequence[AgentMessage]) -> bool:
        """Several messages in as few NDATA payloads as fit (``NDATA_BYTES`` each), in
        order; all or nothing as far as this side can tell."""
        client = self._client
        if client is None or not self.connected:
            self.counters.dropped += len(msgs)
            return False
        payloads = self._ndata(msgs)
        try:
            for payload in payloads:
                await client.publish(self.topics.ndata, payload, qos=0,
                                     timeout=self.settings.connect_timeout_s)
        except aiomqtt.MqttError as exc:
            self.counters.last_error = f"send: {exc}"
            log.warning("fleet link: send failed: %s", exc)
            self._end_connection(f"send failed: {exc}")
            return False
        self.counters.frames_out += len(payloads)
        return True

    def reply(self, msg: AgentMessage) -> bool:
        """Publish a reply (``recommend_result``) now, within ``reply_rate`` per second,
        else drop it (counted in ``replies_dropped``). True if written."""
        client, now = self._client, self._clock()
        if client is None or not self.connected or not self._replies.take(now):
            self.counters.replies_dropped += 1
            return False
        (payload,) = self._ndata((msg,))
        # paho's publish is synchronous (seq order kept); aiomqtt's would need a task
        info = client._client.publish(self.topics.ndata, payload, 0)
        if info.rc != 0:
            self.counters.replies_dropped += 1
            return False
        self.counters.frames_out += 1
        self.counters.replies += 1
        return True

    def close(self) -> None:
        """Stop: NDEATH, disconnect, make run() return. Idempotent."""
        self._closing = True
        self._stop.set()
        self._end_connection("closed")

    # --- one connection ---------------------------------------------------------------

    async def _connection(self) -> None:
        s = self.settings
        server = s.servers[self._at]
        self.counters.endpoint = str(server)
        self._bd = await asyncio.to_thread(self._bdseq.advance)  # on disk before CONNECT
        self.counters.bd_seq = self._bd
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        props.MaximumPacketSize = MAX_PACKET
        will = aiomqtt.Will(self.topics.ndeath, self._ndeath(), qos=1, retain=False)
        client = aiomqtt.Client(
            server.host, server.port, identifier=s.device_id,
            protocol=aiomqtt.ProtocolVersion.V5, will=will, clean_start=True,
            keepalive=s.keepalive_s, timeout=s.connect_timeout_s, properties=props,
            tls_context=make_client_context(s.tls(server)), max_queued_outgoing_messages=64,
            logger=log)
        self._ended = asyncio.get_running_loop().create_future()
        async with client:
            self._client = client
            self.counters.connects += 1
            if self._closing:
                raise _End("closed")
            codes = await client.subscribe(
                [(self.topics.ncmd, 1), (self.topics.state, 1), (self.topics.hb, 0),
                 (self.topics.config, 1)], timeout=s.connect_timeout_s)
            refused = [v for c in codes
                       if (v := c.value if isinstance(c, ReasonCode) else int(c)) >= 0x80]
            if refused:
                raise _End(f"subscription refused by the broker: {refused}")
            log.info("fleet link: connected to %s (bdSeq %d), waiting for %s online",
                     server, self._bd, self.topics.state)
            await self._apply(self.core.connected(self._clock()))
            reader = asyncio.ensure_future(self._read(client))
            ticker = asyncio.ensure_future(self._tick())
            try:
                done, _ = await asyncio.wait((reader, ticker, self._ended),
                                             return_when=asyncio.FIRST_COMPLETED)
                if self._ended.done():
                    reason = self._ended.result()
                    if reason == "closed" or self._closing:
                        await self._publish_ndeath(client)
                    raise _End(reason)
                for task in done:
                    task.result()  # both loops end only by raising
            finally:
                for task in (reader, ticker):
                    task.cancel()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            now = self._clock()
            self.counters.frames_in += 1
            topic, payload = str(message.topic), bytes(message.payload)
            if topic == self.topics.hb:
                actions = self.core.fanout(payload, now)
            elif topic == self.topics.ncmd:
                actions = self._command(payload, now)
            elif topic == self.topics.state:
                try:
                    state = sp.parse_state(payload)
                except SparkplugError as exc:
                    log.warning("fleet link: STATE refused: %s", exc)
                    self.core.state_invalid()
                    continue
                actions = self.core.state(state.online, state.timestamp_ms, now)
            elif topic == self.topics.config:
                actions = self._config(payload, now)
            else:  # pragma: no cover - the broker delivers what we subscribed to
                continue
            await self._apply(actions)
        raise _End("the broker ended the connection")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self._apply(self.core.tick(self._clock()))

    def _command(self, payload: bytes, now: float) -> tuple[Action, ...]:
        """An NCMD: ``Node Control/Rebirth``, signed ``twinguard/cmd`` envelopes, and
        anything else refused (``unsigned``: a generic host writing a tag)."""
        try:
            cmd = sp.decode_payload(payload)
        except SparkplugError as exc:
            log.warning("fleet link: NCMD refused: %s", exc)
            self.core.refused["malformed"] += 1
            return ()
        actions: list[Action] = []
        for metric in cmd.metrics:
            name = metric.name
            if name is None and metric.alias is not None:
                name = ALIASES.by_alias.get(metric.alias)
            if name == sp.REBIRTH and metric.value is True:
                actions += self.core.rebirth(now)
            elif name == names.M_CMD and isinstance(metric.value, bytes):
                actions += self.core.command(metric.value, now)
            else:
                self.core.refused["unsigned"] += 1
                log.warning("fleet link: NCMD metric %s refused: unsigned", metric.label)
        return tuple(actions)

    def _config(self, payload: bytes, now: float) -> tuple[Action, ...]:
        """The retained desired configuration: into the push path once per content (the
        bundle is signed; a replay is the push path's to refuse)."""
        if not payload or payload == self._config_seen:
            return ()
        if len(payload) > CONFIG_BUNDLE_MAX:
            self.core.refused["malformed"] += 1
            return ()
        self._config_seen = payload
        return (Deliver(ConfigPush(payload), now, self.core.session or Origin(0, 0)),)

    async def _apply(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                self._deliver(action.msg, action.t, action.origin)
            elif isinstance(action, Up):
                self.counters.sessions += 1
                self._backoff.succeeded()
                log.info("fleet link: session #%d up, %s", action.origin.session, action.reason)
                self._call(self._on_connection, True, action.reason, self._clock())
            elif isinstance(action, Down):
                self._down(action.reason)
            elif isinstance(action, Birth):
                await self._birth(action)
            elif isinstance(action, Drop):
                if action.ndeath and self._client is not None:
                    await self._publish_ndeath(self._client)
                raise _End(action.reason)

    def _deliver(self, msg: TwinMessage, t: float, origin: Origin) -> None:
        self._delivering = origin
        try:
            self._call(self._on_message, msg, t)
        finally:
            self._delivering = None

    def _down(self, reason: str) -> None:
        log.info("fleet link: session down: %s", reason)
        self.counters.last_error = reason
        self._call(self._on_connection, False, reason, self._clock())

    async def _birth(self, action: Birth) -> None:
        client = self._client
        if client is None:  # pragma: no cover
            return
        now_ms = self._wall_ms()
        values = {name: self._last.get(name) for name in names.BIRTH_METRICS}
        values[names.M_HELLO] = msgpack.packb(to_wire(self.settings.hello()), use_bin_type=True)
        metrics = [sp.Metric(name=n, alias=ALIASES.alias(n), datatype=BIRTH_TYPES[n],
                             value=values[n]) for n in names.BIRTH_METRICS]
        payload = sp.encode_payload(sp.nbirth(self._bd, metrics, now_ms))
        await client.publish(self.topics.nbirth, payload, qos=0,
                             timeout=self.settings.connect_timeout_s)
        self.counters.births += 1
        self.counters.frames_out += 1
        if action.rebirth:
            self.counters.rebirths += 1
        log.info("fleet link: NBIRTH published (bdSeq %d%s)", self._bd,
                 ", a rebirth" if action.rebirth else "")

    def _ndata(self, msgs: Sequence[AgentMessage]) -> list[bytes]:
        """NDATA payloads for ``msgs`` (each with the next seq), about NDATA_BYTES each."""
        now_ms, out, batch, size = self._wall_ms(), [], [], 0
        for msg in msgs:
            metrics = metrics_of(msg)
            for m in metrics:
                if m.name is not None and m.name != names.M_RECORD:
                    self._last[m.name] = m.value
            if isinstance(msg, Status):
                self.core.status_sent(msg.seq, self._clock())
            batch += metrics
            size += sum(len(m.value) for m in metrics if isinstance(m.value, bytes)) + 32
            if size >= NDATA_BYTES:
                out.append(sp.encode_payload(sp.ndata(self.core.next_seq(), batch, now_ms)))
                batch, size = [], 0
        if batch:
            out.append(sp.encode_payload(sp.ndata(self.core.next_seq(), batch, now_ms)))
        return out

    def _ndeath(self) -> bytes:
        return sp.encode_payload(sp.ndeath(self._bd, self._wall_ms()))

    async def _publish_ndeath(self, client: aiomqtt.Client) -> None:
        """NDEATH before a deliberate disconnect (QoS 1, waits for the PUBACK briefly)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(self.topics.ndeath, self._ndeath(), qos=1,
                                 timeout=NDEATH_TIMEOUT_S)
            self.counters.frames_out += 1

    def _end_connection(self, reason: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def _finish(self, reason: str) -> None:
        if self._client is not None:
            self.counters.disconnects += 1
        self._client = None
        if not self._closing:
            self.counters.last_error = reason
        for action in self.core.disconnected(reason):
            if isinstance(action, Down):
                self._down(reason)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.counters.callback_errors += 1
            log.exception("fleet link: callback %r raised", fn)


@dataclass(frozen=True)
class _Topics:
    nbirth: str
    ndata: str
    ndeath: str
    ncmd: str
    state: str
    hb: str
    config: str


__all__ = ["FleetCounters", "FleetLink", "FleetLinkSettings", "metrics_of"]
