"""Parse a hardware profile (what ``tomllib`` produced) into a frozen ``Profile``.

Pure: no files, no clocks, no sockets. ``parse_profile(data, source)`` either returns a
``Profile`` or raises ``agent.model.errors.ProfileError`` carrying *every* problem found, each a
``Problem(file, path, reason)`` whose path names the offending key
(``signals[2].address``, ``plc.port``, ``groups[0].voting``). A problem is never skipped to
report the next one: each section is read in full, cross-checks run on what did parse.

Unknown keys are errors (a typo in a safety file must never be silently ignored) and get a
``difflib`` suggestion. ``true`` is not an integer and ``1`` is not a boolean. Non-finite
floats (``nan``, ``inf``) are rejected. The schema is described key by key in
``hw_profiles/README.md``; cross-checks:

- GPIO pins are distinct; RTU unit ids are not 0 (broadcast never answers).
- No two registers/bits overlap in the same table and unit: signals, outputs and the PLC
  watchdog registers; a 32-bit value spans two addresses (``agent.config.profile.registers``).
- outputs are on writable tables, their min/max fit the raw type after scaling
  (``raw = (value - offset) / scale``), safe values lie within [min, max].
- groups reference existing signals, each signal in at most one group, ``MooN`` with
  N == number of signals; trips reference existing groups and their limits lie inside the
  group's plausible range (otherwise the trip could never act, or always would).
- ``[[outputs]].on_twin_loss``: ``local`` needs a ``local_value`` within [min, max] (and
  only ``local`` takes one); ``release`` needs a ``[plc_remote]`` table, whose flag is
  claimed like any register, whose two values differ, and whose name ``plc_remote`` no
  output may take.
- ``[sim.program]`` needs a ``[plc_remote]`` table, and its ``cooling`` lies within the
  cooling output's [min, max].
- timing can work: ``poll_period_s < watchdog_deadline_s < expected_timeout_ms / 1000``,
  ``poll_period_s < heartbeat_timeout_s``, ``heartbeat_late_s < heartbeat_timeout_s``,
  each group's ``max_age_s >= poll_period_s``.

Anything else raised from here (TypeError, KeyError...) is a bug.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from agent.config.fields import Fields, Problems, is_identifier
from agent.config.profile.registers import (
    ADDRESS_MAX,
    Claims,
    Span,
    check_raw_limits,
    read_layout,
    read_scaling,
)
from agent.model.errors import ProfileError
from agent.model.profile import (
    PLC_REMOTE,
    RT_PRIORITY_MAX,
    AuthoritySettings,
    Board,
    CommFallback,
    DataType,
    FailsafePolicy,
    Group,
    Output,
    Parity,
    PlcConnection,
    PlcRemote,
    PlcWatchdog,
    Profile,
    RealtimeSettings,
    Recovery,
    RecoveryPolicy,
    ReturnPolicy,
    RtuLink,
    SafeDirection,
    Scheduling,
    Signal,
    SimBinding,
    SimProgram,
    Table,
    TcpLink,
    Timing,
    Trip,
    TripCondition,
    TwinLossPolicy,
)

__all__ = ["DEFAULT_TCP_PORT", "STANDARD_BAUDRATES", "parse_profile"]

GPIO_MAX = 27
UNIT_ID_MAX = 247
DEFAULT_TCP_PORT = 502
STANDARD_BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)

TOP_KEYS = ("require_native_watchdog", "board", "plc", "signals", "groups", "outputs",
            "trips", "plc_watchdog", "timing", "recovery", "plc_remote", "authority",
            "realtime", "sim")
BOARD_KEYS = ("name", "led_green", "led_amber", "led_red", "reset_button", "reset_hold_s",
              "serial_device", "hw_watchdog", "fault_led", "fault_led_value")
TCP_KEYS = ("host", "port")
RTU_KEYS = ("device", "baudrate", "parity", "stopbits", "bytesize")
PLC_KEYS = ("transport", *TCP_KEYS, *RTU_KEYS, "unit_id", "timeout_s", "retries",
            "reconnect_min_s", "reconnect_max_s")
SIGNAL_KEYS = ("name", "table", "address", "type", "word_order", "scale", "offset", "unit",
               "range", "unit_id")
OUTPUT_KEYS = ("name", "table", "address", "type", "word_order", "scale", "offset", "unit",
               "min", "max", "max_rate", "safe_value", "failsafe", "unit_id", "on_twin_loss",
               "local_value")
GROUP_KEYS = ("name", "signals", "voting", "min_healthy", "safe_direction", "discrepancy",
              "max_age_s", "max_rate", "stuck_after_s", "required")
TRIP_KEYS = ("name", "group", "condition", "limit")
WATCHDOG_KEYS = ("heartbeat_address", "timeout_address", "expected_timeout_ms",
                 "fault_address", "reset_address", "unit_id")
TIMING_KEYS = ("poll_period_s", "heartbeat_timeout_s", "heartbeat_late_s",
               "watchdog_deadline_s")
RECOVERY_KEYS = ("policy", "holdoff_s")
PLC_REMOTE_KEYS = ("table", "address", "unit_id", "remote_value", "local_value")
AUTHORITY_KEYS = ("return", "return_holdoff_s")
REALTIME_KEYS = ("scheduling", "loop_priority", "watchdog_priority", "lock_memory")
SIM_KEYS = ("temperature", "pressure", "heater", "cooling", "program")
SIM_PROGRAM_KEYS = ("setpoint", "kp", "ki", "cooling", "comm_fallback")

_READ_ONLY = {Table.INPUT: "input registers are read-only",
              Table.DISCRETE: "discrete inputs are read-only"}


class _Transport(enum.Enum):
    TCP = "tcp"
    RTU = "rtu"


def parse_profile(data: Mapping[str, Any], source: str) -> Profile:
    """Validate ``data`` (a parsed TOML document) and build the ``Profile``.

    ``source`` is the file name used in every ``Problem``. Raises ``ProfileError`` listing
    every problem found; never returns a partially valid profile.
    """
    return _Parser(source).parse(data)


class _Parser:
    """One parse: the problems found so far and the parts already read, for cross-checks."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out = Problems(source)
        self.transport: _Transport | None = None
        self.default_unit = 1
        self.poll: float | None = None
        self.signal_names: dict[str, str] = {}  # declared name -> path (even if invalid)
        self.output_names: dict[str, str] = {}
        self.group_names: dict[str, str] = {}
        self.broken: set[str] = set()  # arrays missing or malformed: skip references to them
        self.trip_names: dict[str, str] = {}
        self.signals: dict[str, Signal] = {}  # fully valid ones only
        self.groups: dict[str, Group] = {}
        self.grouped: dict[str, str] = {}  # signal name -> path of the group holding it
        self.claims = Claims()

    # --- top level -----------------------------------------------------------------------

    def parse(self, data: Mapping[str, Any]) -> Profile:
        top = Fields(self.out, "", data, TOP_KEYS)
        native = top.flag("require_native_watchdog", True)
        board = self._board(self._table(top, "board"))
        plc = self._plc(self._table(top, "plc"), board)
        timing = self._timing(self._table(top, "timing"))
        signals = [self._signal(p, r) for p, r in self._array(top, "signals", required=True)]
        outputs = [self._output(p, r) for p, r in self._array(top, "outputs", required=True)]
        groups = [self._group(p, r) for p, r in self._array(top, "groups", required=True)]
        trips = [self._trip(p, r) for p, r in self._array(top, "trips", required=False)]
        watchdog = self._watchdog(self._table(top, "plc_watchdog"))
        recovery = self._recovery(self._table(top, "recovery"))
        plc_remote = (self._plc_remote(top.data["plc_remote"], outputs)
                      if "plc_remote" in top.data else None)
        if plc_remote is None and "plc_remote" not in top.data:
            for i, o in enumerate(outputs):
                if o is not None and o.on_twin_loss is TwinLossPolicy.RELEASE:
                    self.out.add(f"outputs[{i}].on_twin_loss",
                                 "release needs a [plc_remote] table (the PLC program's "
                                 "remote-enabled flag the output is handed back through)")
        authority = (self._authority(top.data["authority"]) if "authority" in top.data
                     else AuthoritySettings())
        realtime = (self._realtime(top.data["realtime"]) if "realtime" in top.data
                    else RealtimeSettings())
        sim = self._sim(top.data["sim"]) if "sim" in top.data else None
        if sim is not None and sim.program is not None:
            self._check_program(sim, outputs, has_flag="plc_remote" in top.data)
        if timing is not None and watchdog is not None:
            plc_timeout_s = watchdog.expected_timeout_ms / 1000
            if timing.watchdog_deadline_s >= plc_timeout_s:
                self.out.add("timing.watchdog_deadline_s",
                             f"{timing.watchdog_deadline_s:g} s must be less than the PLC "
                             f"watchdog timeout (plc_watchdog.expected_timeout_ms = "
                             f"{watchdog.expected_timeout_ms} ms), or the PLC falls back "
                             "before the agent's own watchdog notices")
        if timing is not None and plc is not None and plc.timeout_s > timing.io_budget_s:
            self.out.add("plc.timeout_s",
                         f"{plc.timeout_s:g} s does not fit in one tick: watchdog_deadline_s "
                         f"({timing.watchdog_deadline_s:g} s) minus poll_period_s "
                         f"({timing.poll_period_s:g} s) leaves {timing.io_budget_s:g} s for "
                         "PLC I/O; a slow PLC would look like a hung agent")
        if self.out.items:
            raise ProfileError(self.out.items)
        # No problems means every part parsed: the asserts document it for mypy.
        assert board is not None and plc is not None and timing is not None
        assert watchdog is not None and recovery is not None
        return Profile(
            source=self.source, board=board, plc=plc,
            signals=tuple(s for s in signals if s is not None),
            groups=tuple(g for g in groups if g is not None),
            outputs=tuple(o for o in outputs if o is not None),
            trips=tuple(t for t in trips if t is not None),
            plc_watchdog=watchdog, timing=timing, recovery=recovery,
            require_native_watchdog=native, sim=sim, plc_remote=plc_remote,
            authority=authority if authority is not None else AuthoritySettings(),
            realtime=realtime if realtime is not None else RealtimeSettings(),
        )

    def _table(self, top: Fields, key: str) -> Any:
        """A required sub-table (type checked by ``Fields``), or None if it is missing."""
        if key not in top.data:
            top.fail(key, f"missing required table [{key}]")
            return None
        return top.data[key]

    def _array(self, top: Fields, key: str, *, required: bool) -> list[tuple[str, Any]]:
        """The items of an array of tables with their paths (``signals[0]``)."""
        if key not in top.data:
            if required:
                self.broken.add(key)
                top.fail(key, f"missing required array of tables [[{key}]]")
            return []
        value = top.data[key]
        if not isinstance(value, list):
            self.broken.add(key)
            top.fail(key, f"expected an array of tables ([[{key}]]), got a single value or table")
            return []
        if required and not value:
            top.fail(key, "must have at least one entry")
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def _declare(self, names: dict[str, str], f: Fields, what: str) -> str:
        name = f.text("name")
        if f.ok("name") and not is_identifier(name):
            f.fail("name", f"must be identifier-like (letters, digits, '_'; not starting "
                           f"with a digit), got {name!r}")
        elif f.ok("name"):
            if name in names:
                f.fail("name", f"duplicate {what} name {name!r} (first at {names[name]})")
            else:
                names[name] = f.path
        return name

    def _unit(self, f: Fields) -> int:
        unit = f.integer("unit_id", 0, UNIT_ID_MAX, self.default_unit)
        if f.has("unit_id") and f.ok("unit_id") and unit == 0 and self.transport is _Transport.RTU:
            f.fail("unit_id", "0 is the RTU broadcast address, which never answers")
        return unit

    # --- board, plc ----------------------------------------------------------------------

    def _board(self, raw: Any) -> Board | None:
        if raw is None:
            return None
        mark = len(self.out)
        f = Fields(self.out, "board", raw, BOARD_KEYS)
        name = f.text("name")
        pins: dict[str, int | None] = {}
        used: dict[int, str] = {}
        for key in ("led_green", "led_amber", "led_red", "reset_button"):
            pin = pins[key] = f.opt_integer(key, 0, GPIO_MAX)
            if pin is not None:
                if pin in used:
                    f.fail(key, f"GPIO {pin} is already used by board.{used[pin]}")
                used.setdefault(pin, key)
        reset_hold_s = f.number("reset_hold_s", 2.0, gt=0)
        serial_device = f.opt_path("serial_device")
        hw_watchdog = f.opt_path("hw_watchdog")
        fault_led = f.opt_path("fault_led")
        fault_led_value = f.text("fault_led_value", "1")
        if f.has("fault_led_value") and not f.has("fault_led"):
            f.fail("fault_led_value", "given without fault_led")
        if len(self.out) > mark:
            return None
        return Board(name=name, led_green=pins["led_green"], led_amber=pins["led_amber"],
                     led_red=pins["led_red"], reset_button=pins["reset_button"],
                     reset_hold_s=reset_hold_s, serial_device=serial_device,
                     hw_watchdog=hw_watchdog, fault_led=fault_led,
                     fault_led_value=fault_led_value)

    def _plc(self, raw: Any, board: Board | None) -> PlcConnection | None:
        if raw is None:
            return None
        mark = len(self.out)
        f = Fields(self.out, "plc", raw, PLC_KEYS)
        transport = f.enum("transport", _Transport)
        link: TcpLink | RtuLink | None = None
        if f.ok("transport"):
            self.transport = transport
            other = RTU_KEYS if transport is _Transport.TCP else TCP_KEYS
            for key in other:
                f.forbid(key, f"only valid with transport = "
                              f"\"{'rtu' if transport is _Transport.TCP else 'tcp'}\"")
            if transport is _Transport.TCP:
                link = TcpLink(host=f.text("host"),
                               port=f.integer("port", 1, 65535, DEFAULT_TCP_PORT))
            else:
                link = self._rtu(f, board)
        unit = f.integer("unit_id", 0, UNIT_ID_MAX, 1)
        if f.ok("unit_id"):
            self.default_unit = unit
            if unit == 0 and self.transport is _Transport.RTU:
                f.fail("unit_id", "0 is the RTU broadcast address, which never answers")
        timeout_s = f.number("timeout_s", 0.5, gt=0)
        retries = f.integer("retries", 0, 10, 1)
        rmin = f.number("reconnect_min_s", 0.1, gt=0)
        rmax = f.number("reconnect_max_s", 5.0, gt=0)
        if f.ok("reconnect_min_s", "reconnect_max_s") and rmax < rmin:
            f.fail("reconnect_max_s", f"{rmax:g} must be at least reconnect_min_s ({rmin:g})")
        if len(self.out) > mark or link is None:
            return None
        return PlcConnection(link=link, unit_id=unit, timeout_s=timeout_s, retries=retries,
                             reconnect_min_s=rmin, reconnect_max_s=rmax)

    def _rtu(self, f: Fields, board: Board | None) -> RtuLink:
        if not f.has("device") and board is not None and board.serial_device is not None:
            device = board.serial_device
        elif not f.has("device"):
            f.fail("device", "missing required key (or set board.serial_device)")
            device = ""
        else:
            device = f.text("device")
        baudrate = f.integer("baudrate", 1, 10_000_000, 19200)
        if f.ok("baudrate") and baudrate not in STANDARD_BAUDRATES:
            f.fail("baudrate", f"{baudrate} is not a standard rate "
                               f"({', '.join(map(str, STANDARD_BAUDRATES))})")
        parity = f.enum("parity", Parity, Parity.EVEN)
        # Modbus serial line spec: 11 bits per character, so no parity means two stop bits.
        stopbits = f.one_of_int("stopbits", (1, 2), 2 if parity is Parity.NONE else 1)
        bytesize = f.one_of_int("bytesize", (7, 8), 8)
        return RtuLink(device=device, baudrate=baudrate, parity=parity, stopbits=stopbits,
                       bytesize=bytesize)

    # --- register map --------------------------------------------------------------------

    def _signal(self, path: str, raw: Any) -> Signal | None:
        mark = len(self.out)
        f = Fields(self.out, path, raw, SIGNAL_KEYS)
        name = self._declare(self.signal_names, f, "signal")
        table = f.enum("table", Table)
        dtype, word_order, address = read_layout(f, table)
        scale, offset, unit = read_scaling(f)
        is_bool = f.ok("type", "table") and dtype is DataType.BOOL
        low, high = f.span("range", (0.0, 1.0) if is_bool else None)
        unit_id = self._unit(f)
        if f.ok("table", "type", "address", "unit_id"):
            self.claims.claim(f, Span(table, unit_id, address, address + dtype.words - 1, path,
                              f"{path}.address"))
        if len(self.out) > mark:
            return None
        signal = Signal(name=name, table=table, address=address, dtype=dtype,
                        word_order=word_order, scale=scale, offset=offset, unit=unit,
                        low=low, high=high, unit_id=unit_id)
        self.signals[name] = signal
        return signal

    def _output(self, path: str, raw: Any) -> Output | None:
        mark = len(self.out)
        f = Fields(self.out, path, raw, OUTPUT_KEYS)
        name = self._declare(self.output_names, f, "output")
        table = f.enum("table", Table)
        if f.ok("table") and not table.writable:
            f.fail("table", _READ_ONLY[table])
        dtype, word_order, address = read_layout(f, table)
        scale, offset, unit = read_scaling(f)
        is_bool = f.ok("type", "table") and dtype is DataType.BOOL
        minimum = f.number("min", 0.0 if is_bool else None)
        maximum = f.number("max", 1.0 if is_bool else None)
        if f.ok("min", "max") and minimum >= maximum:
            f.fail("max", f"{maximum:g} must be greater than min ({minimum:g})")
        elif f.ok("min", "max", "type", "scale", "offset"):
            check_raw_limits(f, dtype, scale=scale, offset=offset, unit=unit,
                             limits={"min": minimum, "max": maximum})
        max_rate = f.opt_number("max_rate", gt=0)
        safe_value = f.number("safe_value", allow_bool=is_bool)
        if f.ok("safe_value", "min", "max") and not minimum <= safe_value <= maximum:
            f.fail("safe_value", f"{safe_value:g} is outside [min, max] = "
                                 f"[{minimum:g}, {maximum:g}]")
        failsafe = f.enum("failsafe", FailsafePolicy, FailsafePolicy.SAFE_VALUE)
        if f.ok("failsafe") and failsafe is FailsafePolicy.RAMP:
            if is_bool:
                f.fail("failsafe", "ramp does not apply to a bool output")
            elif max_rate is None and f.ok("max_rate"):
                f.fail("failsafe", "ramp needs max_rate (the rate to ramp at)")
        on_loss = f.enum("on_twin_loss", TwinLossPolicy, TwinLossPolicy.HOLD)
        local_value = (f.number("local_value", allow_bool=is_bool) if f.has("local_value")
                       else None)
        if f.ok("on_twin_loss", "local_value"):
            if on_loss is TwinLossPolicy.LOCAL and local_value is None:
                f.fail("local_value", "missing: on_twin_loss = \"local\" ramps the output to "
                                      "its local_value")
            elif on_loss is not TwinLossPolicy.LOCAL and local_value is not None:
                f.fail("local_value", f"given, but on_twin_loss is {on_loss.value!r} (only "
                                      "\"local\" uses it)")
            elif (local_value is not None and f.ok("min", "max")
                  and not minimum <= local_value <= maximum):
                f.fail("local_value", f"{local_value:g} is outside [min, max] = "
                                      f"[{minimum:g}, {maximum:g}]")
        unit_id = self._unit(f)
        if f.ok("table", "type", "address", "unit_id"):
            self.claims.claim(f, Span(table, unit_id, address, address + dtype.words - 1, path,
                              f"{path}.address"))
        if len(self.out) > mark:
            return None
        return Output(name=name, table=table, address=address, dtype=dtype,
                      word_order=word_order, scale=scale, offset=offset, unit=unit,
                      minimum=minimum, maximum=maximum, max_rate=max_rate,
                      safe_value=safe_value, failsafe=failsafe, unit_id=unit_id,
                      on_twin_loss=on_loss, local_value=local_value)

    # --- groups, trips -------------------------------------------------------------------

    def _group(self, path: str, raw: Any) -> Group | None:
        mark = len(self.out)
        f = Fields(self.out, path, raw, GROUP_KEYS)
        name = self._declare(self.group_names, f, "group")
        members = f.names("signals")
        seen: set[str] = set()
        for i, member in enumerate(members):
            where = f"{path}.signals[{i}]"
            if member not in self.signal_names and "signals" not in self.broken:
                self.out.add(where, f"unknown signal {member!r}")
            elif member in seen:
                self.out.add(where, f"{member!r} is listed twice")
            elif member in self.grouped:
                self.out.add(where, f"{member!r} is already in {self.grouped[member]}")
            seen.add(member)
            self.grouped.setdefault(member, path)
        units = {m: self.signals[m].unit for m in members if m in self.signals}
        if len(set(units.values())) > 1:
            f.fail("signals", "redundant channels must share one unit, got "
                              + ", ".join(f"{m} [{u}]" for m, u in units.items()))
        voting = f.voting("voting")
        if f.ok("voting", "signals") and voting.n != len(members):
            f.fail("voting", f"{voting} needs {voting.n} signals, the group lists {len(members)}")
        min_healthy = f.integer("min_healthy", 1, UNIT_ID_MAX, voting.m)
        if f.ok("min_healthy", "voting") and min_healthy > voting.n:
            f.fail("min_healthy", f"{min_healthy} is more than the group's {voting.n} channels")
        direction = f.enum("safe_direction", SafeDirection)
        discrepancy = f.number("discrepancy", ge=0)
        max_age_s = f.number("max_age_s", 3 * self.poll if self.poll else 1.0, gt=0)
        if f.ok("max_age_s") and self.poll is not None and max_age_s < self.poll:
            f.fail("max_age_s", f"{max_age_s:g} s is shorter than timing.poll_period_s "
                                f"({self.poll:g} s): every reading would be stale")
        max_rate = f.opt_number("max_rate", gt=0)
        stuck_after_s = f.opt_number("stuck_after_s", gt=0)
        required = f.flag("required", True)
        if len(self.out) > mark:
            return None
        group = Group(name=name, signals=members, voting=voting, min_healthy=min_healthy,
                      safe_direction=direction, discrepancy=discrepancy, max_age_s=max_age_s,
                      max_rate=max_rate, stuck_after_s=stuck_after_s, required=required)
        self.groups[name] = group
        return group

    def _trip(self, path: str, raw: Any) -> Trip | None:
        mark = len(self.out)
        f = Fields(self.out, path, raw, TRIP_KEYS)
        name = self._declare(self.trip_names, f, "trip")
        group = f.text("group")
        if f.ok("group") and group not in self.group_names and "groups" not in self.broken:
            f.fail("group", f"unknown group {group!r}")
        condition = f.enum("condition", TripCondition)
        limit: float | None = None
        if f.ok("condition") and condition is TripCondition.BAD:
            f.forbid("limit", "a 'bad' trip has no limit")
        else:
            limit = f.number("limit")
        g = self.groups.get(group)
        if (limit is not None and f.ok("limit", "condition") and g is not None
                and all(s in self.signals for s in g.signals)):
            low = min(self.signals[s].low for s in g.signals)
            high = max(self.signals[s].high for s in g.signals)
            if not low < limit < high:
                f.fail("limit", f"{limit:g} is outside the plausible range of group "
                                f"{group!r} ({low:g}..{high:g}): the trip could never act "
                                "(or always would)")
        if len(self.out) > mark:
            return None
        return Trip(name=name, group=group, condition=condition, limit=limit)

    # --- watchdog, timing, recovery, sim -------------------------------------------------

    def _watchdog(self, raw: Any) -> PlcWatchdog | None:
        if raw is None:
            return None
        mark = len(self.out)
        p = "plc_watchdog"
        f = Fields(self.out, p, raw, WATCHDOG_KEYS)
        heartbeat = f.integer("heartbeat_address", 0, ADDRESS_MAX)
        timeout = f.integer("timeout_address", 0, ADDRESS_MAX)
        expected = f.integer("expected_timeout_ms", 1, 65535)
        fault = f.opt_integer("fault_address", 0, ADDRESS_MAX)
        reset = f.opt_integer("reset_address", 0, ADDRESS_MAX)
        unit = self._unit(f)
        if f.ok("unit_id"):
            for key, table, addr in (("heartbeat_address", Table.HOLDING, heartbeat),
                                     ("timeout_address", Table.HOLDING, timeout),
                                     ("fault_address", Table.DISCRETE, fault),
                                     ("reset_address", Table.COIL, reset)):
                if addr is not None and f.ok(key) and f.has(key):
                    self.claims.claim(f, Span(table, unit, addr, addr, f"{p}.{key}", f"{p}.{key}"))
        if len(self.out) > mark:
            return None
        return PlcWatchdog(heartbeat_address=heartbeat, timeout_address=timeout,
                           expected_timeout_ms=expected, fault_address=fault,
                           reset_address=reset, unit_id=unit)

    def _timing(self, raw: Any) -> Timing | None:
        if raw is None:
            return None
        mark = len(self.out)
        f = Fields(self.out, "timing", raw, TIMING_KEYS)
        poll = f.number("poll_period_s", gt=0)
        hb_timeout = f.number("heartbeat_timeout_s", gt=0)
        late = f.number("heartbeat_late_s", hb_timeout / 2 if f.ok("heartbeat_timeout_s")
                        else 1.0, gt=0)
        deadline = f.number("watchdog_deadline_s", gt=0)
        if f.ok("poll_period_s"):
            self.poll = poll
        if f.ok("heartbeat_late_s", "heartbeat_timeout_s") and late >= hb_timeout:
            f.fail("heartbeat_late_s", f"{late:g} s must be less than heartbeat_timeout_s "
                                       f"({hb_timeout:g} s)")
        if f.ok("poll_period_s", "watchdog_deadline_s") and poll >= deadline:
            f.fail("poll_period_s", f"{poll:g} s must be less than watchdog_deadline_s "
                                    f"({deadline:g} s), or every tick is late")
        if f.ok("poll_period_s", "heartbeat_timeout_s") and poll >= hb_timeout:
            f.fail("poll_period_s", f"{poll:g} s must be less than heartbeat_timeout_s "
                                    f"({hb_timeout:g} s)")
        if len(self.out) > mark:
            return None
        return Timing(poll_period_s=poll, heartbeat_timeout_s=hb_timeout,
                      heartbeat_late_s=late, watchdog_deadline_s=deadline)

    def _recovery(self, raw: Any) -> Recovery | None:
        if raw is None:
            return None
        mark = len(self.out)
        f = Fields(self.out, "recovery", raw, RECOVERY_KEYS)
        policy = f.enum("policy", RecoveryPolicy)
        holdoff_s = f.number("holdoff_s", 5.0, ge=0)
        if len(self.out) > mark:
            return None
        return Recovery(policy=policy, holdoff_s=holdoff_s)

    def _plc_remote(self, raw: Any, outputs: list[Output | None]) -> PlcRemote | None:
        mark = len(self.out)
        p = "plc_remote"
        f = Fields(self.out, p, raw, PLC_REMOTE_KEYS)
        table = f.enum("table", Table)
        if f.ok("table") and not table.writable:
            f.fail("table", _READ_ONLY[table] + "; the flag is a coil or a holding register")
        address = f.integer("address", 0, ADDRESS_MAX)
        top = 1 if f.ok("table") and table is Table.COIL else 65535
        values: dict[str, int] = {}
        for key in ("remote_value", "local_value"):
            raw_value = f.data.get(key)
            if table is Table.COIL and isinstance(raw_value, bool):
                values[key] = int(raw_value)  # true/false is fine for a coil
            else:
                values[key] = f.integer(key, 0, top)
        if f.ok("remote_value", "local_value") and values["remote_value"] == values["local_value"]:
            f.fail("local_value", f"equals remote_value ({values['remote_value']}): the PLC "
                                  "could not tell the two apart")
        unit = self._unit(f)
        for o in outputs:
            if o is not None and o.name == PLC_REMOTE:
                self.out.add(self.output_names.get(o.name, "outputs") + ".name",
                             f"{PLC_REMOTE!r} is reserved for the [plc_remote] flag")
        if f.ok("table", "address", "unit_id"):
            self.claims.claim(f, Span(table, unit, address, address, p, f"{p}.address"))
        if len(self.out) > mark:
            return None
        return PlcRemote(table=table, address=address, unit_id=unit,
                         remote_value=values["remote_value"], local_value=values["local_value"])

    def _authority(self, raw: Any) -> AuthoritySettings | None:
        mark = len(self.out)
        f = Fields(self.out, "authority", raw, AUTHORITY_KEYS)
        policy = f.enum("return", ReturnPolicy, ReturnPolicy.AUTO)
        holdoff = f.number("return_holdoff_s", 10.0, gt=0)
        if len(self.out) > mark:
            return None
        return AuthoritySettings(return_policy=policy, return_holdoff_s=holdoff)

    def _realtime(self, raw: Any) -> RealtimeSettings | None:
        mark = len(self.out)
        f = Fields(self.out, "realtime", raw, REALTIME_KEYS)
        scheduling = f.enum("scheduling", Scheduling, Scheduling.FIFO)
        lock = f.flag("lock_memory", True)
        loop, watchdog = (self._priority(f, "loop_priority", 40),
                          self._priority(f, "watchdog_priority", 45))
        if scheduling is Scheduling.OTHER:
            for key in ("loop_priority", "watchdog_priority"):
                f.forbid(key, 'only scheduling = "fifo" has priorities (with "other" '
                              "nothing is asked of the kernel)")
        elif f.ok("loop_priority", "watchdog_priority") and watchdog <= loop:
            f.fail("watchdog_priority",
                   f"{watchdog} must be above loop_priority ({loop}): the native watchdog "
                   "thread must preempt a loop that spins with the GIL held")
        if len(self.out) > mark:
            return None
        return RealtimeSettings(scheduling=scheduling, loop_priority=loop,
                                watchdog_priority=watchdog, lock_memory=lock)

    @staticmethod
    def _priority(f: Fields, key: str, default: int) -> int:
        """A SCHED_FIFO priority in 1..RT_PRIORITY_MAX: below the interrupt threads."""
        value = f.data.get(key, default)
        if (isinstance(value, int) and not isinstance(value, bool)
                and not 1 <= value <= RT_PRIORITY_MAX):
            why = ("SCHED_FIFO priorities start at 1" if value < 1 else
                   "PREEMPT_RT kernels run their interrupt threads at 50, and the network "
                   "and UART ones carry the agent's Modbus frames")
            f.fail(key, f"must be between 1 and {RT_PRIORITY_MAX}, got {value}: {why}")
            return default
        return f.integer(key, 1, RT_PRIORITY_MAX, default)

    def _sim_program(self, raw: Any) -> SimProgram | None:
        mark = len(self.out)
        f = Fields(self.out, "sim.program", raw, SIM_PROGRAM_KEYS)
        setpoint = f.number("setpoint")
        kp = f.number("kp", 5.0, ge=0)
        ki = f.number("ki", 0.2, ge=0)
        cooling = f.number("cooling", 0.0, ge=0)
        fallback = f.enum("comm_fallback", CommFallback, CommFallback.LOCAL)
        if len(self.out) > mark:
            return None
        return SimProgram(setpoint=setpoint, kp=kp, ki=ki, cooling=cooling,
                          comm_fallback=fallback)

    def _check_program(self, sim: SimBinding, outputs: list[Output | None], *,
                       has_flag: bool) -> None:
        """A PLC program needs the flag a master enables remote control with, and its fixed
        cooling must be a value the cooling output can take."""
        assert sim.program is not None
        if not has_flag:
            self.out.add("sim.program", "a PLC program needs a [plc_remote] table (the flag "
                                        "that hands its outputs to a master); without one "
                                        "no master could ever drive them")
        cooling = next((o for o in outputs if o is not None and o.name == sim.cooling), None)
        if cooling is not None and not cooling.minimum <= sim.program.cooling <= cooling.maximum:
            self.out.add("sim.program.cooling",
                         f"{sim.program.cooling:g} is outside output {sim.cooling!r}'s "
                         f"[min, max] = [{cooling.minimum:g}, {cooling.maximum:g}]")

    def _sim(self, raw: Any) -> SimBinding | None:
        mark = len(self.out)
        f = Fields(self.out, "sim", raw, SIM_KEYS)
        program = self._sim_program(f.data["program"]) if "program" in f.data else None
        lists = {key: f.names(key) for key in ("temperature", "pressure")}
        for key, names in lists.items():
            for i, name in enumerate(names):
                if name not in self.signal_names and "signals" not in self.broken:
                    self.out.add(f"sim.{key}[{i}]", f"unknown signal {name!r}")
        outs = {key: f.text(key) for key in ("heater", "cooling")}
        for key, name in outs.items():
            if f.ok(key) and name not in self.output_names and "outputs" not in self.broken:
                f.fail(key, f"unknown output {name!r}")
        if len(self.out) > mark:
            return None
        return SimBinding(temperature=lists["temperature"], pressure=lists["pressure"],
                          heater=outs["heater"], cooling=outs["cooling"], program=program)

