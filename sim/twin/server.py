"""The simulated twin: a TLS server speaking agent/protocol/twin/PROTOCOL.md, misbehaving on demand.

Per accepted connection: TLS handshake (client certificate from the CA required, TLS >= 1.2
unless a test narrows it), then ``hello`` (protocol 2, twin id, epoch), then a ``heartbeat``
every ``1/rate_hz`` seconds (+ delay + uniform jitter). ``seq`` strictly increases within an
epoch across all connections; the epoch starts at wall-clock milliseconds and only grows.
Agent messages (``hello``, ``status``) are decoded strictly and recorded; a malformed one is
counted and its connection closed, as the agent does. Each agent ``hello`` is recorded with
the heartbeat timing it announced (``agent_hellos``; the latest in ``stats()["agent_timing"]``).

Faults (methods, also reachable through ``sim.twin.control``) apply to every connection:

====================  ================================================================
``stop_heartbeats``   no more heartbeats, connections stay open (``resume`` undoes)
``set_delay(ms)``     each heartbeat interval is ``ms`` longer
``set_jitter(ms)``    each interval varies uniformly by +-``ms``
``pause(s)``          no heartbeats for ``s`` seconds, then on again by themselves
``restart``           new session: higher epoch, seq from 1, every connection dropped
``replay(count)``     resend the ``count`` oldest remembered heartbeat frames, byte for byte
``garbage(kind)``     one bad frame (``GARBAGE`` kinds) to every connection
``set_healthy(b)``    heartbeats say ``healthy=b``
``bye(reason)``       ``bye`` for the current epoch, drop connections, next epoch for new ones
``half_open``         current connections go silent both ways; the sockets stay open
``vanish(s)``         drop every connection and refuse new ones for ``s`` seconds
``set_ack(every, on)`` ack telemetry every ``every`` records (``on=False``: never ack)
``recommend(...)``    send one recommendation now; ``script(items)`` sends them on a timeline
``burst(count, ...)`` ``count`` recommendations (and optionally a heartbeat) in ONE write
``model(...)``        a simple model: a P controller of the heater from the telemetry
``push(bundle)``      send one ``config_push`` (signed bundle bytes) now
====================  ================================================================

Telemetry (``resume``/``telemetry``) goes to a :class:`sim.twin.sink.Sink` (dedup, contiguous
frontier, acks); ``recommend_result`` replies are kept in ``results``, ``config_result``
replies in ``config_results`` (both in ``stats()``).

Every fresh heartbeat sent is recorded with ``time.monotonic()`` (``heartbeats``), so a
benchmark in another process on the same host can compute "last heartbeat + timeout".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from agent.io.pki import PkiPaths
from agent.model.errors import FrameError, ProtocolError
from agent.model.messages import (
    PROTOCOL_LATEST,
    Ack,
    AgentHello,
    Bye,
    ConfigPush,
    ConfigResult,
    Heartbeat,
    Recommend,
    RecommendResult,
    Resume,
    Status,
    Telemetry,
    TwinHello,
)
from agent.protocol.twin.frames import DEFAULT_MAX_FRAME, HEADER, FrameDecoder, encode
from agent.protocol.twin.schema import decode_agent, to_wire
from sim.twin.faults import Faults
from sim.twin.sink import Sink

log = logging.getLogger(__name__)

HISTORY = 256  # heartbeat frames remembered for replay
RECORD_MAX = 10_000  # heartbeats / statuses kept for stats
BURST_MAX = 100_000  # recommendations in one burst write

GARBAGE: dict[str, bytes] = {
    "zero_length": HEADER.pack(0),
    "bad_msgpack": HEADER.pack(1) + b"\xc1",  # 0xc1 is "never used" in msgpack
    "oversize": HEADER.pack(0xFFFFFFFF) + b"\x00" * 16,
    "not_map": HEADER.pack(4) + b"\x93\x01\x02\x03",  # [1, 2, 3]
    "unknown_type": encode({"t": "nonsense", "x": 1}),
    "wrong_types": encode({"t": "heartbeat", "epoch": 1, "seq": "one", "healthy": 1}),
    "trailing": HEADER.pack(2) + b"\x80\x80",  # two empty maps in one frame
    # well-framed, but not a valid recommend (id is not text): the agent finds out only
    # when it reaches it in order, not as it reads it (PROTOCOL.md §6.1)
    "bad_recommend": encode({"t": "recommend", "id": 7, "output": "o", "value": 1.0,
                             "valid_s": 1.0}),
}


@dataclass(frozen=True)
class SentHeartbeat:
    t: float  # time.monotonic() just before the write
    conn: int
    epoch: int
    seq: int
    healthy: bool


@dataclass(frozen=True)
class ReceivedStatus:
    t: float
    conn: int
    state: str
    mode: str
    seq: int
    authority: str | None = None


def make_server_context(
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    *,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """TLS server context requiring a client certificate issued by ``ca_file``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if min_version < ssl.TLSVersion.TLSv1_2:
        # only to prove the agent refuses old TLS; OpenSSL 3 needs a lower security level
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


