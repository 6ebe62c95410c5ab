"""The twin link: an asyncio TLS client that dials the twin and reports what it hears.

Thin adapter around ``ssl`` + ``asyncio`` streams, ``agent.protocol.twin.frames`` and
``agent.model.messages``. It never decides safety: it reports each twin message with its
monotonic receive time (``on_message(msg, t)``) and each session change
(``on_connection(up, reason, t)``); the runtime feeds those to the heartbeat monitor.

One connection attempt::

    TCP connect + TLS handshake (TLS >= 1.2, client cert, server pinned to ca_file,
    hostname checked against server_name), both within connect_timeout_s
      → send AgentHello (with the heartbeat timing in ms, so the twin can pace itself)
      → read frames; the first twin message must be TwinHello(protocol 1 or 2, PROTOCOL.md §3.4)
          → session UP (numbered: ``session``): on_connection(True, ...), on_message(hello, t)
      → every later twin message: on_message(msg, t), with ``delivering`` telling where
        it came from during the call (its session and epoch, ``Origin``)
    until: the twin closes, a read fails, no complete frame for idle_timeout_s (half-open
    or trickling twin), a malformed frame or message (counted in ``malformed``), or ``close()``.
    If the session was UP: on_connection(False, reason, t).
    Then wait a capped exponential backoff with jitter (``agent.core.backoff``; reset after a
    session that came UP) and dial again, until ``close()``. With backup endpoints
    (``settings.backups``) each dial after a loss or a failed attempt goes to the next
    endpoint in order, wrapping (the Sparkplug multiple-server rule, kept for TLS too).

Bounded work per loop turn (PROTOCOL.md §6.1), so that a twin flooding the link, or a bug
in one, cannot stall the control loop that shares the event loop. Two tasks per
connection::

    reader: one read (<= READ_CHUNK bytes) per turn ─ framing only (``feed_bodies``) ─┐
        hello / heartbeat / bye: decoded and delivered at once (``ahead`` of the rest)│
        everything else, undecoded, in order ──▶ inbox (``agent.core.pacing``) ───────┘
        no reading while the inbox is full (``read_pauses``): TCP holds the twin back
    drain: per turn at most ``turn_frames`` messages or ``turn_s`` seconds (then
        ``yields``), each decoded strictly and delivered; a malformed one ends the session;
        it skips its turn while the reader is behind (its last read was a full one) and
        the inbox has room, so that unread heartbeats are found first

Receive time ``t`` is when a frame was read, whenever it is delivered. What still waits
when a connection ends is discarded (``discarded``). Replies to the twin's requests go
through :meth:`TwinLink.reply`: written at once within ``reply_rate`` per second, else
dropped and counted (``replies_dropped``), never queued.

``run()`` never raises because of the peer or the network; errors are counted, logged,
and kept in ``counters.last_error``. Exceptions raised by the callbacks are bugs of the
caller: logged with traceback, counted in ``callback_errors``, and the link goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from agent.core.backoff import Backoff
from agent.core.pacing import Inbox, RateBudget
from agent.io.hostnames import ascii_host
from agent.io.twin.settings import (
    DEFAULT_HEARTBEAT_LATE_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    LinkCounters,
    TwinLinkSettings,
    make_client_context,
    to_ms,
)
from agent.model.errors import FrameError, ProtocolError
from agent.model.messages import (
    PROTOCOL_LATEST,
    PROTOCOL_VERSION,
    AgentMessage,
    Bye,
    Heartbeat,
    Origin,
    TwinHello,
    TwinMessage,
)
from agent.protocol.twin.frames import FrameDecoder, decode_body, encode
from agent.protocol.twin.schema import decode_twin, to_wire

__all__ = [  # the settings live in agent.io.twin.settings; importable from here as before
    "DEFAULT_HEARTBEAT_LATE_S", "DEFAULT_HEARTBEAT_TIMEOUT_S", "READ_CHUNK", "LinkCounters",
    "OnConnection", "OnMessage", "TwinLink", "TwinLinkSettings", "make_client_context", "to_ms",
]

log = logging.getLogger(__name__)

READ_CHUNK = 65536  # bytes read (and frames decoded) per loop turn at most
IMMEDIATE_TYPES = frozenset({"hello", "heartbeat", "bye"})  # delivered as read, ahead
# a body without one of these names in its bytes (any msgpack str encoding holds them
# verbatim) is not one of those messages; one with them is decoded to tell
_maybe_immediate = re.compile(b"|".join(t.encode() for t in sorted(IMMEDIATE_TYPES))).search
WRITE_BUFFER_MAX = 256 * 1024  # a reply finding more unsent bytes than this is dropped
DRAIN_ABOVE = 64 * 1024  # a send waits for the twin to take its bytes only above this
SESSION_NUMBERS = itertools.count(1)  # UP sessions of every link of this process

OnMessage = Callable[[TwinMessage, float], None]
OnConnection = Callable[[bool, str, float], None]


@dataclass
class _Conn:
    """One connection's delivery state (its inbox and the session it carries)."""

    inbox: Inbox
    number: int = 0  # the session number once the twin's hello is accepted
    epoch: int = 0  # the epoch in force at the read position (hello, then max of liveness)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # something is waiting
    room: asyncio.Event = field(default_factory=asyncio.Event)  # the inbox has room again
    behind: bool = False  # the last read was a full one: the drain lets the reader go first


