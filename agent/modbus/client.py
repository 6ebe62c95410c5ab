"""The agent's Modbus master: a thin async adapter over pymodbus 3.16 (TCP or RTU).

What it owns, and why:

- **Reconnects.** pymodbus's own reconnect task is switched off (``reconnect_delay=0``):
  it runs hidden in the background and its state is not observable. Here the caller's
  loop drives :meth:`PlcClient.ensure_connected` (called by every read/write), which tries
  at most once per :class:`~agent.modbus.backoff.Backoff` delay (``reconnect_min_s`` ..
  ``reconnect_max_s``, doubling, jittered) and never sleeps: a dead PLC costs one connect
  timeout per backoff period, not one per poll. :attr:`PlcClient.connected` is observable.
- **Retries.** pymodbus retries are off (``retries=0``); each request is tried
  ``1 + plc.retries`` times here, with ``plc.timeout_s`` per attempt, so counters are exact.
- **Dead units.** A unit that keeps timing out is backed off
  (:class:`~agent.modbus.backoff.UnitGuard`): its requests are skipped and its readings are
  BAD ``unit N backed off`` until a probe is due. Within one poll, a unit that timed out is
  not asked again. So one dead RTU slave never stalls the others on the bus.
- **Isolation.** A Modbus exception reply to a coalesced read is retried once per member, so
  one bad channel does not blind its healthy neighbours. A strict PLC that answers
  "illegal data address" to a block read *through* undeclared addresses (the plan's small
  gaps) is learned: that block is read as its contiguous runs from then on.

Make a :class:`PlcClient` inside a running event loop (pymodbus's async clients need one).

Contract:

- Reads never raise: every signal gets a :class:`~agent.readings.Reading`; a timeout, an
  exception reply, a malformed reply or a disconnect give BAD readings whose ``error`` says
  which.
- Writes raise :class:`~agent.errors.WriteRefused` *before anything reaches the wire* for a
  name that is not a declared output, a value outside its limits, or a raw register that is
  not the PLC watchdog's heartbeat. A write the PLC did not acknowledge is reported in the
  returned :class:`WriteResult` (not raised).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from agent.errors import WriteRefused
from agent.modbus.backoff import Backoff, UnitGuard
from agent.modbus.codec import decode, decoder
from agent.modbus.frames import encode_write_frames, resolve_writes
from agent.modbus.plan import (
    DEFAULT_MAX_GAP,
    Block,
    Point,
    WriteOp,
    output_points,
    plan_reads,
    plan_writes,
    signal_points,
)
from agent.profile.model import Profile, Table, TcpLink
from agent.readings import Quality, Reading

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
_ILLEGAL_ADDRESS = 2
_NO_ANSWER_RECONNECT = 4  # TCP: this many unanswered requests in a row drop the connection


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


@dataclass(frozen=True)
class WriteResult:
    """Which outputs the PLC acknowledged and which not (name -> error)."""

    written: tuple[str, ...]
    failed: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return not self.failed


class PlcClient:
    """Modbus master for one profile's PLC (see the module docstring for the contract)."""

    def __init__(
        self,
        profile: Profile,
        *,
        max_gap: int = DEFAULT_MAX_GAP,
        unit_timeout_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        plc = profile.plc
        self._timeout = plc.timeout_s
        self._attempts = 1 + max(0, plc.retries)
        self._clock = clock
        rng = rng or random.Random()
        self._backoff = Backoff(plc.reconnect_min_s, plc.reconnect_max_s, rng)
        self._units = UnitGuard(
            plc.reconnect_min_s, plc.reconnect_max_s, unit_timeout_threshold, rng
        )
        self._signal_blocks = plan_reads(signal_points(profile.signals), max_gap)
        self._decoders = [(s, decoder(s.dtype, s.word_order, s.scale, s.offset))
                          for s in profile.signals]
        self._output_blocks = plan_reads(output_points(profile.outputs), max_gap)
        self._client = self._make_client()
        self._ever_connected = False
        self._was_connected = False
        self._last_connect_error: str | None = None
        self._no_answer = 0
        self._silent_units: set[int] = set()
        self._split: dict[Block, tuple[Block, ...]] = {}  # learned: blocks refused as a whole
        self._closed = False
        self.requests = self.errors = self.timeouts = self.exception_replies = 0
        self.reconnects = self.disconnects = self.skipped = 0

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        link = self.profile.plc.link
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
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
        return bool(self._client.connected)

    @property
    def signal_blocks(self) -> tuple[Block, ...]:
        """The coalesced read plan for the profile's signals."""
        return self._signal_blocks

    async def connect(self) -> bool:
        """Try to connect now (ignoring the backoff); True if connected."""
        self._closed = False
        if self.connected:
            return True
        return await self._try_connect(self._clock())

    async def ensure_connected(self, now: float | None = None) -> bool:
        """Connected, or one connect attempt if the reconnect backoff allows it at ``now``."""
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
            ok = await asyncio.wait_for(self._client.connect(), self._timeout + 1.0)
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            self._last_connect_error = str(exc) or type(exc).__name__
        if ok and self.connected:
            if self._ever_connected:
                self.reconnects += 1
                log.info("PLC reconnected (%s)", self._describe_link())
            else:
                log.info("PLC connected (%s)", self._describe_link())
            self._ever_connected = self._was_connected = True
            self._backoff.succeeded()
            self._last_connect_error = None
            self._no_answer = 0
            return True
        delay = self._backoff.failed(now)
        self._last_connect_error = self._last_connect_error or "connect failed"
        log.warning(
            "PLC connect to %s failed (%s); next try in %.2f s",
            self._describe_link(),
            self._last_connect_error,
            delay,
        )
        return False

    async def close(self) -> None:
        """Close the transport; later reads give BAD readings until :meth:`connect`."""
        self._closed = True
        self._was_connected = False
        self._client.close()
        await asyncio.sleep(0)

    def _describe_link(self) -> str:
        link = self.profile.plc.link
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

    # --- one request, with retries ----------------------------------------------------------

    async def _request(
        self, unit_id: int, call: Callable[[], Awaitable[ModbusPDU]], now_fn: Callable[[], float]
    ) -> Outcome:
        if not self._units.available(unit_id, now_fn()):
            self.skipped += 1
            self._silent_units.add(unit_id)
            return Outcome(None, Failure.BACKED_OFF, f"unit {unit_id} backed off")
        last = Outcome(None, Failure.TIMEOUT, f"unit {unit_id}: timeout")
        # a backed-off unit gets one probe, not a full set of retries
        attempts = 1 if self._units.backed_off(unit_id) else self._attempts
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
                self._silent_units.add(unit_id)
                if self._no_answer >= _NO_ANSWER_RECONNECT and isinstance(
                    self.profile.plc.link, TcpLink
                ):
                    log.warning("PLC stopped answering; dropping the TCP connection")
                    self._client.close()
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

    def _read_call(self, block: Block) -> Callable[[], Awaitable[ModbusPDU]]:
        c, a, n, u = self._client, block.address, block.count, block.unit_id
        match block.table:
            case Table.COIL:
                return lambda: c.read_coils(a, count=n, device_id=u)
            case Table.DISCRETE:
                return lambda: c.read_discrete_inputs(a, count=n, device_id=u)
            case Table.HOLDING:
                return lambda: c.read_holding_registers(a, count=n, device_id=u)
            case Table.INPUT:
                return lambda: c.read_input_registers(a, count=n, device_id=u)

    async def _read_block(
        self, block: Block, now_fn: Callable[[], float]
    ) -> dict[str, tuple[int, ...] | bool | str]:
        """Raw value per member, or an error string per member."""
        outcome = await self._request(block.unit_id, self._read_call(block), now_fn)
        if outcome.response is not None:
            values = outcome.response.bits if block.table.is_bit else outcome.response.registers
            try:
                return dict(block.slice(values))
            except ValueError as exc:
                self.errors += 1
                err = f"malformed reply: {exc}"
                return dict.fromkeys((m.name for m in block.members), err)
        if outcome.failure is Failure.EXCEPTION and outcome.code == _ILLEGAL_ADDRESS:
            runs = plan_reads(block.members, max_gap=0)
            if len(runs) > 1:
                # a strict PLC refuses reads through undeclared addresses: learn to split
                log.info(
                    "unit %d refuses reading %s %d..%d through undeclared addresses; "
                    "reading it as %d blocks from now on",
                    block.unit_id,
                    block.table.value,
                    block.address,
                    block.address + block.count - 1,
                    len(runs),
                )
                self._split[block] = runs
                return await self._read_each(runs, now_fn)
        if outcome.failure is Failure.EXCEPTION and len(block.members) > 1:
            log.info(
                "coalesced read unit %d %s@%d x%d refused (%s); reading members one by one",
                block.unit_id,
                block.table.value,
                block.address,
                block.count,
                outcome.error,
            )
            singles = [Block(m.unit_id, m.table, m.address, m.words, (m,)) for m in block.members]
            return await self._read_each(singles, now_fn)
        return dict.fromkeys((m.name for m in block.members), outcome.error or "failed")

    async def _read_each(
        self, blocks: Iterable[Block], now_fn: Callable[[], float]
    ) -> dict[str, tuple[int, ...] | bool | str]:
        out: dict[str, tuple[int, ...] | bool | str] = {}
        for b in blocks:
            out.update(await self._read_block(b, now_fn))
        return out

    async def _read_blocks(
        self, planned: tuple[Block, ...], now_fn: Callable[[], float]
    ) -> dict[str, tuple[int, ...] | bool | str]:
        results: dict[str, tuple[int, ...] | bool | str] = {}
        # hashing a Block hashes all its members: skip it while nothing was learned
        split = self._split
        blocks = [sub for b in planned for sub in split.get(b, (b,))] if split else planned
        if not await self.ensure_connected(now_fn()):
            reason = f"disconnected: {self._last_connect_error or 'not connected'}"
            for b in blocks:
                results.update(dict.fromkeys((m.name for m in b.members), reason))
            return results
        self._silent_units.clear()
        dead: dict[int, str] = {}  # units that did not answer during this pass
        for b in blocks:
            if b.unit_id in dead:
                self.skipped += 1
                results.update(dict.fromkeys((m.name for m in b.members), dead[b.unit_id]))
                continue
            got = await self._read_block(b, now_fn)
            if b.unit_id in self._silent_units:
                dead[b.unit_id] = next(
                    (v for v in got.values() if isinstance(v, str)), f"unit {b.unit_id}: timeout"
                )
            results.update(got)
        return results

    # --- reads -----------------------------------------------------------------------------

    async def read_signals(self, now_fn: Callable[[], float] | None = None) -> dict[str, Reading]:
        """One Reading per profile signal; never raises (failures are BAD readings)."""
        now_fn = now_fn or self._clock
        raws = await self._read_blocks(self._signal_blocks, now_fn)
        t = now_fn()
        readings: dict[str, Reading] = {}
        for s, decode_signal in self._decoders:
            raw = raws.get(s.name, "not read")
            if isinstance(raw, str):
                readings[s.name] = Reading(s.name, None, None, Quality.BAD, t, raw)
                continue
            try:
                value = decode_signal(raw)
            except ValueError as exc:
                readings[s.name] = Reading(s.name, raw, None, Quality.BAD, t, f"decode: {exc}")
                continue
            if not math.isfinite(value):
                readings[s.name] = Reading(s.name, raw, None, Quality.BAD, t, "not a finite number")
                continue
            readings[s.name] = Reading(s.name, raw, value, Quality.GOOD, t)
        return readings

    async def read_outputs(self) -> dict[str, float | None]:
        """The value each declared output holds in the PLC now (None if it could not be read)."""
        raws = await self._read_blocks(self._output_blocks, self._clock)
        out: dict[str, float | None] = {}
        for o in self.profile.outputs:
            raw = raws.get(o.name, "not read")
            if isinstance(raw, str):
                out[o.name] = None
                continue
            try:
                out[o.name] = decode(raw, o.dtype, o.word_order, o.scale, o.offset)
            except ValueError:
                out[o.name] = None
        return out

    async def read_plc_watchdog(self) -> tuple[int | None, bool | None]:
        """(configured timeout in ms, fault latched) from the PLC; None where unreadable."""
        wd = self.profile.plc_watchdog
        points = [Point("timeout", wd.unit_id, Table.HOLDING, wd.timeout_address, 1)]
        if wd.fault_address is not None:
            points.append(Point("fault", wd.unit_id, Table.DISCRETE, wd.fault_address, 1))
        raws = await self._read_blocks(plan_reads(points), self._clock)
        t = raws.get("timeout")
        f = raws.get("fault")
        timeout_ms = t[0] if isinstance(t, tuple) else None
        fault = f if isinstance(f, bool) else None
        return timeout_ms, fault

    # --- writes ----------------------------------------------------------------------------

    async def _write_op(self, op: WriteOp) -> str | None:
        """Send one write; None if acknowledged, else the error."""
        if not await self.ensure_connected():
            return f"disconnected: {self._last_connect_error or 'not connected'}"
        c, a, u = self._client, op.address, op.unit_id
        call: Callable[[], Awaitable[ModbusPDU]]
        if op.table is Table.COIL:
            bits = [bool(v) for v in op.values]
            if len(bits) == 1:
                call = lambda: c.write_coil(a, bits[0], device_id=u)  # noqa: E731
            else:
                call = lambda: c.write_coils(a, bits, device_id=u)  # noqa: E731
        else:
            regs = [int(v) for v in op.values]
            call = lambda: c.write_registers(a, regs, device_id=u)  # noqa: E731
        outcome = await self._request(u, call, self._clock)
        return None if outcome.response is not None else (outcome.error or "failed")

    async def _write_ops(self, ops: tuple[WriteOp, ...]) -> WriteResult:
        written: list[str] = []
        failed: dict[str, str] = {}
        for op in ops:
            err = await self._write_op(op)
            if err is None:
                written.extend(op.names)
            else:
                log.warning("write %s failed: %s", ",".join(op.names), err)
                failed.update(dict.fromkeys(op.names, err))
        return WriteResult(tuple(written), failed)

    async def write_outputs(self, values: Mapping[str, float]) -> WriteResult:
        """Write ``{output: engineering value}``; contiguous registers go in one fc16 frame.

        Raises WriteRefused (nothing sent) if any name is undeclared or any value refused.
        """
        return await self._write_ops(plan_writes(resolve_writes(self.profile, values)))

    async def write_output(self, name: str, value: float) -> WriteResult:
        """Write one declared output (see :meth:`write_outputs`)."""
        return await self.write_outputs({name: value})

    async def write_register_raw(
        self, address: int, value: int, unit_id: int | None = None
    ) -> WriteResult:
        """Write a raw holding register: only the PLC watchdog's heartbeat register is allowed.

        Raises WriteRefused for any other address or unit, or a value outside 0..65535.
        """
        wd = self.profile.plc_watchdog
        unit = wd.unit_id if unit_id is None else unit_id
        if (unit, address) != (wd.unit_id, wd.heartbeat_address):
            raise WriteRefused(
                f"raw write to unit {unit} holding {address} refused: only the PLC watchdog "
                f"heartbeat (unit {wd.unit_id} holding {wd.heartbeat_address}) may be written raw"
            )
        if not 0 <= value <= 0xFFFF:
            raise WriteRefused(f"heartbeat value {value} outside 0..65535")
        op = WriteOp(unit, Table.HOLDING, address, (value,), ("plc_watchdog.heartbeat",))
        return await self._write_ops((op,))

    async def heartbeat(self, value: int) -> WriteResult:
        """Write ``value & 0xFFFF`` to the PLC watchdog's heartbeat register."""
        wd = self.profile.plc_watchdog
        return await self.write_register_raw(wd.heartbeat_address, value & 0xFFFF)

    async def reset_plc_watchdog(self) -> WriteResult:
        """Write 1 to the PLC watchdog's reset coil (WriteRefused if the profile has none)."""
        wd = self.profile.plc_watchdog
        if wd.reset_address is None:
            raise WriteRefused("the profile declares no plc_watchdog.reset_address")
        op = WriteOp(wd.unit_id, Table.COIL, wd.reset_address, (True,), ("plc_watchdog.reset",))
        return await self._write_ops((op,))

    def encode_safe_frames(self, values: Mapping[str, float]) -> list[bytes]:
        """Pre-encoded request frames (MBAP or RTU+CRC) writing ``values``; see frames.py."""
        return encode_write_frames(self.profile, values)
