"""One Modbus connection to the PLC and one request over it: the lower half of the master.

:class:`ModbusSession` is a thin async adapter over pymodbus 3.16 (TCP or RTU) that knows
nothing of the register map; :class:`agent.modbus.client.PlcClient` builds the reads and
writes on top of it. What it owns, and why:

- **Reconnects.** pymodbus's own reconnect task is switched off (``reconnect_delay=0``):
  it runs hidden in the background and its state is not observable. Here the caller's
  loop drives :meth:`ModbusSession.ensure_connected`, which tries at most once per
  :class:`~agent.modbus.backoff.Backoff` delay (``reconnect_min_s`` .. ``reconnect_max_s``,
  doubling, jittered) and never sleeps: a dead PLC costs one connect timeout per backoff
  period, not one per poll. :attr:`ModbusSession.connected` is observable.
- **Retries.** pymodbus retries are off (``retries=0``); each request is tried
  ``1 + plc.retries`` times here, with ``plc.timeout_s`` per attempt, so counters are exact.
- **Dead units.** A unit that keeps timing out is backed off
  (:class:`~agent.modbus.backoff.UnitGuard`): its requests are skipped (not sent) until a
  probe is due, and a backed-off unit's probe is tried once, not ``1 + retries`` times.
  Every unit that timed out or was skipped lands in :attr:`ModbusSession.silent_units`,
  which the caller clears at the start of a poll (so, within one poll, it does not ask a
  silent unit again).
- **A silent TCP peer.** After ``NO_ANSWER_RECONNECT`` unanswered requests in a row the TCP
  connection is dropped (and reopened by the backoff), as a half-open socket never heals.

Contract: :meth:`ModbusSession.request` never raises for anything the PLC or the link does:
a timeout, an exception reply, a malformed reply or a disconnect is an :class:`Outcome`
with a :class:`Failure` and a readable ``error``. Make a session inside a running event loop
(pymodbus's async clients need one).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from agent.modbus.backoff import Backoff, UnitGuard
from agent.profile.model import PlcConnection, TcpLink

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


class Failure(enum.Enum):
    TIMEOUT = "timeout"
    EXCEPTION = "exception"
    DISCONNECTED = "disconnected"
    MALFORMED = "malformed"
    BACKED_OFF = "backed off"


@dataclass(frozen=True)
class Outcome:
    """Result of one request: a response, or why there is none."""

    response: ModbusPDU | None
    failure: Failure | None = None
    error: str | None = None
    code: int | None = None  # Modbus exception code, for Failure.EXCEPTION


@dataclass(frozen=True)
class ClientStats:
    """Counters since the client was made (for ``twinguard status``)."""

    connected: bool
    requests: int
    errors: int
    timeouts: int
    exception_replies: int
    reconnects: int
    disconnects: int
    skipped: int
    backed_off_units: tuple[int, ...]


Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusSession:
    """The connection to one PLC and its request counters (see the module docstring).

    Counters (plain ints, only ever incremented): ``requests`` (attempts put on the wire),
    ``errors`` (failed requests of any kind, and malformed replies the caller counts with
    :meth:`count_error`), ``timeouts``, ``exception_replies``, ``reconnects``,
    ``disconnects`` and ``skipped`` (requests not sent because their unit is backed off,
    or silent this poll: :meth:`count_skipped`).
    """

    def __init__(
        self,
        plc: PlcConnection,
        *,
        unit_timeout_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
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
        self.client: Client = self._make_client()
        self._ever_connected = False
        self._was_connected = False
        self.last_connect_error: str | None = None
        self._no_answer = 0
        self.silent_units: set[int] = set()  # timed out or skipped since the caller cleared it
        self._closed = False
        self.requests = self.errors = self.timeouts = self.exception_replies = 0
        self.reconnects = self.disconnects = self.skipped = 0

    def _make_client(self) -> Client:
        link = self.plc.link
        client: Client
        if isinstance(link, TcpLink):
            client = AsyncModbusTcpClient(
                link.host,
                port=link.port,
                timeout=self._timeout,
                retries=0,
                reconnect_delay=0,
                name="plc",
            )
        else:
            client = AsyncModbusSerialClient(
                link.device,
                baudrate=link.baudrate,
                parity=link.parity.value,
                stopbits=link.stopbits,
                bytesize=link.bytesize,
                timeout=self._timeout,
                retries=0,
                reconnect_delay=0,
                name="plc",
            )
        client.set_max_no_responses(2**30)  # disconnect policy is ours, not pymodbus's
        return client

    # --- connection --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a transport to the PLC is open."""
        return bool(self.client.connected)

    def disconnect_reason(self) -> str:
        """``disconnected: <why the last connect failed>``, for BAD readings and writes."""
        return f"disconnected: {self.last_connect_error or 'not connected'}"

    async def connect(self) -> bool:
        """Try to connect now (ignoring the backoff); True if connected."""
        self._closed = False
        if self.connected:
            return True
        return await self._try_connect(self._clock())

    async def ensure_connected(self, now: float | None = None) -> bool:
        """Connected, or one connect attempt if the reconnect backoff allows it at ``now``.

        False after :meth:`close` until :meth:`connect`. Never raises, never sleeps.
        """
        if self._closed:
            return False
        if self.connected:
            return True
        now = self._clock() if now is None else now
        if self._was_connected:
            self._was_connected = False
            self.disconnects += 1
            log.warning("PLC connection lost")
        if not self._backoff.due(now):
            return False
        return await self._try_connect(now)

    async def _try_connect(self, now: float) -> bool:
        try:
            ok = await asyncio.wait_for(self.client.connect(), self._timeout + 1.0)
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            self.last_connect_error = str(exc) or type(exc).__name__
        if ok and self.connected:
            if self._ever_connected:
                self.reconnects += 1
                log.info("PLC reconnected (%s)", self.describe_link())
            else:
                log.info("PLC connected (%s)", self.describe_link())
            self._ever_connected = self._was_connected = True
            self._backoff.succeeded()
            self.last_connect_error = None
            self._no_answer = 0
            return True
        delay = self._backoff.failed(now)
        self.last_connect_error = self.last_connect_error or "connect failed"
        log.warning(
            "PLC connect to %s failed (%s); next try in %.2f s",
            self.describe_link(),
            self.last_connect_error,
            delay,
        )
        return False

    async def close(self) -> None:
        """Close the transport; :meth:`ensure_connected` is False until :meth:`connect`."""
        self._closed = True
        self._was_connected = False
        self.client.close()
        await asyncio.sleep(0)

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
        )

    def count_error(self) -> None:
        """Count a failure the caller found in an answered request (a malformed reply)."""
        self.errors += 1

    def count_skipped(self) -> None:
        """Count a request the caller did not send (its unit was silent this poll)."""
        self.skipped += 1

    # --- one request, with retries ----------------------------------------------------------

    async def request(
        self, unit_id: int, call: Callable[[], Awaitable[ModbusPDU]], now_fn: Callable[[], float],
        *, urgent: bool = False,
    ) -> Outcome:
        """Send ``call()`` to ``unit_id`` with the retries and unit backoff described above.

        ``call`` makes one pymodbus request on :attr:`client` (it is called once per
        attempt); ``now_fn`` is the clock for the unit backoff. Never raises for what the
        PLC or the link does (see the module docstring).
        """
        if not urgent and not self._units.available(unit_id, now_fn()):
            self.skipped += 1
            self.silent_units.add(unit_id)
            return Outcome(None, Failure.BACKED_OFF, f"unit {unit_id} backed off")
        last = Outcome(None, Failure.TIMEOUT, f"unit {unit_id}: timeout")
        # a backed-off unit gets one probe, not a full set of retries
        attempts = 1 if urgent or self._units.backed_off(unit_id) else self._attempts
        for _ in range(attempts):
            if not self.connected:
                self.errors += 1
                return Outcome(None, Failure.DISCONNECTED, "disconnected")
            self.requests += 1
            try:
                # pymodbus bounds each request by its own timeout (plc.timeout_s, retries 0);
                # the runtime bounds a whole tick's I/O on top (agent.plantio)
                response = await call()
            except (TimeoutError, ModbusException) as exc:
                if isinstance(exc, ConnectionException) or not self.connected:
                    self.errors += 1
                    return Outcome(None, Failure.DISCONNECTED, f"disconnected: {exc}")
                self.errors += 1
                self.timeouts += 1
                self._units.timed_out(unit_id, now_fn())
                self._no_answer += 1
                last = Outcome(
                    None, Failure.TIMEOUT, f"unit {unit_id}: no answer within {self._timeout} s"
                )
                self.silent_units.add(unit_id)
                if self._no_answer >= NO_ANSWER_RECONNECT and isinstance(self.plc.link, TcpLink):
                    log.warning("PLC stopped answering; dropping the TCP connection")
                    self.client.close()
                    return last
                continue
            except (OSError, ValueError) as exc:
                self.errors += 1
                return Outcome(None, Failure.MALFORMED, f"request failed: {exc}")
            self._no_answer = 0
            self._units.answered(unit_id)
            if response.isError():
                self.errors += 1
                self.exception_replies += 1
                code = response.exception_code
                name = EXCEPTION_NAMES.get(code, "unknown")
                return Outcome(None, Failure.EXCEPTION, f"modbus exception {code} ({name})", code)
            return Outcome(response)
        return last