@dataclass
class _Conn:
    id: int
    writer: asyncio.StreamWriter
    peer: str
    half_open: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, data: bytes) -> None:
        if not self.half_open and not self.writer.is_closing():
            self.writer.write(data)

    def abort(self) -> None:
        self.writer.transport.abort()
        self.closed.set()


class _Accept(asyncio.Protocol):
    """Holds a new TCP connection still (reading paused, so the ClientHello stays in the
    socket) until the twin layers TLS on it; counting handshake failures needs that."""

    def __init__(self, twin: SimTwin) -> None:
        self._twin = twin

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if time.monotonic() < self._twin.gone_until:
            self._twin.refused += 1
            transport.abort()
            return
        transport.pause_reading()
        self._twin._spawn(self._twin._handshake(transport))


class SimTwin(Faults):
    """The simulated twin server. ``await start()``, faults, ``stats()``, ``await stop()``."""

    def __init__(
        self,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_hz: float = 10.0,
        twin_id: str = "sim-twin",
        epoch: int | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        min_tls: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        max_tls: ssl.TLSVersion | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.host = host
        self.port = port
        self.rate_hz = rate_hz
        self.twin_id = twin_id
        self.max_frame = max_frame
        self._ctx = make_server_context(
            ca_file, cert_file, key_file, min_version=min_tls, max_version=max_tls
        )
        self.epoch = epoch if epoch is not None else time.time_ns() // 1_000_000
        self._seq = 0
        self._rng = rng or random.Random()
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        # fault state
        self.init_faults()
        self.jitter_ms = 0.0
        self._history: deque[tuple[int, int, bytes]] = deque(maxlen=HISTORY)
        # records
        self.heartbeats: deque[SentHeartbeat] = deque(maxlen=RECORD_MAX)
        self.statuses: deque[ReceivedStatus] = deque(maxlen=RECORD_MAX)
        self.hello_protocol = PROTOCOL_LATEST  # what its hello says (tests: 1 or a bad one)
        # (t, conn, device_id, agent_version, heartbeat_timeout_ms, heartbeat_late_ms)
        self.agent_hellos: deque[tuple[float, int, str, str, int, int]] = deque(
            maxlen=RECORD_MAX)
        self.connections_total = 0
        self.tls_failures = 0
        self.malformed_in = 0
        self.replayed = 0
        self.garbage_sent = 0
        # telemetry and recommendations (issue 5)
        self.sink = Sink()
        self.gone_until = 0.0
        self.refused = 0
        self.vanished = 0
        self.results: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.pushes: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.config_results: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.push_on_hello: bytes | None = None  # pushed once, to the first agent that greets
        self.recommended: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self.bursts: deque[dict[str, Any]] = deque(maxlen=RECORD_MAX)
        self._rec_ids = itertools.count(1)

    @classmethod
    def from_pki(cls, paths: PkiPaths, **kwargs: Any) -> SimTwin:
        """A twin using ``paths``' CA and twin certificate."""
        return cls(paths.ca_cert, paths.twin_cert, paths.twin_key, **kwargs)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one; ``self.port`` is then set)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accept(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("sim twin listening on %s:%d, epoch %d", self.host, self.port, self.epoch)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        return len(self._conns)

    # --- faults -----------------------------------------------------------------------

    def set_jitter(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("jitter must be >= 0 ms")
        self.jitter_ms = ms

    def restart(self) -> int:
        """New session: a higher epoch, seq restarts, every connection dropped."""
        self._new_epoch()
        for conn in list(self._conns.values()):
            conn.abort()
        log.info("sim twin restarted: epoch %d", self.epoch)
        return self.epoch

    def bye(self, reason: str | None = None) -> int:
        """Say bye for the current epoch, drop connections; returns the new epoch."""
        frame = encode(to_wire(Bye(self.epoch, reason)))
        for conn in list(self._conns.values()):
            conn.send(frame)
            conn.writer.close()
            conn.closed.set()
        self._new_epoch()
        return self.epoch

    def replay(self, count: int = 3) -> int:
        """Resend the ``count`` oldest remembered heartbeat frames; returns how many."""
        frames = list(self._history)[: max(0, count)]
        for _, _, data in frames:
            for conn in self._conns.values():
                conn.send(data)
        self.replayed += len(frames)
        return len(frames)

    def garbage(self, kind: str) -> None:
        """Send one bad frame of ``kind`` (a key of GARBAGE) to every connection."""
        data = GARBAGE.get(kind)
        if data is None:
            raise ValueError(f"unknown garbage kind {kind!r}; one of {', '.join(GARBAGE)}")
        for conn in self._conns.values():
            conn.send(data)
        self.garbage_sent += 1

    def half_open(self) -> int:
        """Current connections stop reading and writing, without closing; returns how many."""
        for conn in self._conns.values():
            conn.half_open = True
            transport = conn.writer.transport
            if isinstance(transport, asyncio.ReadTransport):
                transport.pause_reading()
        return len(self._conns)

    def vanish(self, seconds: float) -> int:
        """Disappear: drop every connection, refuse new ones for ``seconds``; how many."""
        if seconds < 0:
            raise ValueError("vanish needs s >= 0")
        self.gone_until = time.monotonic() + seconds
        self.vanished += 1
        n = len(self._conns)
        for conn in list(self._conns.values()):
            conn.abort()
        return n

    def recommend(self, output: str, value: float, valid_s: float,
                  rec_id: str | None = None) -> dict[str, Any]:
        """Send one recommendation to every connection now; returns what was sent."""
        rid = rec_id or f"r{next(self._rec_ids)}"
        frame = encode(to_wire(Recommend(rid, output, value, valid_s)), self.max_frame)
        for conn in self._conns.values():
            conn.send(frame)
        sent = {"t": time.monotonic(), "id": rid, "output": output, "value": value,
                "valid_s": valid_s, "connections": len(self._conns)}
        self.recommended.append(sent)
        return sent

    def burst(self, count: int, output: str, value: float, valid_s: float = 5.0, *,
              heartbeat: bool = False) -> dict[str, Any]:
        """Send ``count`` recommendations (ids ``bN-000000`` up, N counting the bursts) to
        every connection in one write (one ``write()`` call per connection, the frames back
        to back), then, with ``heartbeat``, a fresh
        heartbeat in the same write behind them (recorded like any other). ValueError for a
        count outside 1..BURST_MAX. Returns what was sent (``bytes`` per connection)."""
        if not 1 <= count <= BURST_MAX:
            raise ValueError(f"burst count must be in 1..{BURST_MAX}, got {count}")
        n = len(self.bursts) + 1
        # one frame encoded by the strict encoder, the others made from it by swapping the
        # id (all ids the same length, so the same frame length): 8,000 frames in a few ms,
        # so that building them does not hold up this twin's own heartbeats
        template = f"b{n}-{{:06d}}"
        first = encode(to_wire(Recommend(template.format(0), output, value, valid_s)),
                       self.max_frame)
        head, tail = first.split(template.format(0).encode())
        data = b"".join(head + template.format(i).encode() + tail for i in range(count))
        hb_seq = None
        if heartbeat:
            self._seq += 1
            hb = Heartbeat(self.epoch, self._seq, self.healthy, time.time_ns() // 1_000_000)
            frame = encode(to_wire(hb))
            self._history.append((hb.epoch, hb.seq, frame))
            data += frame
            hb_seq = hb.seq
        t = time.monotonic()
        for conn in self._conns.values():
            conn.send(data)
        if hb_seq is not None:
            for conn in self._conns.values():
                self.heartbeats.append(SentHeartbeat(t, conn.id, self.epoch, hb_seq,
                                                     self.healthy))
        sent = {"t": t, "count": count, "bytes": len(data), "heartbeat_seq": hb_seq,
                "connections": len(self._conns)}
        self.bursts.append(sent)
        return sent

    def push(self, bundle: bytes) -> dict[str, Any]:
        """Send a ``config_push`` of ``bundle`` to every connection now (no size check
        beyond the frame: the agent's refusals are what tests look at)."""
        frame = encode(to_wire(ConfigPush(bundle)), self.max_frame)
        for conn in self._conns.values():
            conn.send(frame)
        sent = {"t": time.monotonic(), "bytes": len(bundle), "connections": len(self._conns)}
        self.pushes.append(sent)
        return sent

    def script(self, items: list[dict[str, Any]]) -> int:
        """Send recommendations at ``at_s`` seconds from now; ValueError on a bad item."""
        plan = []
        for i, item in enumerate(items):
            try:
                at = float(item["at_s"])
                args = (str(item["output"]), float(item["value"]), float(item["valid_s"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"script item {i}: needs at_s, output, value, valid_s") from exc
            rid = item.get("id")
            plan.append((at, args, str(rid) if rid is not None else None))
        self._spawn(self._run_script(sorted(plan, key=lambda p: p[0])))
        return len(plan)

    async def _run_script(self, plan: list[tuple[float, tuple[str, float, float], str | None]]
                          ) -> None:
        t0 = time.monotonic()
        for at, (output, value, valid_s), rid in plan:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            self.recommend(output, value, valid_s, rid)

    def model(self, setpoint: float, kp: float = 5.0, period_s: float = 0.5,
              output: str = "heater_power", group: str = "temperature") -> None:
        """A P controller: every ``period_s`` recommend ``output = kp * (setpoint - T)``
        (0..100) with T the voted ``group`` value of the latest poll telemetry."""
        if not period_s > 0:
            raise ValueError("period_s must be > 0")
        self._spawn(self._run_model(setpoint, kp, period_s, output, group))

    async def _run_model(self, setpoint: float, kp: float, period_s: float, output: str,
                         group: str) -> None:
        while True:
            await asyncio.sleep(period_s)
            poll = self.sink.last_poll
            vote = (poll or {}).get("votes", {}).get(group, {})
            value = vote.get("value")
            if isinstance(value, int | float):
                target = min(100.0, max(0.0, kp * (setpoint - float(value))))
                self.recommend(output, round(target, 1), 2 * period_s)

    def telemetry(self, seqs: bool = False, events: bool = False,
                  policy: bool = False) -> dict[str, Any]:
        """The sink's stats; ``policy`` adds what data minimisation is judged by: the
        per-name counts, the last poll records and every aggregate record."""
        return self.sink.report(seqs, events, policy)

    # --- records ----------------------------------------------------------------------

    def stats(self, last: int = 100) -> dict[str, Any]:
        """A JSON-able summary; ``heartbeats``/``statuses`` are the last ``last`` records."""
        hbs = list(self.heartbeats)[-last:] if last > 0 else []
        sts = list(self.statuses)[-last:] if last > 0 else []
        hellos = list(self.agent_hellos)[-last:] if last > 0 else []
        return {
            "epoch": self.epoch,
            "seq": self._seq,
            "rate_hz": self.rate_hz,
            "sending": self.sending,
            "paused": self.paused(),
            "healthy": self.healthy,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "connections": len(self._conns),
            "connections_total": self.connections_total,
            "tls_failures": self.tls_failures,
            "malformed_in": self.malformed_in,
            "replayed": self.replayed,
            "garbage_sent": self.garbage_sent,
            "heartbeats_sent": len(self.heartbeats),
            "last_heartbeat_t": self.heartbeats[-1].t if self.heartbeats else None,
            "heartbeats": [[h.t, h.conn, h.epoch, h.seq, h.healthy] for h in hbs],
            "statuses_received": len(self.statuses),
            "statuses": [[s.t, s.conn, s.state, s.mode, s.seq, s.authority] for s in sts],
            "agent_hellos": [list(h) for h in hellos],
            "agent_timing": (
                {"heartbeat_timeout_ms": self.agent_hellos[-1][4],
                 "heartbeat_late_ms": self.agent_hellos[-1][5]}
                if self.agent_hellos else None),
            "telemetry": self.sink.stats(),
            "ack_every": self.ack_every,
            "acking": self.acking,
            "gone": time.monotonic() < self.gone_until,
            "refused": self.refused,
            "vanished": self.vanished,
            "recommended": list(self.recommended)[-last:] if last > 0 else [],
            "bursts": list(self.bursts)[-last:] if last > 0 else [],
            "results": list(self.results)[-last:] if last > 0 else [],
            "pushes": list(self.pushes)[-last:] if last > 0 else [],
            "config_results": list(self.config_results)[-last:] if last > 0 else [],
        }

    # --- internals --------------------------------------------------------------------

    def _new_epoch(self) -> None:
        self.epoch = max(self.epoch + 1, time.time_ns() // 1_000_000)
        self._seq = 0

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = str(transport.get_extra_info("peername"))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=65536)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            tls = await loop.start_tls(
                transport, protocol, self._ctx, server_side=True, ssl_handshake_timeout=5.0
            )
        except (OSError, TimeoutError) as exc:
            tls = None
            log.info("sim twin: TLS handshake with %s failed: %r", peer, exc)
        if tls is None:
            self.tls_failures += 1
            transport.abort()
            return
        protocol.connection_made(tls)
        await self._serve(reader, asyncio.StreamWriter(tls, protocol, reader, loop), peer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        conn = _Conn(next(self._ids), writer, peer)
        self._conns[conn.id] = conn
        self.connections_total += 1
        log.info("sim twin: connection %d from %s", conn.id, peer)
        reading = self._spawn(self._read(conn, reader))
        try:
            conn.send(encode(to_wire(TwinHello(self.hello_protocol, self.twin_id, self.epoch))))
            await self._beat(conn)
        finally:
            reading.cancel()
            self._conns.pop(conn.id, None)
            if not conn.half_open and not writer.is_closing():
                conn.abort()

    async def _beat(self, conn: _Conn) -> None:
        epoch = self.epoch
        while not conn.closed.is_set():
            interval = 1.0 / self.rate_hz + self.delay_ms / 1000.0
            if self.jitter_ms:
                interval += self._rng.uniform(-self.jitter_ms, self.jitter_ms) / 1000.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.closed.wait(), max(0.0, interval))
            if conn.closed.is_set() or self.epoch != epoch:
                return
            self._flush_ack(conn)
            if conn.half_open or not self.sending or self.paused():
                continue
            self._seq += 1
            hb = Heartbeat(self.epoch, self._seq, self.healthy, time.time_ns() // 1_000_000)
            frame = encode(to_wire(hb))
            self.heartbeats.append(
                SentHeartbeat(time.monotonic(), conn.id, hb.epoch, hb.seq, hb.healthy)
            )
            self._history.append((hb.epoch, hb.seq, frame))
            conn.send(frame)
            if conn.writer.is_closing():
                return

    async def _read(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder(self.max_frame)
        greeted = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                now = time.monotonic()
                try:
                    frames = decoder.feed(data)
                except FrameError as exc:
                    frames = exc.decoded
                    self._record(conn, frames, now, greeted)
                    raise
                greeted = self._record(conn, frames, now, greeted)
        except ProtocolError as exc:
            self.malformed_in += 1
            log.warning("sim twin: connection %d: protocol error: %s", conn.id, exc)
        except OSError as exc:
            log.info("sim twin: connection %d read failed: %s", conn.id, exc)
        if not conn.half_open and not conn.writer.is_closing():
            conn.abort()
        conn.closed.set()

    def _record(self, conn: _Conn, frames: list[dict[str, Any]], now: float, greeted: bool) -> bool:
        for frame in frames:
            msg = decode_agent(frame)
            if not greeted:
                if not isinstance(msg, AgentHello):
                    raise ProtocolError(f"first agent message must be hello, got {msg.T!r}")
                self.agent_hellos.append((now, conn.id, msg.device_id, msg.agent_version,
                                          msg.heartbeat_timeout_ms, msg.heartbeat_late_ms))
                greeted = True
                if self.push_on_hello is not None:
                    bundle, self.push_on_hello = self.push_on_hello, None
                    conn.send(encode(to_wire(ConfigPush(bundle)), self.max_frame))
                    self.pushes.append({"t": now, "bytes": len(bundle), "connections": 1})
            elif isinstance(msg, Status):
                self.statuses.append(ReceivedStatus(now, conn.id, msg.state, msg.mode, msg.seq,
                                                    msg.authority))
            elif isinstance(msg, Telemetry):
                if self.sink.receive(conn.id, msg.seq, msg.prev, msg.historical):
                    self.sink.note_body(msg.seq, record_body(msg.body))
                due = self.sink.ack_due(self.ack_every) if self.acking else None
                if due is not None:
                    conn.send(encode(to_wire(Ack(due)), self.max_frame))
            elif isinstance(msg, Resume):
                self.sink.resume(conn.id, msg.after)
                self._flush_ack(conn)
            elif isinstance(msg, ConfigResult):
                self.config_results.append({"t": now, "version": msg.version,
                                            "accepted": msg.accepted, "reason": msg.reason,
                                            "detail": msg.detail})
            elif isinstance(msg, RecommendResult):
                self.results.append({"t": now, "id": msg.id, "accepted": msg.accepted,
                                     "reason": msg.reason, "detail": msg.detail})
            else:
                raise ProtocolError("hello: a second hello on one connection")
        return greeted

    def _flush_ack(self, conn: _Conn) -> None:
        """Ack a frontier that moved since the last ack (the tail of an ``every`` batch)."""
        if self.acking and self.sink.frontier is not None and self.sink.frontier != self.sink.acked:
            conn.send(encode(to_wire(Ack(self.sink.mark_acked())), self.max_frame))


def record_body(data: bytes) -> dict[str, Any] | None:
    """A telemetry record's body as a map (None if it is not msgpack of one)."""
    try:
        body = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    return body if isinstance(body, dict) else None
