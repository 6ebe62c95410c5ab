"""The twin link: an asyncio TLS client that dials the twin and reports what it hears.

Thin adapter around ``ssl`` + ``asyncio`` streams, ``agent.twin.frames`` and
``agent.twin.messages``. It never decides safety: it reports each twin message with its
monotonic receive time (``on_message(msg, t)``) and each session change
(``on_connection(up, reason, t)``); the runtime feeds those to the heartbeat monitor.

One connection attempt::

    TCP connect + TLS handshake (TLS >= 1.2, client cert, server pinned to ca_file,
    hostname checked against server_name), both within connect_timeout_s
      → send AgentHello (with the heartbeat timing in ms, so the twin can pace itself)
      → read frames; the first twin message must be TwinHello(protocol == 1)
          → session UP: on_connection(True, ...), on_message(hello, t)
      → every later twin message: on_message(msg, t)
    until: the twin closes, a read fails, no complete frame for idle_timeout_s (half-open
    or trickling twin), a malformed frame or message (counted in ``malformed``), or ``close()``.
    If the session was UP: on_connection(False, reason, t).
    Then wait a capped exponential backoff with jitter (``agent.backoff``; reset after a
    session that came UP) and dial again, until ``close()``.

``run()`` never raises because of the peer or the network; errors are counted, logged,
and kept in ``counters.last_error``. Exceptions raised by the callbacks are bugs of the
caller: logged with traceback, counted in ``callback_errors``, and the link goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import __version__
from agent.backoff import Backoff
from agent.errors import ProtocolError
from agent.twin.frames import DEFAULT_MAX_FRAME, FrameDecoder, FrameError, encode
from agent.twin.messages import (
    PROTOCOL_VERSION,
    AgentHello,
    AgentMessage,
    TwinHello,
    TwinMessage,
    decode_twin,
    to_wire,
)

log = logging.getLogger(__name__)

READ_CHUNK = 65536

OnMessage = Callable[[TwinMessage, float], None]
OnConnection = Callable[[bool, str, float], None]


# Heartbeat timing announced in the hello when the caller gives none: the shipped sim-tank
# profile's [timing]. Only for the link's own tests and tools; the runtime always passes the
# profile's real values (agent.runtime.Runtime._make_link).
DEFAULT_HEARTBEAT_TIMEOUT_S = 0.5
DEFAULT_HEARTBEAT_LATE_S = 0.25


def to_ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds, rounded to the nearest (the hello's unit)."""
    return round(seconds * 1000)


