"""The agent's Modbus master: the profile's reads and writes over one :class:`ModbusSession`.

The connection, retries, unit backoff and counters are :mod:`agent.io.modbus.session`'s
(reconnects driven by the caller's loop through :meth:`PlcClient.ensure_connected`, which
every read and write calls; ``1 + plc.retries`` attempts of ``plc.timeout_s`` each; a unit
that keeps timing out is backed off and its readings are BAD ``unit N backed off`` until a
probe is due). This module turns the profile's register map into requests:

- **Coalescing.** Signals (and outputs) are read in the blocks planned by
  :func:`agent.protocol.modbus.plan.plan_reads`; contiguous output registers are written in one
  fc16 frame. Within one poll, a unit that timed out is not asked again, so one dead RTU
  slave never stalls the others on the bus.
- **Isolation.** A Modbus exception reply to a coalesced read is retried once per member, so
  one bad channel does not blind its healthy neighbours. A strict PLC that answers
  "illegal data address" to a block read *through* undeclared addresses (the plan's small
  gaps) is learned: that block is read as its contiguous runs from then on.

Make and use a :class:`PlcClient` inside one running event loop.

Contract:

- Reads never raise: every signal gets a :class:`~agent.model.readings.Reading`; a timeout, an
  exception reply, a malformed reply or a disconnect give BAD readings whose ``error`` says
  which (a malformed one: ``malformed reply: <what was wrong>``). Only a reply the session
  checked against its request (exact count, see :mod:`agent.io.modbus.session`) is decoded;
  :meth:`PlcClient.read_outputs` gives None for an output whose read failed in any way.
- Writes raise :class:`~agent.model.errors.WriteRefused` *before anything reaches the wire* for a
  name that is not a declared output, a value outside its limits, or a raw register that is
  not the PLC watchdog's heartbeat. A write the PLC did not acknowledge is reported in the
  returned :class:`WriteResult` (not raised): a write counts as written only when the PLC's
  echo matched what was sent. ``urgent=True`` (the safe set) bypasses the reconnect backoff
  (one connect attempt now) and the unit backoff (each request sent once).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.io.modbus.session import MALFORMED, Failure, ModbusSession
from agent.model.errors import WriteRefused
from agent.model.profile import Profile, Table
from agent.model.readings import Quality, Reading
from agent.model.status import ClientStats
from agent.protocol.modbus import pdu
from agent.protocol.modbus.codec import decode, decoder
from agent.protocol.modbus.frames import encode_write_frames, resolve_writes, write_request
from agent.protocol.modbus.plan import (
    DEFAULT_MAX_GAP,
    Block,
    Point,
    WriteOp,
    output_points,
    plan_reads,
    plan_writes,
    signal_points,
)

__all__ = ["PlcClient", "WriteResult", "read_request", "write_request"]

log = logging.getLogger(__name__)

Gate = Callable[[], "str | None"]
"""Asked right before a write frame goes out: a reason refuses it, None lets it go."""

_ILLEGAL_ADDRESS = 2


@dataclass(frozen=True)
class WriteResult:
    """Which outputs the PLC acknowledged and which not (name -> error)."""

    written: tuple[str, ...]
    failed: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return not self.failed


_READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


def read_request(block: Block) -> pdu.Request:
    """The request that reads ``block`` (fc 1, 2, 3 or 4; the plan keeps it within limits)."""
    return pdu.Request(block.unit_id, _READ_FC[block.table], block.address, block.count)


class PlcClient:
    """Modbus master for one profile's PLC (see the module docstring for the contract).

    The connection and its counters are :attr:`session`'s; the counters are also readable
    here under their old names (``requests``, ``errors``, ``timeouts``,
    ``exception_replies``, ``reconnects``, ``disconnects``, ``skipped``).
    """

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
        self._clock = clock
        self.session = ModbusSession(
            profile.plc, unit_timeout_threshold=unit_timeout_threshold, clock=clock, rng=rng
        )
        self._signal_blocks = plan_reads(signal_points(profile.signals), max_gap)
        self._decoders = [(s, decoder(s.dtype, s.word_order, s.scale, s.offset))
                          for s in profile.signals]
        self._output_blocks = plan_reads(output_points(profile.writes), max_gap)
        self._split: dict[Block, tuple[Block, ...]] = {}  # learned: blocks refused as a whole
        # each planned block's request, built once (keyed by identity: hashing a Block hashes
        # its members; the block is kept to tell a reused id apart)
        self._requests: dict[int, tuple[Block, pdu.Request]] = {}

    # --- connection (the session's) ----------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a transport to the PLC is open."""
        return self.session.connected

    @property
    def signal_blocks(self) -> tuple[Block, ...]:
        """The coalesced read plan for the profile's signals."""
        return self._signal_blocks

    async def connect(self) -> bool:
        """Try to connect now (ignoring the backoff); True if connected."""
        return await self.session.connect()

    async def ensure_connected(self, now: float | None = None) -> bool:
        """Connected, or one connect attempt if the reconnect backoff allows it at ``now``."""
        return await self.session.ensure_connected(now)

    async def close(self) -> None:
        """Close the transport; later reads give BAD readings until :meth:`connect`."""
        await self.session.close()

    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        return self.session.stats()

    @property
    def requests(self) -> int:
        return self.session.requests

    @property
    def errors(self) -> int:
        return self.session.errors

    @property
    def timeouts(self) -> int:
        return self.session.timeouts

    @property
    def exception_replies(self) -> int:
        return self.session.exception_replies

    @property
    def reconnects(self) -> int:
        return self.session.reconnects

    @property
    def disconnects(self) -> int:
        return self.session.disconnects

    @property
    def skipped(self) -> int:
        return self.session.skipped

    @property
    def malformed(self) -> int:
        return self.session.malformed

    @property
    def last_connect_error(self) -> str | None:
        """Why the last connect failed, in words (None after a success)."""
        return self.session.last_connect_error

    # --- reads of planned blocks -----------------------------------------------------------

    async def _read_block(
        self, block: Block, now_fn: Callable[[], float]
    ) -> dict[str, tuple[int, ...] | bool | str]:
        """Raw value per member, or an error string per member."""
        cached = self._requests.get(id(block))
        if cached is None or cached[0] is not block:
            cached = self._requests[id(block)] = (block, read_request(block))
        outcome = await self.session.request(cached[1], now_fn)
        reply = outcome.response
        if reply is not None:
            values: tuple[bool, ...] | tuple[int, ...] | None = None
            if isinstance(reply, pdu.Bits) and block.table.is_bit:
                values = reply.bits
            elif isinstance(reply, pdu.Registers) and not block.table.is_bit:
                values = reply.registers
            try:
                if values is None:
                    raise ValueError(f"{type(reply).__name__} for a {block.table.value} read")
                return dict(block.slice(values))
            except ValueError as exc:  # the session checked the count: a bug if it gets here
                self.session.count_error()
                return dict.fromkeys((m.name for m in block.members), f"{MALFORMED}{exc}")
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
        if not await self.session.ensure_connected(now_fn()):
            reason = self.session.disconnect_reason()
            for b in blocks:
                results.update(dict.fromkeys((m.name for m in b.members), reason))
            return results
        silent = self.session.silent_units
        silent.clear()
        dead: dict[int, str] = {}  # units that did not answer during this pass
        for b in blocks:
            if b.unit_id in dead:
                self.session.count_skipped()
                results.update(dict.fromkeys((m.name for m in b.members), dead[b.unit_id]))
                continue
            got = await self._read_block(b, now_fn)
            if b.unit_id in silent:
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
        """The value each writable point (the outputs, [plc_remote]'s flag) holds in the PLC
        now (None if it could not be read)."""
        raws = await self._read_blocks(self._output_blocks, self._clock)
        out: dict[str, float | None] = {}
        for o in self.profile.writes:
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

    async def _write_op(self, op: WriteOp, urgent: bool) -> str | None:
        """Send one write; None if acknowledged (its echo matched), else the error."""
        if not await self.session.ensure_connected(urgent=urgent):
            return self.session.disconnect_reason()
        outcome = await self.session.request(write_request(op), self._clock, urgent=urgent)
        if isinstance(outcome.response, pdu.WriteEcho):
            return None
        return outcome.error or "failed"

    async def _write_ops(self, ops: tuple[WriteOp, ...], urgent: bool = False,
                         gate: Gate | None = None) -> WriteResult:
        written: list[str] = []
        failed: dict[str, str] = {}
        for op in ops:
            err = gate() if gate is not None else None
            if err is None:
                err = await self._write_op(op, urgent)
            if err is None:
                written.extend(op.names)
            else:
                log.warning("write %s failed: %s", ",".join(op.names), err)
                failed.update(dict.fromkeys(op.names, err))
        return WriteResult(tuple(written), failed)

    async def write_outputs(
        self, values: Mapping[str, float], *, urgent: bool = False, gate: Gate | None = None
    ) -> WriteResult:
        """Write ``{output: engineering value}``; contiguous registers go in one fc16 frame.

        ``urgent`` (the safe set): one connect attempt now if disconnected, whatever the
        reconnect backoff says, and every request sent once, even to a backed-off unit.
        ``gate`` is asked right before each frame goes out: a reason (str) refuses that
        frame (its outputs fail with that reason, nothing is sent), None lets it go.
        Raises WriteRefused (nothing sent) if any name is undeclared or any value refused.
        """
        ops = plan_writes(resolve_writes(self.profile, values))
        return await self._write_ops(ops, urgent, gate)

    async def write_output(self, name: str, value: float, *, urgent: bool = False) -> WriteResult:
        """Write one declared output (see :meth:`write_outputs`)."""
        return await self.write_outputs({name: value}, urgent=urgent)

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

    async def heartbeat(self, value: int, gate: Gate | None = None) -> WriteResult:
        """Write ``value & 0xFFFF`` to the PLC watchdog's heartbeat register (``gate`` as
        for :meth:`write_outputs`)."""
        wd = self.profile.plc_watchdog
        op = WriteOp(wd.unit_id, Table.HOLDING, wd.heartbeat_address, (value & 0xFFFF,),
                     ("plc_watchdog.heartbeat",))
        return await self._write_ops((op,), gate=gate)

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
