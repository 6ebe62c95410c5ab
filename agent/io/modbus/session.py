"""One Modbus connection to the PLC and one request over it: the lower half of the master.

:class:`ModbusSession` owns the master's transaction layer, on the sans-IO codec
(:mod:`agent.protocol.modbus.pdu`, :mod:`agent.protocol.modbus.adu`), one attempt at a time
(:mod:`agent.io.modbus.exchange`) over a thin transport (:mod:`agent.io.modbus.transport`);
it knows nothing of the register map, which
:class:`agent.io.modbus.client.PlcClient` turns into requests. What it owns, and why:

- **Every reply is checked against its request before anything is decoded**: transaction
  id, protocol id, unit id, function code (an exception reply only for the request's own
  function code, with one code byte), the exact byte count (so the exact number of
  registers or bits), the echoed address, count or value of a write, the MBAP length, the
  RTU CRC. Anything else is a *malformed reply*: the outcome is :attr:`Failure.MALFORMED`
  with ``error`` ``"malformed reply: <what was wrong>"`` (e.g. "malformed reply: function
  code 4, expected 3"), counted in ``malformed`` (and ``errors``), and the link is reset,
  because a crossed stream is never trusted again: TCP is closed and reopened through the
  reconnect backoff below (at once the first time; a PLC that keeps sending malformed
  replies, with no good one in between, is reconnected ever less often, as after failed
  connects, up to ``reconnect_max_s``), RTU is flushed and waits for line silence. A
  malformed reply is never retried and never decoded, so nothing is read or written on its
  strength. The warning is logged once per ``LOG_EVERY_S`` at most, with a count.
- **Late replies.** TCP: the transaction ids of requests that timed out (or were cancelled)
  are remembered until the connection closes; a well-framed reply carrying one is dropped
  unread (counted in ``late_replies``) and the wait goes on for the right one. RTU has no
  transaction id, so a late reply is kept out by its shape and by waiting: the input is
  flushed before every request, and after a timeout the line stays *dirty* for one more
  ``timeout_s``. Within that window a request whose reply would look the same as the
  timed-out one's (reads: same unit, function code and count; writes: the same echo; a
  retry, of course) first waits the window out, discarding what arrives; any other request
  waits only for line silence (3.5 characters, at least 20 ms), and a late reply arriving
  while it waits has the wrong unit id, function code, byte count or echo, so it is
  malformed, never taken. A reply up to twice ``timeout_s`` late is thus never taken for a
  later request; one later still that also has exactly the next request's shape cannot be
  told apart by any RTU master.
- **Reconnects.** Driven by the caller's loop through :meth:`ModbusSession.ensure_connected`,
  which tries at most once per :class:`~agent.core.backoff.Backoff` delay
  (``reconnect_min_s`` .. ``reconnect_max_s``, doubling, jittered) and never sleeps: a dead PLC
  costs one connect timeout per backoff period, not one per poll. ``urgent=True`` (the safe
  set) makes one attempt now whatever the backoff says. Why a connect failed is in
  :attr:`ModbusSession.last_connect_error` in words an engineer can act on ("no such device:
  /dev/ttyX — check ...", "connection refused by ...").
- **Retries.** Each request is tried ``1 + plc.retries`` times, ``plc.timeout_s`` per attempt,
  so counters are exact. Only a timeout is retried.
- **Dead units.** A unit that keeps timing out is backed off
  (:class:`~agent.core.backoff.UnitGuard`): its requests are skipped (not sent) until a
  probe is due, and a backed-off unit's probe is tried once, not ``1 + retries`` times.
  Every unit that timed out or was skipped lands in :attr:`ModbusSession.silent_units`,
  which the caller clears at the start of a poll. ``urgent=True`` requests bypass this: each
  is sent, once.
- **A silent TCP peer.** After ``NO_ANSWER_RECONNECT`` unanswered requests in a row the TCP
  connection is dropped (and reopened by the backoff), as a half-open socket never heals.

Contract: :meth:`ModbusSession.request` never raises for anything the PLC or the link does:
a timeout, an exception reply, a malformed reply or a disconnect is an :class:`Outcome`
with a :class:`Failure` and a readable ``error``; it may be cancelled at any await (the
request in flight then counts as timed out for the late-reply rules). Make and use a
session inside one running event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.backoff import Backoff, UnitGuard
from agent.io.modbus.exchange import Exchange, Lost, Timeout
from agent.io.modbus.transport import RtuTransport, TcpTransport
from agent.model.errors import ConnectFailed
from agent.model.profile import PlcConnection, TcpLink
from agent.model.status import ClientStats
from agent.protocol.modbus import adu
from agent.protocol.modbus.pdu import ExceptionReply, Reply, Request

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
NO_ANSWER_RECONNECT = 4  # TCP: this many unanswered requests in a row drop the connection
MALFORMED = "malformed reply: "
LOG_EVERY_S = 10.0  # a PLC that keeps sending malformed replies: one warning this often


class Failure(enum.Enum):
    TIMEOUT = "timeout"
    EXCEPTION = "exception"
    DISCONNECTED = "disconnected"
    MALFORMED = "malformed"
    BACKED_OFF = "backed off"


@dataclass(frozen=True)
class Outcome:
    """Result of one request: the checked reply, or why there is none."""

    response: Reply | None
    failure: Failure | None = None
    error: str | None = None
    code: int | None = None  # Modbus exception code, for Failure.EXCEPTION


class ModbusSession:
    """The connection to one PLC and its request counters (see the module docstring).

    Counters (plain ints, only ever incremented): ``requests`` (attempts put on the wire),
    ``errors`` (failed requests of any kind), ``timeouts``, ``exception_replies``,
    ``malformed`` (replies that did not match their request), ``late_replies`` (TCP replies
    to timed-out requests, dropped unread), ``reconnects``, ``disconnects`` and ``skipped``
    (requests not sent because their unit is backed off, or silent this poll:
    :meth:`count_skipped`). ``rs485`` (pyserial ``RS485Settings``) is applied to an RTU port.
    """

    def __init__(
        self,
        plc: PlcConnection,
        *,
        unit_timeout_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        rs485: Any = None,
    ) -> None:
        self.plc = plc
        self._timeout = plc.timeout_s
        self._attempts = 1 + max(0, plc.retries)
        self._clock = clock
        rng = rng or random.Random()
        self._backoff = Backoff(plc.reconnect_min_s, plc.reconnect_max_s, rng)
        self._units = UnitGuard(
            plc.reconnect_min_s, plc.reconnect_max_s, unit_timeout_threshold, rng
        )
        link = plc.link
        self._tcp = isinstance(link, TcpLink)
        self.transport: TcpTransport | RtuTransport = (
            TcpTransport(link.host, link.port) if isinstance(link, TcpLink)
            else RtuTransport(link, rs485)
        )  # fmt: skip
        self.exchange = Exchange(self.transport, self._timeout)
        self._ever_connected = False
        self._was_connected = False
        self.last_connect_error: str | None = None
        self._down_reason: str | None = None  # why an open link was closed or lost
        self._suspect = False  # reconnected after a malformed reply, no good reply since
        self._malformed_logged: float | None = None  # when the last warning was logged
        self._malformed_quiet = 0  # malformed replies since, not logged
        self._no_answer = 0
        self.silent_units: set[int] = set()  # timed out or skipped since the caller cleared it
        self._closed = False
        self.requests = self.errors = self.timeouts = self.exception_replies = 0
        self.reconnects = self.disconnects = self.skipped = 0
        self.malformed = 0
        self.last_error: str | None = None

    # --- connection --------------------------------------------------------------------

    @property
    def late_replies(self) -> int:
        return self.exchange.late_replies

    @property
    def connected(self) -> bool:
        """True while a link to the PLC is open."""
        return self.transport.is_open

    def disconnect_reason(self) -> str:
        """``disconnected: <why>`` (the last connect failure, or why the link went down)."""
        why = self.last_connect_error or self._down_reason or self.transport.lost
        return f"disconnected: {why or 'not connected'}"

    async def connect(self) -> bool:
        """Try to connect now (ignoring the backoff); True if connected."""
        self._closed = False
        if self.connected:
            return True
        self._note_lost()
        return await self._try_connect(self._clock())

    async def ensure_connected(self, now: float | None = None, *, urgent: bool = False) -> bool:
        """Connected, or one connect attempt if the reconnect backoff allows it at ``now``
        (``urgent``: one attempt now whatever the backoff says).

        False after :meth:`close` until :meth:`connect`. Never raises, never sleeps.
        """
        if self._closed:
            return False
        if self.connected:
            return True
        now = self._clock() if now is None else now
        self._note_lost()
        if not urgent and not self._backoff.due(now):
            return False
        return await self._try_connect(now)

    def _note_lost(self) -> None:
        if self._was_connected:
            self._was_connected = False
            self.disconnects += 1
            self._down_reason = self._down_reason or self.transport.lost
            log.warning("PLC connection lost (%s)", self._down_reason or "closed")

    async def _try_connect(self, now: float) -> bool:
        try:
            await self.transport.open(self._timeout + 1.0)
        except ConnectFailed as exc:
            self.last_connect_error = self.last_error = str(exc)
            delay = self._backoff.failed(now)
            log.warning(
                "PLC connect to %s failed (%s); next try in %.2f s",
                self.describe_link(), self.last_connect_error, delay,
            )  # fmt: skip
            return False
        if self._ever_connected:
            self.reconnects += 1
            log.info("PLC reconnected (%s)", self.describe_link())
        else:
            log.info("PLC connected (%s)", self.describe_link())
        self._ever_connected = self._was_connected = True
        if not self._suspect:
            self._backoff.succeeded()
        self.last_connect_error = self._down_reason = None
        self._no_answer = 0
        self.exchange.reset()
        return True

    async def close(self) -> None:
        """Close the link; :meth:`ensure_connected` is False until :meth:`connect`."""
        self._closed = True
        self._was_connected = False
        self.transport.close()
        await asyncio.sleep(0)

    def _drop(self, why: str) -> None:
        """Close an open link on purpose (it is reopened through the backoff)."""
        self._down_reason = why
        self.transport.close()

    def describe_link(self) -> str:
        """``host:port`` or the serial device, for the log."""
        link = self.plc.link
        return f"{link.host}:{link.port}" if isinstance(link, TcpLink) else link.device

    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        return ClientStats(
            connected=self.connected,
            requests=self.requests,
            errors=self.errors,
            timeouts=self.timeouts,
            exception_replies=self.exception_replies,
            reconnects=self.reconnects,
            disconnects=self.disconnects,
            skipped=self.skipped,
            backed_off_units=self._units.backed_off_units(),
            malformed=self.malformed,
            late_replies=self.exchange.late_replies,
            last_error=self.last_error,
        )

    def count_error(self) -> None:
        """Count a reply the caller found unusable after all (counted as malformed)."""
        self.errors += 1
        self.malformed += 1

    def count_skipped(self) -> None:
        """Count a request the caller did not send (its unit was silent this poll)."""
        self.skipped += 1

    # --- one request, with retries ----------------------------------------------------------

    async def request(
        self, req: Request, now_fn: Callable[[], float], *, urgent: bool = False
    ) -> Outcome:
        """Send ``req`` with the retries and unit backoff described above (``urgent``: once,
        even to a backed-off unit). ``now_fn`` is the clock for the unit backoff.

        Never raises for what the PLC or the link does (see the module docstring).
        """
        outcome = await self._request(req, now_fn, urgent)
        if outcome.failure is not None and outcome.failure is not Failure.BACKED_OFF:
            self.last_error = outcome.error
        return outcome

    async def _request(
        self, req: Request, now_fn: Callable[[], float], urgent: bool
    ) -> Outcome:
        unit = req.unit_id
        if not urgent and not self._units.available(unit, now_fn()):
            self.skipped += 1
            self.silent_units.add(unit)
            return Outcome(None, Failure.BACKED_OFF, f"unit {unit} backed off")
        last = Outcome(None, Failure.TIMEOUT, f"unit {unit}: timeout")
        # a backed-off unit gets one probe, not a full set of retries
        attempts = 1 if urgent or self._units.backed_off(unit) else self._attempts
        for _ in range(attempts):
            if not self.connected:
                self.errors += 1
                return Outcome(None, Failure.DISCONNECTED, self.disconnect_reason())
            self.requests += 1
            got = await self.exchange.run(req)
            if isinstance(got, Timeout):
                if got.partial:
                    return await self._malformed(req, got.truncated(self._timeout))
                self.errors += 1
                self.timeouts += 1
                self._units.timed_out(unit, now_fn())
                self._no_answer += 1
                last = Outcome(
                    None, Failure.TIMEOUT, f"unit {unit}: no answer within {self._timeout} s"
                )
                self.silent_units.add(unit)
                if self._no_answer >= NO_ANSWER_RECONNECT and self._tcp:
                    log.warning("PLC stopped answering; dropping the TCP connection")
                    self._drop(f"no answer to {self._no_answer} requests in a row")
                    return last
                continue
            if isinstance(got, Lost):
                self.errors += 1
                return Outcome(None, Failure.DISCONNECTED, f"disconnected: {got.why}")
            if isinstance(got, adu.Bad):
                return await self._malformed(req, got.reason)
            self._no_answer = 0
            self._units.answered(unit)
            if self._suspect:
                self._suspect = False
                self._backoff.succeeded()
            if isinstance(got, ExceptionReply):
                self.errors += 1
                self.exception_replies += 1
                name = EXCEPTION_NAMES.get(got.code, "unknown")
                return Outcome(
                    None, Failure.EXCEPTION, f"modbus exception {got.code} ({name})", got.code
                )
            return Outcome(got)
        return last

    async def _malformed(self, req: Request, reason: str) -> Outcome:
        """Count a malformed reply and reset the link (see the module docstring)."""
        self.errors += 1
        self.malformed += 1
        error = MALFORMED + reason
        now = self._clock()
        if self._malformed_logged is None or now - self._malformed_logged >= LOG_EVERY_S:
            more = (f" ({self._malformed_quiet} more malformed replies since the last warning)"
                    if self._malformed_quiet else "")
            log.warning("%s to %s from %s; resetting the link%s", error, req.describe(),
                        self.describe_link(), more)
            self._malformed_logged, self._malformed_quiet = now, 0
        else:
            self._malformed_quiet += 1
            log.debug("%s to %s; resetting the link", error, req.describe())
        if self._tcp:
            self._drop(f"reset after a {error}")
            if self._suspect:  # malformed again, with no good reply since the last reset
                self._backoff.failed(now)
            self._suspect = True
        else:
            await self.exchange.quiet_line()
        return Outcome(None, Failure.MALFORMED, error)