@dataclass(frozen=True)
class TwinLinkSettings:
    """Where the twin is and how to talk to it. ValueError on impossible values.

    ``heartbeat_timeout_s`` / ``heartbeat_late_s`` are the agent's heartbeat timing (the
    hardware profile's ``[timing]``); the link only announces them in its hello (in ms,
    both >= 1 ms after rounding, late <= timeout), it never times heartbeats itself.
    """

    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str
    device_id: str
    max_frame: int = DEFAULT_MAX_FRAME
    connect_timeout_s: float = 5.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    idle_timeout_s: float = 3.0
    agent_version: str = __version__
    crl_file: Path | None = None  # PEM CRL of ca_file's CA: a revoked twin cert is refused
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    heartbeat_late_s: float = DEFAULT_HEARTBEAT_LATE_S

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("connect_timeout_s", "backoff_min_s", "idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.backoff_max_s >= self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        if not self.server_name or not self.device_id:
            raise ValueError("server_name and device_id must not be empty")
        for name in ("heartbeat_timeout_s", "heartbeat_late_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        late, timeout = to_ms(self.heartbeat_late_s), to_ms(self.heartbeat_timeout_s)
        if not 1 <= late <= timeout:
            raise ValueError(
                "need 1 ms <= heartbeat_late_s <= heartbeat_timeout_s (in whole ms), got "
                f"{self.heartbeat_late_s} s and {self.heartbeat_timeout_s} s")

    def hello(self) -> AgentHello:
        """The hello this link sends first on every connection."""
        return AgentHello(self.device_id, self.agent_version, PROTOCOL_VERSION,
                          to_ms(self.heartbeat_timeout_s), to_ms(self.heartbeat_late_s))


@dataclass
class LinkCounters:
    """What the link has seen since it was made (never reset)."""

    connects: int = 0  # TLS handshakes completed
    sessions: int = 0  # twin hellos accepted (session UP)
    disconnects: int = 0  # connections ended after a completed handshake
    failures: int = 0  # attempts that ended before a handshake completed
    frames_in: int = 0
    frames_out: int = 0
    malformed: int = 0  # frames or messages that broke the protocol
    idle_timeouts: int = 0
    dropped: int = 0  # send() while not connected
    callback_errors: int = 0
    last_error: str | None = None


def make_client_context(settings: TwinLinkSettings) -> ssl.SSLContext:
    """TLS >= 1.2 client context: our cert + key, the twin verified against ca_file only.

    With ``crl_file`` the twin's certificate is also checked against that CRL
    (``VERIFY_CRL_CHECK_LEAF``; a CRL that is missing, expired or from another CA makes every
    handshake fail: fail closed). Expiry is checked by ``ssl`` itself.
    Raises OSError / ssl.SSLError if a file is missing or not a valid cert/key/CRL.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=str(settings.ca_file))  # pinned: no system roots
    if settings.crl_file is not None:
        ctx.load_verify_locations(cafile=str(settings.crl_file))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return ctx


class _SessionEnd(Exception):
    """Internal: a connection ended for ``reason``."""


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
        self._closing = False
        self._stop = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while a session is UP (twin hello received, connection not ended)."""
        return self._up

    @property
    def closing(self) -> bool:
        """True once close() was called."""
        return self._closing

    async def run(self) -> None:
        """Connect, read, reconnect until ``close()``. Never raises for peer/network faults."""
        while not self._closing:
            reason = "closed"
            try:
                await self._session()
            except _SessionEnd as exc:
                reason = str(exc)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._writer is None:
                    self.counters.failures += 1
            except Exception as exc:  # a bug; the link must go on
                log.exception("twin link: unexpected error")
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                self._end("closed" if self._closing else reason)
            if self.closing:
                break
            delay = self._backoff.failed(self._clock())
            log.info("twin link: %s; reconnecting in %.2f s", reason, delay)
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
        try:
            writer.write(frame)
            self.counters.frames_out += 1
            await asyncio.wait_for(writer.drain(), self.settings.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            self.counters.last_error = f"send: {type(exc).__name__}: {exc}"
            log.warning("twin link: send failed: %s", self.counters.last_error)
            writer.transport.abort()
            return False
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
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                s.host,
                s.port,
                ssl=ctx,
                server_hostname=s.server_name,
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
        decoder = FrameDecoder(s.max_frame)
        # Idle means no complete frame: bytes trickling in without ever finishing a frame
        # do not keep a connection alive.
        idle_deadline = self._clock() + s.idle_timeout_s
        while True:
            try:
                wait = max(0.0, idle_deadline - self._clock())
                data = await asyncio.wait_for(reader.read(READ_CHUNK), wait)
            except TimeoutError:
                self.counters.idle_timeouts += 1
                raise _SessionEnd(f"idle timeout: no frame for {s.idle_timeout_s} s") from None
            if not data:
                raise _SessionEnd("closed by twin")
            now = self._clock()
            try:
                frames = decoder.feed(data)
            except FrameError as exc:
                for frame in exc.decoded:
                    self._deliver(frame, now)
                self._malformed(exc)
            if frames:
                idle_deadline = now + s.idle_timeout_s
            for frame in frames:
                self._deliver(frame, now)

    def _deliver(self, frame: dict[str, object], now: float) -> None:
        self.counters.frames_in += 1
        try:
            msg = decode_twin(frame)
            if not self._up:
                if not isinstance(msg, TwinHello):
                    raise ProtocolError(f"first twin message must be hello, got {msg.T!r}")
                if msg.protocol != PROTOCOL_VERSION:
                    raise ProtocolError(
                        f"hello.protocol: twin speaks {msg.protocol}, agent {PROTOCOL_VERSION}"
                    )
            elif isinstance(msg, TwinHello):
                raise ProtocolError("hello: a second hello on one connection")
        except ProtocolError as exc:
            self._malformed(exc)
        if isinstance(msg, TwinHello):
            self._up = True
            self.counters.sessions += 1
            self._backoff.succeeded()
            log.info("twin link: session up, twin %s epoch %d", msg.twin_id, msg.epoch)
            self._call(self._on_connection, True, f"twin {msg.twin_id} epoch {msg.epoch}", now)
        self._call(self._on_message, msg, now)

    def _malformed(self, exc: ProtocolError) -> None:
        self.counters.malformed += 1
        log.warning("twin link: protocol error, closing: %s", exc)
        raise _SessionEnd(f"protocol error: {exc}") from exc

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
            log.info("twin link: session down: %s", reason)
            self._call(self._on_connection, False, reason, self._clock())
