"""The simulated PLC: register map + process model + faults + write log + comm watchdog.

``SimPlc`` is the Python API (tests may drive it in-process); ``sim.plc.serve`` puts it behind
pymodbus servers (through ``sim.plc.datastore.PlcDatastore``), ``sim.plc.control`` behind a
Unix-socket control channel.

Address rule (``RegisterMap``): by default (``strict_map=False``) each (unit, table) serves
every address from its lowest to its highest declared one, undeclared ones reading as 0 and
refusing writes, like a real PLC's contiguous process image; with ``strict_map=True`` only
declared addresses exist. Anything else answers exception 2 (illegal data address).

How it hooks into pymodbus 3.16's simulator (``pymodbus.simulator``):

* ``devices()`` builds one ``SimDevice`` per unit id with four separate blocks (coils,
  discrete inputs, holding, input registers) holding the declared addresses (strict) or the
  whole declared span with read-only zero registers in the gaps (contiguous). Bit tables are
  valid in whole 16-bit words in pymodbus, so ``PlcDatastore`` applies the address rule with
  the request's exact count before pymodbus sees it; the action checks again (registers are
  exact there). Read-only registers (signals, watchdog timeout, gaps) refuse writes with 2.
* The device ``action`` hook runs on every access: it applies the slow-reply delay and
  dropout faults, refreshes the touched words from the register image before a read, and
  takes writes into the image (heartbeat -> watchdog, reset coil -> latch).
* With ``[sim.program]``, ``sim.plc.remote.RemoteSwitch`` runs the PLC program behind the
  ``[plc_remote]`` flag: the plant gets the program's outputs (local) or the registers'
  (remote); every write the action takes is passed on to it, and the communication
  watchdog's fallback follows ``comm_fallback``.
* ``trace_pdu`` sees every decoded request first: it timestamps writes for the write log
  (``t`` when the request's first byte arrived, from ``sim.plc.ordered``'s handler;
  ``t_decoded`` now, when the framer has decoded it; the reply, also seen there, says
  whether the write was accepted), and swallows requests while the PLC is told to stop
  answering (and, on RTU, requests for other unit ids).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from agent.model.profile import CommFallback, DataType, Output, Profile, Signal, Table
from sim.plc import faults as flt
from sim.plc.codec import decode_for, encode_for
from sim.plc.process import PRESSURE_NOISE_SIGMA, TEMP_NOISE_SIGMA, ChannelNoise, TankModel
from sim.plc.registers import Kind, RegisterMap
from sim.plc.remote import ModeSwitch, RemoteSwitch, TraceEntry
from sim.plc.watchdog import CommWatchdog
from sim.plc.writelog import WriteLog, WriteRecord

log = logging.getLogger(__name__)

FC_TABLE: dict[int, Table] = {
    1: Table.COIL, 5: Table.COIL, 15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING, 23: Table.HOLDING,
    4: Table.INPUT,
}  # fmt: skip
WRITE_FCS = (5, 6, 15, 16)
READ_FCS = (1, 2, 3, 4)


class _Access(NamedTuple):
    """One access to a pymodbus block: ``start`` is the block's first address (or word)."""

    unit: int
    table: Table
    start: int
    address: int
    n: int  # registers, or 16-bit words of bits


@dataclass(frozen=True)
class _Pending:
    t: float  # the request's first byte arrived
    t_decoded: float
    unit: int
    fc: int
    table: Table
    address: int
    values: tuple[int, ...]


def _gaps(addrs: list[int]) -> list[SimData]:
    """Read-only zero registers filling the holes between the sorted declared ``addrs``."""
    return [
        SimData(a + 1, count=b - a - 1, values=0, datatype=SimType.REGISTERS, readonly=True)
        for a, b in itertools.pairwise(addrs)
        if b - a > 1
    ]