class _SessionEnd(Exception):
    """Internal: a connection ended for ``reason``. ``final``: the link's own verdict (idle,
    protocol error), which stands even if ``close()`` came while the session unwound."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


class TwinLink:
    """Dial-out TLS client of the twin protocol. See the module docstring."""

    def __init__(
        self,
        settings: TwinLinkSettings,
        on_message: OnMessage,
        on_connection: OnConnection,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self.twin_protocol = PROTOCOL_VERSION  # the protocol of the session's twin hello
        """Raises OSError / ssl.SSLError at once if the certificates cannot be loaded."""
        self.settings = settings
        self.counters = LinkCounters()
        self._on_message = on_message
        self._on_connection = on_connection
        self._clock = clock
        self._backoff = backoff or Backoff(settings.backoff_min_s, settings.backoff_max_s)
        make_client_context(settings)  # fail fast on a bad configuration
        self._writer: asyncio.StreamWriter | None = None
        self._up = False
        self._up_session: Origin | None = None
        self._delivering: Origin | None = None
        self._replies = RateBudget(settings.reply_rate)
        self._replies_refused = 0  # replies dropped since the last log line about it
        self._refused_logged = -math.inf
        self._closing = False
        self._stop = asyncio.Event()
        self._endpoints = settings.endpoints
        self._at = 0  # the endpoint dialled next

    @property
    def connected(self) -> bool:
        """True while a session is UP (twin hello received, connection not ended)."""
        return self._up

    @property
    def session(self) -> Origin | None:
        """The UP session: its number (unique in this process) and its hello's epoch."""
        return self._up_session

    @property
    def delivering(self) -> Origin | None:
        """During an ``on_message`` call: where that message came from (the session and the
        epoch in force at its place in the stream); None outside the callback."""
        return self._delivering

    @property
    def closing(self) -> bool:
        """True once close() was called."""
        return self._closing

    async def run(self) -> None:
        """Connect, read, reconnect until ``close()``. Never raises for peer/network faults."""
        while not self._closing:
            reason, final = "closed", False
            try:
                await self._session()
            except _SessionEnd as exc:
                reason, final = str(exc), exc.final
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._writer is None:
                    self.counters.failures += 1
            except Exception as exc:  # a bug; the link must go on
                log.exception("twin link: unexpected error")
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                self._end(reason if final or not self._closing else "closed")
            if self.closing:
                break
            delay = self._backoff.failed(self._clock())
            if len(self._endpoints) > 1:
                self._at = (self._at + 1) % len(self._endpoints)
                self.counters.switches += 1
            log.info("twin link: %s; reconnecting to %s in %.2f s", reason,
                     self._endpoints[self._at], delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def send(self, msg: AgentMessage) -> bool:
        """Frame and write ``msg``; False (counted in ``dropped``) if no session is UP.

        If the twin does not take the bytes within connect_timeout_s the connection is
        aborted (run() then reconnects) and False is returned. ProtocolError / TypeError
        for a message that is invalid (a bug of the caller).
        """
        frame = encode(to_wire(msg), self.settings.max_frame)
        writer = self._writer
        if not self._up or writer is None:
            self.counters.dropped += 1
            return False
        return await self._write(writer, frame, 1)

    async def send_many(self, msgs: Sequence[AgentMessage]) -> bool:
        """:meth:`send` for several messages in one write (one TLS record, one syscall for
        a range of telemetry); all or nothing as far as this side can tell."""
        frames = b"".join(encode(to_wire(m), self.settings.max_frame) for m in msgs)
        writer = self._writer
        if not self._up or writer is None:
            self.counters.dropped += len(msgs)
            return False
        return await self._write(writer, frames, len(msgs))

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, frames: int) -> bool:
        try:
            if writer.is_closing():  # as drain() would: the connection is going away
                raise ConnectionResetError("the connection is closing")
            writer.write(data)
            self.counters.frames_out += frames
            if writer.transport.get_write_buffer_size() <= DRAIN_ABOVE:
                return True  # the kernel took it (or nearly): no drain, no timer
            # a timeout scope, not wait_for(): Python 3.11's wait_for() drops a cancel that
            # comes as the drain ends, and the caller's task (the telemetry pump) runs on
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            self.counters.last_error = f"send: {type(exc).__name__}: {exc}"
            log.warning("twin link: send failed: %s", self.counters.last_error)
            writer.transport.abort()
            return False
        return True

    def reply(self, msg: AgentMessage) -> bool:
        """Write a reply to a twin message (``recommend_result``) now, without waiting.

        Within ``reply_rate`` per second (a token bucket, bursts of one second's worth) and
        while a session is UP whose connection takes the bytes (fewer than
        WRITE_BUFFER_MAX unsent); otherwise the reply is dropped, counted in
        ``replies_dropped`` and logged (at most one line a second). True if written.
        ProtocolError / TypeError for an invalid message (a bug of the caller).
        """
        writer, now = self._writer, self._clock()
        if (not self._up or writer is None or writer.is_closing()
                or not self._replies.take(now)
                or writer.transport.get_write_buffer_size() > WRITE_BUFFER_MAX):
            self.counters.replies_dropped += 1
            self._replies_refused += 1
            if now - self._refused_logged >= 1.0:  # at most one line a second
                log.warning("twin link: %d repl%s dropped (over the budget of %g/s, or no "
                            "connection to take it) since the last such line",
                            self._replies_refused, "y" if self._replies_refused == 1 else "ies",
                            self.settings.reply_rate)
                self._replies_refused, self._refused_logged = 0, now
            return False
        frame = encode(to_wire(msg), self.settings.max_frame)  # only what is sent is encoded
        writer.write(frame)
        self.counters.frames_out += 1
        self.counters.replies += 1
        return True

    def close(self) -> None:
        """Stop: end the connection and make run() return. Idempotent."""
        self._closing = True
        self._stop.set()
        if self._writer is not None:
            self._writer.transport.abort()

    # --- internals --------------------------------------------------------------------

    async def _session(self) -> None:
        s = self.settings
        ctx = make_client_context(s)
        at = self._endpoints[self._at]
        self.counters.endpoint = str(at)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                at.host,
                at.port,
                ssl=ctx,
                server_hostname=ascii_host(at.server_name),  # no idna codec (hostnames.py)
                ssl_handshake_timeout=s.connect_timeout_s,
                limit=READ_CHUNK,
            ),
            s.connect_timeout_s,
        )
        self._writer = writer
        self.counters.connects += 1
        if self.closing:
            raise _SessionEnd("closed")
        writer.write(encode(to_wire(s.hello()), s.max_frame))
        self.counters.frames_out += 1
        conn = _Conn(Inbox(s.inbox_frames, s.inbox_bytes))
        reading = asyncio.ensure_future(self._read(reader, conn))
        delivering = asyncio.ensure_future(self._drain(conn))
        try:
            done, _ = await asyncio.wait((reading, delivering),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # both loops end only by raising
        finally:
            # no await here: the session ends in this very step (its reason with it); a
            # cancelled task delivers nothing more, it only unwinds on the next turn
            for task in (reading, delivering):
                task.cancel()
            left = conn.inbox.clear()
            if left:
                self.counters.discarded += left
                log.info("twin link: %d message(s) read but not delivered discarded with the "
                         "connection", left)

    async def _read(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        """Read one chunk per loop turn: frames decoded, liveness messages delivered at once,
        the others put in the inbox for :meth:`_drain`; no reading while the inbox is full."""
        s = self.settings
        decoder = FrameDecoder(s.max_frame)
        # Idle means no complete frame: bytes trickling in without ever finishing a frame
        # do not keep a connection alive.
        idle_deadline = self._clock() + s.idle_timeout_s
        while True:
            if conn.inbox.full:
                self.counters.read_pauses += 1
                conn.room.clear()
                await conn.room.wait()
                # frames were waiting here all along: the twin was not idle
                idle_deadline = max(idle_deadline, self._clock() + s.idle_timeout_s)
                continue
            conn.behind = False  # (the read may wait: the drain must not wait with it)
            try:
                # a timeout scope, not wait_for(): no extra task, so a read of bytes already
                # buffered returns at once and costs no loop turn of its own
                async with asyncio.timeout(max(0.0, idle_deadline - self._clock())):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                self.counters.idle_timeouts += 1
                raise _SessionEnd(f"idle timeout: no frame for {s.idle_timeout_s} s",
                                  final=True) from None
            if not data:
                raise _SessionEnd("closed by twin")
            now = self._clock()
            try:
                bodies = decoder.feed_bodies(data)
            except FrameError as exc:
                self._arrived(exc.bodies, now, conn)
                self._malformed(exc)
            if bodies:
                idle_deadline = now + s.idle_timeout_s
                self._arrived(bodies, now, conn)
            conn.behind = len(data) == READ_CHUNK  # a full read: more is likely buffered
            await asyncio.sleep(0)  # at most one read's worth of frames per loop turn

    def _arrived(self, bodies: list[bytes], now: float, conn: _Conn) -> None:
        """Route frames as read: the hello and the liveness messages (``heartbeat``, ``bye``)
        are decoded and delivered now, everything else waits in the inbox, in order,
        undecoded (PROTOCOL.md §6.1). A body without the bytes of one of those type names
        cannot be one of them; one with them is decoded now to tell."""
        self.counters.frames_in += len(bodies)
        if self._closing:
            return
        inbox, run = conn.inbox, 0  # bodies[run:i] wait to go into the inbox
        for i, body in enumerate(bodies):
            if self._up and _maybe_immediate(body) is None:
                continue
            try:
                frame = decode_body(body, self.settings.max_frame)
            except ProtocolError as exc:
                self._malformed(exc)  # what waits would be discarded with the connection
            if self._up and frame["t"] not in IMMEDIATE_TYPES:
                continue  # an ordinary message that merely contains such a name
            inbox.put(bodies[run:i], now, Origin(conn.number, conn.epoch))
            run = i + 1
            if len(inbox):
                self.counters.ahead += 1
            self._deliver_now(frame, now, conn)
        inbox.put(bodies[run:], now, Origin(conn.number, conn.epoch))
        self.counters.waiting_max = max(self.counters.waiting_max, inbox.high_water)
        if len(inbox):
            conn.ready.set()

    def _deliver_now(self, frame: dict[str, Any], now: float, conn: _Conn) -> None:
        try:
            msg = decode_twin(frame)
            if not self._up:
                if not isinstance(msg, TwinHello):
                    raise ProtocolError(f"first twin message must be hello, got {msg.T!r}")
                if not PROTOCOL_VERSION <= msg.protocol <= PROTOCOL_LATEST:
                    raise ProtocolError(
                        f"hello.protocol: twin speaks {msg.protocol}, agent "
                        f"{PROTOCOL_VERSION}..{PROTOCOL_LATEST}"
                    )
            elif isinstance(msg, TwinHello):
                raise ProtocolError("hello: a second hello on one connection")
        except ProtocolError as exc:
            self._malformed(exc)
        if isinstance(msg, TwinHello):
            self._up = True
            self.twin_protocol = msg.protocol
            conn.number, conn.epoch = next(SESSION_NUMBERS), msg.epoch
            self._up_session = Origin(conn.number, conn.epoch)
            self.counters.sessions += 1
            self._backoff.succeeded()
            log.info("twin link: session #%d up, twin %s epoch %d", conn.number, msg.twin_id,
                     msg.epoch)
            self._call(self._on_connection, True, f"twin {msg.twin_id} epoch {msg.epoch}", now)
        elif isinstance(msg, Heartbeat | Bye):
            conn.epoch = max(conn.epoch, msg.epoch)
        self._hand_over(msg, now, Origin(conn.number, conn.epoch))

    async def _drain(self, conn: _Conn) -> None:
        """Deliver waiting messages in order, at most ``turn_frames`` or ``turn_s`` per loop
        turn, then give the loop back."""
        s = self.settings
        while True:
            if not len(conn.inbox):
                conn.ready.clear()
                await conn.ready.wait()
            if conn.behind and not conn.inbox.full:
                # reading first: the heartbeats still unread are more urgent than what
                # waits (bounded: once the inbox is full the reader stops)
                await asyncio.sleep(0)
                continue
            start = self._clock()
            for _ in range(s.turn_frames):
                item = conn.inbox.take()
                if item is None or self._closing:
                    break
                try:
                    msg = decode_twin(decode_body(item.body, s.max_frame))
                except ProtocolError as exc:
                    self._malformed(exc)
                self._hand_over(msg, item.t, item.origin)
                if self._clock() - start >= s.turn_s:
                    break
            if not conn.inbox.full:
                conn.room.set()
            if len(conn.inbox):
                self.counters.yields += 1
                await asyncio.sleep(0)

    def _hand_over(self, msg: TwinMessage, t: float, origin: Origin) -> None:
        self._delivering = origin
        try:
            self._call(self._on_message, msg, t)
        finally:
            self._delivering = None

    def _malformed(self, exc: ProtocolError) -> NoReturn:
        self.counters.malformed += 1
        log.warning("twin link: protocol error, closing: %s", exc)
        raise _SessionEnd(f"protocol error: {exc}", final=True) from exc

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            self.counters.callback_errors += 1
            log.exception("twin link: callback %r raised", fn)

    def _end(self, reason: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()
            self.counters.disconnects += 1
        if not self._closing:
            self.counters.last_error = reason
        if self._up:
            self._up = False
            self._up_session = None
            log.info("twin link: session down: %s", reason)
            self._call(self._on_connection, False, reason, self._clock())