class SimPlc:
    """A PLC built from ``profile``. ``clock`` is read only by the adapter methods.

    ``strict_map`` False (default): undeclared addresses inside a table's declared span read
    as 0 (writes to them answer exception 2); True: every undeclared address answers 2.
    Raises RegisterMapError if the profile's items overlap.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        seed: int = 0,
        watchdog_ms: int | None = None,
        write_log: WriteLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        answer_foreign_units: bool = True,
        strict_map: bool = False,
    ) -> None:
        self.profile = profile
        self.map = RegisterMap(profile, strict=strict_map)
        self.log = write_log if write_log is not None else WriteLog()
        self._clock = clock
        self._answer_foreign = answer_foreign_units
        now = clock()
        self.model = TankModel(now)
        self._bound = profile.sim
        channels = tuple(s.name for s in profile.signals)
        self._noise = ChannelNoise(seed, channels)
        self._fault_rng = random.Random(seed + 7919)
        self._signal_faults: dict[str, flt.SignalFault] = {}
        self.plc_faults = flt.PlcFaults()
        self._served: dict[str, float] = {}
        self._pending: dict[tuple[int, int, int], deque[_Pending]] = {}
        self.errors = 0  # bad inputs / encode failures, counted
        self.drop_hook: Callable[[], int] | None = None
        wd = profile.plc_watchdog
        timeout = wd.expected_timeout_ms if watchdog_ms is None else watchdog_ms
        self.watchdog = CommWatchdog(timeout)
        self.map.put(wd.unit_id, Table.HOLDING, wd.timeout_address, (timeout & 0xFFFF,))
        for o in profile.outputs:  # a PLC powers up with its outputs at their fallback
            self.map.put_item(o, encode_for(o, o.safe_value))
        if profile.plc_remote is not None:  # and its program in charge (remote disabled)
            self.map.put_item(profile.plc_remote.output, (profile.plc_remote.local_value,))
        self.program: RemoteSwitch | None = None
        self.tick(now)
        b = self._bound
        if b is not None and b.program is not None:
            self.program = RemoteSwitch(
                profile, b.program, profile.output(b.heater), profile.output(b.cooling), self.map
            )
            self.program.start(now, self._measured())

    # ------------------------------------------------------------------ pymodbus wiring
    def devices(self) -> list[SimDevice]:
        """One SimDevice per unit id of the profile, its action bound to this PLC (plus, on
        TCP, a catch-all device 0 with nothing in it, so unknown unit ids get exception 2).
        Serve them through ``PlcDatastore``, which applies the address rule to bit tables."""
        out = []
        units = list(self.map.units)
        if self._answer_foreign and 0 not in units:
            units.append(0)  # pymodbus' catch-all id: other unit ids answer exception 2
        for unit in units:
            blocks: list[list[SimData]] = []
            for table in (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT):
                addrs = self.map.addresses(unit, table)
                if table.is_bit:
                    data = [SimData(a, values=[False], datatype=SimType.BITS) for a in addrs]
                    blocks.append(data or [SimData(0, values=[False], datatype=SimType.BITS)])
                else:
                    data = [
                        SimData(
                            a,
                            values=0,
                            datatype=SimType.REGISTERS,
                            readonly=not self.map.cells[(unit, table, a)].kind.writable,
                        )
                        for a in addrs
                    ]
                    if not self.map.strict:
                        data += _gaps(addrs)
                    blocks.append(data or [SimData(0, datatype=SimType.INVALID)])
            action = functools.partial(self._action, unit)
            out.append(SimDevice(unit, (blocks[0], blocks[1], blocks[2], blocks[3]), action=action))
        return out

    async def _action(  # noqa: PLR0917 (signature fixed by pymodbus' SimAction)
        self,
        unit: int,
        fc: int,
        start: int,
        address: int,
        count: int,
        regs: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = FC_TABLE.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if (values is not None or fc in READ_FCS) and self.plc_faults.delay_s > 0:
            await asyncio.sleep(self.plc_faults.delay_s)
        now = self._clock()
        acc = _Access(unit, table, start, address, count)
        if table.is_bit:
            return self._bits(acc, regs, values, now)
        return self._registers(acc, regs, values, now)

    def _registers(
        self, acc: _Access, regs: list[int], values: list[int] | list[bool] | None, now: float
    ) -> ExcCodes | None:
        unit, table, start, address, count = acc
        if values is not None:
            if not self.map.check_write(unit, table, address, len(values)):
                return ExcCodes.ILLEGAL_ADDRESS
            for i, v in enumerate(values):
                self._take_write(unit, table, address + i, int(v), now)
            return None
        if not self.map.check_read(unit, table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        if self._dropped(unit, table, address, count):
            return ExcCodes.DEVICE_FAILURE
        regs[address - start : address - start + count] = self.map.get(unit, table, address, count)
        return None

    def _bits(
        self, acc: _Access, regs: list[int], values: list[int] | list[bool] | None, now: float
    ) -> ExcCodes | None:
        unit, table, start, address, count = acc
        first_word = address // 16
        if values is not None:
            if not self.map.check_write(unit, table, address, len(values)):
                return ExcCodes.ILLEGAL_ADDRESS
            for i, v in enumerate(values):
                self._take_write(unit, table, address + i, 1 if v else 0, now)
        elif not self.map.check_read(unit, table, address, 1):
            return ExcCodes.ILLEGAL_ADDRESS
        elif self._dropped(unit, table, address, 1):
            return ExcCodes.DEVICE_FAILURE
        for w in range(first_word, first_word + count):
            bits = self.map.get(unit, table, w * 16, 16)
            regs[w - start] = sum(1 << i for i, b in enumerate(bits) if b)
        return None

    def _take_write(self, unit: int, table: Table, address: int, value: int, now: float) -> None:
        self.map.put(unit, table, address, (value,))
        cell = self.map.cells[(unit, table, address)]
        kind = cell.kind
        wd = self.profile.plc_watchdog
        if kind is Kind.OUTPUT and self.program is not None:
            self.program.written(cell.name, now)
        elif kind is Kind.HEARTBEAT:
            self.watchdog.heartbeat(value, now)
        elif kind is Kind.RESET and value:
            if self.watchdog.reset(now):
                log.info("PLC watchdog latch reset")
            else:
                log.info("PLC watchdog reset refused: no heartbeat coming in")
            if wd.fault_address is not None:
                latched = 1 if self.watchdog.latched else 0
                self.map.put(wd.unit_id, Table.DISCRETE, wd.fault_address, (latched,))

    def _dropped(self, unit: int, table: Table, address: int, count: int) -> bool:
        for i in range(count):
            cell = self.map.cells.get((unit, table, address + i))
            if cell is not None and cell.kind is Kind.SIGNAL:
                fault = self._signal_faults.get(cell.name)
                if fault is not None and fault.kind is flt.FaultKind.DROPOUT:
                    return True
        return False

    def trace_pdu(
        self, sending: bool, pdu: ModbusPDU, arrived: float | None = None
    ) -> ModbusPDU | None:
        """The servers' ``trace_pdu`` hook (``sim.plc.ordered.RequestTrace``): timestamps
        writes, records replies, swallows requests.

        ``arrived`` is when the request's first byte reached the server, on this PLC's clock
        (the write's ``t``); None (a server that does not stamp arrivals) takes the decode
        time, ``t_decoded``, for both. Returning None makes the server drop the request
        without a reply.
        """
        if sending:
            self._finish(pdu)
            if self.plc_faults.malformed and pdu.function_code in READ_FCS:
                pdu.transaction_id = (pdu.transaction_id + 1) & 0xFFFF
            return pdu
        now = self._clock()
        if not self._answer_foreign and pdu.dev_id not in self.map.units:
            return None  # an RTU slave stays silent for other addresses
        fc = pdu.function_code
        if fc in WRITE_FCS:
            vals = (
                tuple(1 if b else 0 for b in pdu.bits)
                if fc in (5, 15)
                else tuple(int(r) for r in pdu.registers)
            )
            t = now if arrived is None else arrived
            p = _Pending(t, now, pdu.dev_id, fc, FC_TABLE[fc], pdu.address, vals)
            if self.plc_faults.stopped:
                self._record(p, False, "not answered (stop fault)")
                return None
            self._pending.setdefault((pdu.dev_id, pdu.transaction_id, fc), deque()).append(p)
        elif self.plc_faults.stopped:
            return None
        return pdu

    def _finish(self, pdu: ModbusPDU) -> None:
        key = (pdu.dev_id, pdu.transaction_id, pdu.function_code & 0x7F)
        queue = self._pending.get(key)
        if not queue:
            return
        p = queue.popleft()
        if not queue:
            del self._pending[key]
        if isinstance(pdu, ExceptionResponse):
            log.warning(
                "refused write fc %d unit %d %s %d x%d: exception %d",
                p.fc, p.unit, p.table.value, p.address, len(p.values), pdu.exception_code,
            )  # fmt: skip
            self._record(p, False, f"exception {pdu.exception_code}")
        else:
            self._record(p, True, None)

    def _record(self, p: _Pending, accepted: bool, error: str | None) -> None:
        names = self.map.names(p.unit, p.table, p.address, len(p.values))
        self.log.add(
            t=p.t, unit=p.unit, fc=p.fc, table=p.table.value, address=p.address,
            values=p.values, names=names, accepted=accepted, error=error,
            t_decoded=p.t_decoded,
        )  # fmt: skip

    # ------------------------------------------------------------------ the plant
    def tick(self, now: float) -> None:
        """Advance the process to ``now``, refresh the signal registers, run the watchdog."""
        heater = cooling = 0.0
        if self._bound is not None:
            heater = self.applied_value(self._bound.heater)
            cooling = self.applied_value(self._bound.cooling)
        state = self.model.step(now, heater, cooling)
        for sig in self.profile.signals:
            value = self._true_value(sig, state.temperature, state.pressure)
            served = flt.apply(value, self._signal_faults.get(sig.name), now, self._fault_rng)
            try:
                self.map.put_item(sig, encode_for(sig, served))
            except ValueError:
                self.errors += 1
                log.warning("cannot encode %r for %s; keeping the old value", served, sig.name)
                continue
            self._served[sig.name] = served
        if self.program is not None:
            self.program.cycle(now, self._measured())
        if self.watchdog.check(now):
            self._fallback(now)

    def _measured(self) -> float:
        """The PLC program's temperature: the median of the bound channels it serves (faults
        included: the program reads the same sensors a master does), or the true value."""
        b = self._bound
        values = sorted(self._served[n] for n in (b.temperature if b else ()) if n in self._served)
        if not values:
            return self.model.state.temperature
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0

    def _true_value(self, sig: Signal, temperature: float, pressure: float) -> float:
        b = self._bound
        if b is not None and sig.name in b.temperature:
            return temperature + self._noise.sample(sig.name, TEMP_NOISE_SIGMA)
        if b is not None and sig.name in b.pressure:
            return pressure + self._noise.sample(sig.name, PRESSURE_NOISE_SIGMA)
        if sig.dtype is DataType.BOOL:
            return 1.0  # a constant healthy contact (e.g. "estop_ok")
        return (sig.low + sig.high) / 2.0

    def _fallback(self, now: float) -> None:
        """The communication watchdog expired: without a program, every output to its safe
        value (a dumb coupler); with one, ``comm_fallback`` local sets the flag to
        ``local_value`` (the program takes over, bumplessly), safe sets the outputs to their
        safe values and the flag to ``remote_value`` (the plant gets those registers)."""
        wd = self.profile.plc_watchdog
        flag = self.profile.plc_remote
        fallback = None if self.program is None else self.program.pi.config.comm_fallback
        if fallback is not CommFallback.LOCAL:
            log.warning("PLC communication watchdog expired: applying fallback outputs")
            for o in self.profile.outputs:
                self._fallback_write(now, o, encode_for(o, o.safe_value))
        if self.program is not None and flag is not None:
            remote = fallback is CommFallback.SAFE
            log.warning("PLC communication watchdog expired: remote %s",
                        "enabled on the safe values" if remote else "disabled, program runs")
            value = flag.remote_value if remote else flag.local_value
            self._fallback_write(now, flag.output, (value,))
            self.program.written(flag.output.name, now, cause="plc watchdog")
        if wd.fault_address is not None:
            self.map.put(wd.unit_id, Table.DISCRETE, wd.fault_address, (1,))

    def _fallback_write(self, now: float, o: Output, words: tuple[int, ...]) -> None:
        self.map.put_item(o, words)
        self.log.add(
            t=now, unit=o.unit_id, fc=0, table=o.table.value, address=o.address,
            values=words, names=(o.name,), accepted=True, source="plc watchdog",
        )  # fmt: skip

    def output_value(self, name: str) -> float:
        """Engineering value of output ``name`` now in the image; KeyError if undeclared."""
        o = self.profile.output(name)
        return decode_for(o, self.map.get_item(o))

    def applied_value(self, name: str) -> float:
        """What the plant gets for output ``name``: the PLC program's value while it drives
        the output, else the register's; KeyError if undeclared."""
        value = None if self.program is None else self.program.applied(name)
        return self.output_value(name) if value is None else value

    # ------------------------------------------------------------------ the Python API
    def set_signal_fault(
        self, name: str, kind: flt.FaultKind, value: float | None = None, now: float | None = None
    ) -> flt.SignalFault:
        """Put a fault on signal ``name`` (replacing any); KeyError for an unknown signal."""
        sig = self.profile.signal(name)
        t = self._clock() if now is None else now
        v = flt.default_value(kind, sig.low, sig.high) if value is None else float(value)
        fault = flt.SignalFault(kind, v, t, self._served.get(name, 0.0))
        self._signal_faults[name] = fault
        log.info("fault %s on %s (value %s)", kind.value, name, v)
        return fault

    def set_slow(self, delay_ms: float) -> None:
        self.plc_faults = dataclasses.replace(self.plc_faults, delay_s=max(0.0, delay_ms) / 1000.0)

    def set_stopped(self, stopped: bool = True) -> None:
        self.plc_faults = dataclasses.replace(self.plc_faults, stopped=stopped)

    def set_malformed(self, malformed: bool = True) -> None:
        """Read replies go out with their request's transaction id + 1 (writes are answered
        as usual, so the write log's ``accepted`` still means the PLC took the write)."""
        self.plc_faults = dataclasses.replace(self.plc_faults, malformed=malformed)

    def drop_connections(self) -> int:
        """Close every client connection now; returns how many were closed."""
        n = self.drop_hook() if self.drop_hook is not None else 0
        for queue in self._pending.values():
            for p in queue:
                self._record(p, False, "connection dropped before the reply")
        self._pending.clear()
        return n

    def clear(self, signal: str | None = None) -> None:
        """Clear the faults of one signal, or every fault (signal and PLC-wide) when None."""
        if signal is not None:
            self._signal_faults.pop(signal, None)
            return
        self._signal_faults.clear()
        self.plc_faults = flt.PlcFaults()

    def set_output(self, name: str, value: float, now: float | None = None) -> WriteRecord:
        """Set an output register (or the [plc_remote] flag) as a master would, logged with
        source "control"; with a PLC program the flag decides whether the plant gets it."""
        o = self.profile.output(name)
        t = self._clock() if now is None else now
        words = encode_for(o, value)
        self.map.put_item(o, words)
        if self.program is not None:
            self.program.written(o.name, t, cause="control")
        return self.log.add(
            t=t, unit=o.unit_id, fc=0, table=o.table.value, address=o.address, values=words,
            names=(o.name,), accepted=True, source="control",
        )  # fmt: skip

    def writes(self, since: int = 0) -> list[WriteRecord]:
        return self.log.since(since)

    def _require_program(self) -> RemoteSwitch:
        if self.program is None:
            raise ValueError("the profile has no [sim.program]: this PLC runs no program")
        return self.program

    def set_setpoint(self, value: float) -> float:
        """Change the PLC program's local setpoint (the operator HMI); ValueError without a
        program or for a non-finite value. Returns the new setpoint."""
        program = self._require_program()
        program.set_setpoint(value)
        log.info("program setpoint %.2f", program.pi.setpoint)
        return program.pi.setpoint

    def program_switches(self, since: int = 0) -> list[ModeSwitch]:
        """The program's mode switches with ``seq >= since``; ValueError without a program."""
        return self._require_program().switches[max(0, since) :]

    def program_trace(self, since_t: float = 0.0) -> list[TraceEntry]:
        """What the plant got, one entry per task cycle from ``since_t`` (monotonic time);
        ValueError without a program."""
        return self._require_program().trace_since(since_t)

    def state(self, now: float | None = None) -> dict[str, Any]:
        """True process values, served signal values, outputs, faults and watchdog status."""
        t = self._clock() if now is None else now
        s = self.model.state
        wd = self.watchdog.status()
        faults = {
            n: {"kind": f.kind.value, "value": f.value} for n, f in self._signal_faults.items()
        }
        plc = {"delay_ms": self.plc_faults.delay_s * 1000.0, "stopped": self.plc_faults.stopped,
               "malformed": self.plc_faults.malformed}
        flag = None if self.profile.plc_remote is None else self.profile.plc_remote.output
        return {
            "t": t,
            "temperature": s.temperature,
            "pressure": s.pressure,
            "signals": dict(self._served),
            "outputs": {o.name: self.output_value(o.name) for o in self.profile.outputs},
            "applied": {o.name: self.applied_value(o.name) for o in self.profile.outputs},
            "plc_remote": None if flag is None else self.map.get_item(flag)[0],
            "program": None if self.program is None else self.program.status(),
            "faults": faults,
            "plc": plc,
            "watchdog": {
                "timeout_ms": wd.timeout_ms, "armed": wd.armed, "latched": wd.latched,
                "trips": wd.trips, "last_change": wd.last_change, "last_value": wd.last_value,
            },
            "writes": len(self.log),
            "errors": self.errors,
        }  # fmt: skip
