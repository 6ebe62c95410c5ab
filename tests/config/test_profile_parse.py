"""The profile parser: shipped profiles parse, every class of mistake is named by key path."""

from __future__ import annotations

import contextlib
import copy
import math
import re
import tomllib
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.profile import parse as parse_mod
from agent.config.profile.load import list_profiles, load_profile
from agent.config.profile.parse import parse_profile
from agent.model.errors import ProfileError
from agent.model.profile import DataType, Parity, Profile, RtuLink, Scheduling, Table, TcpLink

pytestmark = pytest.mark.timeout(30)

DELETE = object()  # value meaning "remove this key"
_TOKEN = re.compile(r"([A-Za-z_]\w*)((?:\[\d+\])*)")


def sim_tank() -> dict[str, Any]:
    """A fresh deep copy of the shipped sim-tank profile as tomllib parses it."""
    text = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")
    return copy.deepcopy(tomllib.loads(text))


def edit(data: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """Set (or with ``DELETE`` remove) the key at ``path`` such as ``signals[2].address``."""
    parts: list[str | int] = []
    for token in path.split("."):
        match = _TOKEN.fullmatch(token)
        assert match is not None, token
        parts.append(match[1])
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match[2]))
    node: Any = data
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


def edited(changes: dict[str, object]) -> dict[str, Any]:
    data = sim_tank()
    for path, value in changes.items():
        edit(data, path, value)
    return data


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, "t.toml")
    assert all(p.file == "t.toml" for p in info.value.problems)
    return [(p.path, p.reason) for p in info.value.problems]


# --- shipped profiles ----------------------------------------------------------------------

def test_the_three_profiles_are_shipped() -> None:
    assert {"sim-tank", "pi4-rs485-rtu", "pi-modbus-tcp"} <= set(list_profiles())


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_parses(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, Profile)
    assert profile.source.endswith(f"{name}.toml")
    for group in profile.groups:
        assert all(profile.signal(s) for s in group.signals)
    for output in profile.outputs:
        assert output.table.writable
        assert output.minimum <= output.safe_value <= output.maximum


def test_sim_tank_maps_onto_the_model() -> None:
    p = load_profile("sim-tank")
    assert p.plc.link == TcpLink("127.0.0.1", 15020)
    assert p.signal("pressure_b").dtype is DataType.FLOAT32
    assert p.signal("pressure_b").word_order.value == "little"
    assert p.signal("temp_a").unit_id == p.plc.unit_id
    assert p.group("temperature").voting.m == 2 and p.group("temperature").voting.n == 3
    assert str(p.group("pressure").voting) == "1oo2"
    assert p.output("cooling_valve").failsafe.value == "ramp"
    assert p.plc_watchdog.expected_timeout_ms == 1000
    assert p.require_native_watchdog is False
    assert p.sim is not None and p.sim.heater == "heater_power"


def test_rtu_profile_is_a_real_pi_bus() -> None:
    p = load_profile("pi4-rs485-rtu")
    assert isinstance(p.plc.link, RtuLink)
    assert (p.plc.link.baudrate, p.plc.link.bytesize, p.plc.link.parity,
            p.plc.link.stopbits) == (19200, 8, Parity.EVEN, 1)
    assert len({s.unit_id for s in p.signals} | {o.unit_id for o in p.outputs}) >= 2
    assert p.board.hw_watchdog == "/dev/watchdog"
    assert p.board.fault_led is not None and p.board.fault_led.startswith("/sys/class/leds/")
    assert p.require_native_watchdog is True


def test_tcp_profile_uses_a_coupler_layout() -> None:
    p = load_profile("pi-modbus-tcp")
    assert isinstance(p.plc.link, TcpLink)
    assert p.require_native_watchdog is True
    assert {o.address for o in p.outputs if o.table is Table.HOLDING} >= {0x0200}
    assert min(s.address for s in p.signals if s.table is Table.INPUT) == 0


# --- defaults ------------------------------------------------------------------------------

def test_defaults_are_the_documented_ones() -> None:
    data = edited({
        "require_native_watchdog": DELETE, "plc.port": DELETE, "plc.unit_id": DELETE,
        "plc.timeout_s": DELETE, "plc.retries": DELETE, "plc.reconnect_min_s": DELETE,
        "plc.reconnect_max_s": DELETE, "board.reset_hold_s": DELETE,
        "groups[0].max_age_s": DELETE, "groups[0].min_healthy": DELETE,
        "groups[0].required": DELETE, "timing.heartbeat_late_s": DELETE,
        "recovery.holdoff_s": DELETE, "outputs[0].failsafe": DELETE,
        "signals[3].word_order": DELETE, "signals[0].scale": DELETE,
        "timing.watchdog_deadline_s": 0.9,  # room for the default 0.5 s request timeout
    })
    p = parse_profile(data, "t.toml")
    assert p.require_native_watchdog is True  # safety first
    assert p.plc.link == TcpLink("127.0.0.1", 502)
    assert (p.plc.unit_id, p.plc.timeout_s, p.plc.retries) == (1, 0.5, 1)
    assert (p.plc.reconnect_min_s, p.plc.reconnect_max_s) == (0.1, 5.0)
    assert p.board.reset_hold_s == 2.0 and p.board.fault_led_value == "1"
    g = p.groups[0]
    assert math.isclose(g.max_age_s, 3 * p.timing.poll_period_s)
    assert g.min_healthy == g.voting.m and g.required is True
    assert p.timing.heartbeat_late_s == p.timing.heartbeat_timeout_s / 2
    assert p.recovery.holdoff_s == 5.0
    assert p.outputs[0].failsafe.value == "safe_value"
    assert p.signals[3].word_order.value == "big"
    assert p.signals[0].scale == 1.0 and p.signals[0].offset == 0.0
    # no [realtime] table (the shipped ones show it commented): FIFO 40/45, memory locked
    assert "realtime" not in data
    r = p.realtime
    assert (r.scheduling, r.loop_priority, r.watchdog_priority, r.lock_memory) == (
        Scheduling.FIFO, 40, 45, True)


def test_realtime_table_is_read() -> None:
    p = parse_profile(edited({"realtime": {"loop_priority": 20, "watchdog_priority": 49,
                                           "lock_memory": False}}), "t.toml")
    assert (p.realtime.scheduling, p.realtime.loop_priority, p.realtime.watchdog_priority,
            p.realtime.lock_memory) == (Scheduling.FIFO, 20, 49, False)
    p = parse_profile(edited({"realtime": {"scheduling": "other"}}), "t.toml")
    assert (p.realtime.scheduling, p.realtime.lock_memory) == (Scheduling.OTHER, True)


def test_rtu_defaults_and_device_from_board() -> None:
    data = edited({"plc": {"transport": "rtu", "unit_id": 3},
                   "board.serial_device": "/dev/ttyAMA0", "timing.watchdog_deadline_s": 0.9})
    p = parse_profile(data, "t.toml")
    assert p.plc.link == RtuLink("/dev/ttyAMA0", 19200, Parity.EVEN, 1, 8)
    assert p.signals[0].unit_id == 3  # signals inherit plc.unit_id
    data = edited({"plc": {"transport": "rtu", "device": "/dev/ttyUSB0", "parity": "N"},
                   "timing.watchdog_deadline_s": 0.9})
    link = parse_profile(data, "t.toml").plc.link
    assert isinstance(link, RtuLink) and link.stopbits == 2  # no parity: two stop bits


def test_bit_tables_default_to_bool() -> None:
    data = sim_tank()
    data["signals"].append({"name": "door", "table": "discrete", "address": 5})
    data["outputs"].append({"name": "lamp", "table": "coil", "address": 7, "safe_value": True})
    p = parse_profile(data, "t.toml")
    assert p.signal("door").dtype is DataType.BOOL
    assert (p.signal("door").low, p.signal("door").high) == (0.0, 1.0)
    lamp = p.output("lamp")
    assert (lamp.dtype, lamp.minimum, lamp.maximum, lamp.safe_value) == (DataType.BOOL, 0, 1, 1)


def test_same_address_on_another_unit_is_no_overlap() -> None:
    p = parse_profile(edited({"outputs[1].address": 100, "outputs[1].unit_id": 2}), "t.toml")
    assert p.output("cooling_valve").unit_id == 2


# --- one case per class of error -----------------------------------------------------------

RTU = {"transport": "rtu", "device": "/dev/ttyUSB0"}

BAD: list[tuple[str, dict[str, object], str, str]] = [
    # id, changes, exact key path, fragment of the reason
    ("unknown-key", {"board.led_gren": 5}, "board.led_gren",
     "unknown key (did you mean 'led_green'?)"),
    ("unknown-top-level", {"signal": []}, "signal", "did you mean 'signals'"),
    ("bool-is-not-int", {"signals[0].address": True}, "signals[0].address",
     "expected an integer, got a boolean"),
    ("string-not-number", {"signals[0].scale": "0.1"}, "signals[0].scale", "expected a number"),
    ("int-not-bool", {"require_native_watchdog": 1}, "require_native_watchdog",
     "expected true or false"),
    ("missing-key", {"board.name": DELETE}, "board.name", "missing required key"),
    ("missing-table", {"timing": DELETE}, "timing", "missing required table [timing]"),
    ("table-not-array", {"signals": {"name": "x"}}, "signals", "expected an array of tables"),
    ("empty-array", {"outputs": []}, "outputs", "at least one entry"),
    ("gpio-range", {"board.led_red": 40}, "board.led_red", "between 0 and 27"),
    ("gpio-duplicate", {"board.reset_button": 17}, "board.reset_button",
     "GPIO 17 is already used by board.led_green"),
    ("relative-path", {"board.hw_watchdog": "watchdog"}, "board.hw_watchdog", "absolute path"),
    ("fault-led-value-alone", {"board.fault_led_value": "1"}, "board.fault_led_value",
     "without fault_led"),
    ("port-range", {"plc.port": 70000}, "plc.port", "between 1 and 65535"),
    ("transport", {"plc.transport": "udp"}, "plc.transport", "expected one of 'tcp', 'rtu'"),
    ("rtu-key-with-tcp", {"plc.baudrate": 19200}, "plc.baudrate",
     'only valid with transport = "rtu"'),
    ("tcp-key-with-rtu", {"plc": {**RTU, "host": "x"}}, "plc.host",
     'only valid with transport = "tcp"'),
    ("rtu-baudrate", {"plc": {**RTU, "baudrate": 12345}}, "plc.baudrate", "not a standard rate"),
    ("rtu-stopbits", {"plc": {**RTU, "stopbits": 3}}, "plc.stopbits", "between 1 and 2"),
    ("rtu-bytesize", {"plc": {**RTU, "bytesize": 6}}, "plc.bytesize", "between 7 and 8"),
    ("rtu-no-device", {"plc": {"transport": "rtu"}}, "plc.device",
     "missing required key (or set board.serial_device)"),
    ("rtu-broadcast-unit", {"plc": {**RTU, "unit_id": 0}}, "plc.unit_id", "broadcast"),
    ("tcp-no-host", {"plc.host": DELETE}, "plc.host", "missing required key"),
    ("unit-range", {"plc.unit_id": 248}, "plc.unit_id", "between 0 and 247"),
    ("timeout-zero", {"plc.timeout_s": 0}, "plc.timeout_s", "greater than 0"),
    ("reconnect", {"plc.reconnect_max_s": 0.05}, "plc.reconnect_max_s",
     "at least reconnect_min_s (0.1)"),
    ("signal-name-dup", {"signals[1].name": "temp_a"}, "signals[1].name",
     "duplicate signal name 'temp_a' (first at signals[0])"),
    ("signal-name-ident", {"signals[0].name": "temp-a"}, "signals[0].name", "identifier-like"),
    ("table-typo", {"signals[0].table": "inptu"}, "signals[0].table", "did you mean 'input'"),
    ("address-range", {"signals[0].address": 65536}, "signals[0].address",
     "between 0 and 65535"),
    ("address-past-end", {"signals[4].address": 65535}, "signals[4].address",
     "a float32 at 65535 runs past address 65535"),
    ("bool-on-register", {"signals[0].type": "bool"}, "signals[0].type",
     "bool is only for coil and discrete tables"),
    ("int-on-bit-table", {"signals[0].table": "coil"}, "signals[0].type",
     "a coil holds one bit: type must be 'bool'"),
    ("register-type-missing", {"signals[0].type": DELETE}, "signals[0].type",
     "missing required key"),
    ("word-order-16bit", {"signals[0].word_order": "little"}, "signals[0].word_order",
     "only applies to 32-bit types, not int16"),
    ("scale-zero", {"signals[0].scale": 0}, "signals[0].scale", "must not be 0"),
    ("nan", {"signals[0].offset": float("nan")}, "signals[0].offset", "finite"),
    ("range-order", {"signals[0].range": [250.0, -20.0]}, "signals[0].range",
     "low (250) must be less than high (-20)"),
    ("range-shape", {"signals[0].range": [1.0]}, "signals[0].range", "expected [low, high]"),
    ("range-missing", {"signals[0].range": DELETE}, "signals[0].range", "missing required key"),
    ("overlap-signals", {"signals[1].address": 0}, "signals[1].address",
     "overlaps signals[0] (input 0, unit 1)"),
    ("overlap-32bit", {"signals[4].address": 5}, "signals[4].address",
     "overlaps signals[3] (input 4..5, unit 1)"),
    ("overlap-signal-output", {"signals[0].table": "holding", "signals[0].address": 101},
     "outputs[1].address", "overlaps signals[0] (holding 101, unit 1)"),
    ("overlap-outputs", {"outputs[1].address": 100}, "outputs[1].address",
     "overlaps outputs[0] (holding 100, unit 1)"),
    ("overlap-watchdog", {"outputs[0].address": 200}, "plc_watchdog.heartbeat_address",
     "overlaps outputs[0] (holding 200, unit 1)"),
    ("watchdog-same-register", {"plc_watchdog.timeout_address": 200},
     "plc_watchdog.timeout_address", "overlaps plc_watchdog.heartbeat_address"),
    ("output-read-only", {"outputs[1].table": "input"}, "outputs[1].table",
     "input registers are read-only"),
    ("output-discrete", {"outputs[1].table": "discrete", "outputs[1].type": "bool"},
     "outputs[1].table", "discrete inputs are read-only"),
    ("output-min-max", {"outputs[0].min": 100.0}, "outputs[0].max",
     "must be greater than min (100)"),
    ("output-raw-range", {"outputs[0].max": 7000.0}, "outputs[0].max",
     "raw 70000 after scaling, outside uint16 0..65535"),
    ("output-negative-unsigned", {"outputs[0].min": -1.0}, "outputs[0].min",
     "outside uint16 0..65535"),
    ("safe-value-outside", {"outputs[0].safe_value": 150.0}, "outputs[0].safe_value",
     "150 is outside [min, max] = [0, 100]"),
    ("safe-value-missing", {"outputs[0].safe_value": DELETE}, "outputs[0].safe_value",
     "missing required key"),
    ("ramp-without-rate", {"outputs[1].max_rate": DELETE}, "outputs[1].failsafe",
     "ramp needs max_rate"),
    ("max-rate-negative", {"outputs[0].max_rate": -1.0}, "outputs[0].max_rate",
     "greater than 0"),
    ("failsafe-typo", {"outputs[0].failsafe": "hold"}, "outputs[0].failsafe",
     "did you mean 'hold_last'"),
    ("group-unknown-signal", {"groups[0].signals": ["temp_a", "temp_b", "temp_x"]},
     "groups[0].signals[2]", "unknown signal 'temp_x'"),
    ("group-dup-signal", {"groups[0].signals": ["temp_a", "temp_a", "temp_b"]},
     "groups[0].signals[1]", "'temp_a' is listed twice"),
    ("signal-in-two-groups", {"groups[1].signals": ["pressure_a", "temp_a"]},
     "groups[1].signals[1]", "'temp_a' is already in groups[0]"),
    ("group-mixed-units", {"signals[3].unit": "psi"}, "groups[1].signals",
     "must share one unit"),
    ("voting-format", {"groups[0].voting": "2of3"}, "groups[0].voting",
     "expected 'MooN' such as '2oo3'"),
    ("voting-n", {"groups[0].voting": "2oo2"}, "groups[0].voting",
     "2oo2 needs 2 signals, the group lists 3"),
    ("voting-m-gt-n", {"groups[0].voting": "4oo3"}, "groups[0].voting",
     "M (4) must not exceed N (3)"),
    ("min-healthy", {"groups[0].min_healthy": 4}, "groups[0].min_healthy",
     "more than the group's 3 channels"),
    ("discrepancy-negative", {"groups[0].discrepancy": -1.0}, "groups[0].discrepancy",
     "at least 0"),
    ("safe-direction", {"groups[0].safe_direction": "up"}, "groups[0].safe_direction",
     "expected one of 'high', 'low'"),
    ("max-age-below-poll", {"groups[0].max_age_s": 0.01}, "groups[0].max_age_s",
     "shorter than timing.poll_period_s (0.05 s)"),
    ("trip-unknown-group", {"trips[0].group": "temperatur"}, "trips[0].group",
     "unknown group 'temperatur'"),
    ("trip-bad-with-limit", {"trips[0].condition": "bad"}, "trips[0].limit",
     "a 'bad' trip has no limit"),
    ("trip-limit-missing", {"trips[0].limit": DELETE}, "trips[0].limit",
     "missing required key"),
    ("trip-limit-out-of-range", {"trips[0].limit": 300.0}, "trips[0].limit",
     "outside the plausible range of group 'temperature' (-20..250)"),
    ("watchdog-timeout-ms", {"plc_watchdog.expected_timeout_ms": 0},
     "plc_watchdog.expected_timeout_ms", "between 1 and 65535"),
    ("deadline-vs-plc", {"plc_watchdog.expected_timeout_ms": 150},
     "timing.watchdog_deadline_s", "must be less than the PLC watchdog timeout"),
    ("timeout-vs-tick", {"plc.timeout_s": 0.3}, "plc.timeout_s",
     "leaves 0.12 s for PLC I/O"),
    ("poll-vs-deadline", {"timing.poll_period_s": 0.3}, "timing.poll_period_s",
     "must be less than watchdog_deadline_s (0.2 s)"),
    ("late-vs-timeout", {"timing.heartbeat_late_s": 0.5}, "timing.heartbeat_late_s",
     "must be less than heartbeat_timeout_s (0.5 s)"),
    ("poll-vs-heartbeat", {"timing.poll_period_s": 0.6, "timing.watchdog_deadline_s": 0.9,
                           "timing.heartbeat_late_s": 0.2, "groups[0].max_age_s": 2.0,
                           "groups[1].max_age_s": 2.0},
     "timing.poll_period_s", "must be less than heartbeat_timeout_s (0.5 s)"),
    ("recovery-policy", {"recovery.policy": "sometimes"}, "recovery.policy",
     "expected one of 'manual', 'auto'"),
    ("holdoff-negative", {"recovery.holdoff_s": -1.0}, "recovery.holdoff_s", "at least 0"),
    ("sim-unknown-signal", {"sim.temperature": ["temp_a", "temp_q"]}, "sim.temperature[1]",
     "unknown signal 'temp_q'"),
    ("sim-unknown-output", {"sim.heater": "heater"}, "sim.heater", "unknown output 'heater'"),
    ("realtime-not-a-table", {"realtime": "fifo"}, "realtime", "expected a table"),
    ("realtime-unknown-key", {"realtime": {"schedulng": "fifo"}}, "realtime.schedulng",
     "unknown key (did you mean 'scheduling'?)"),
    ("realtime-policy", {"realtime": {"scheduling": "rr"}}, "realtime.scheduling",
     "expected one of 'fifo', 'other'"),
    ("realtime-at-the-irq-threads", {"realtime": {"loop_priority": 48, "watchdog_priority": 50}},
     "realtime.watchdog_priority", "between 1 and 49, got 50: PREEMPT_RT kernels run their "
     "interrupt threads at 50"),
    ("realtime-priority-zero", {"realtime": {"loop_priority": 0}}, "realtime.loop_priority",
     "between 1 and 49, got 0: SCHED_FIFO priorities start at 1"),
    ("realtime-priority-bool", {"realtime": {"loop_priority": True}}, "realtime.loop_priority",
     "expected an integer, got a boolean"),
    ("realtime-watchdog-not-above", {"realtime": {"loop_priority": 45, "watchdog_priority": 45}},
     "realtime.watchdog_priority", "45 must be above loop_priority (45): the native watchdog"),
    ("realtime-loop-above-default-watchdog", {"realtime": {"loop_priority": 46}},
     "realtime.watchdog_priority", "45 must be above loop_priority (46)"),
    ("realtime-other-has-no-priority", {"realtime": {"scheduling": "other", "loop_priority": 10}},
     "realtime.loop_priority", 'only scheduling = "fifo" has priorities'),
    ("realtime-lock-not-bool", {"realtime": {"lock_memory": 1}}, "realtime.lock_memory",
     "expected true or false, got an integer (1)"),
]


@pytest.mark.parametrize(("changes", "path", "fragment"),
                         [pytest.param(c, p, f, id=i) for i, c, p, f in BAD])
def test_bad_profile_names_the_key(changes: dict[str, object], path: str,
                                   fragment: str) -> None:
    problems = problems_of(edited(changes))
    matching = [reason for where, reason in problems if where == path]
    assert matching, f"no problem at {path}; got {problems}"
    assert any(fragment in reason for reason in matching), matching


def test_every_problem_is_reported_at_once() -> None:
    data = edited({
        "board.led_gren": 5,
        "plc.port": 0,
        "signals[1].scale": 0,
        "outputs[0].safe_value": -5.0,
        "recovery.policy": "x",
        "trips[1].group": "nope",
    })
    paths = [path for path, _ in problems_of(data)]
    assert sorted(paths) == sorted(["board.led_gren", "plc.port", "signals[1].scale",
                                    "outputs[0].safe_value", "recovery.policy",
                                    "trips[1].group"])


def test_problem_renders_file_path_reason() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(edited({"board.led_gren": 5}), "rig.toml")
    assert str(info.value) == "rig.toml: board.led_gren: unknown key (did you mean 'led_green'?)"
    assert isinstance(info.value, ValueError)


def test_not_a_table_at_all() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile([], "x.toml")  # type: ignore[arg-type]
    assert info.value.problems[0].path == "(top level)"


# --- properties ----------------------------------------------------------------------------

def _locations(data: dict[str, Any]) -> list[tuple[str, set[str]]]:
    tables: list[tuple[str, set[str]]] = [("", set(parse_mod.TOP_KEYS))]
    keys = {"board": parse_mod.BOARD_KEYS, "plc": parse_mod.PLC_KEYS,
            "plc_watchdog": parse_mod.WATCHDOG_KEYS, "timing": parse_mod.TIMING_KEYS,
            "recovery": parse_mod.RECOVERY_KEYS, "sim": parse_mod.SIM_KEYS,
            "signals": parse_mod.SIGNAL_KEYS, "outputs": parse_mod.OUTPUT_KEYS,
            "groups": parse_mod.GROUP_KEYS, "trips": parse_mod.TRIP_KEYS}
    for name, allowed in keys.items():
        if isinstance(data[name], list):
            tables += [(f"{name}[{i}]", set(allowed)) for i in range(len(data[name]))]
        else:
            tables.append((name, set(allowed)))
    return tables


LOCATIONS = _locations(sim_tank())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(LOCATIONS),
       key=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
       value=st.one_of(st.integers(), st.text(max_size=5), st.booleans()))
def test_any_unknown_key_fails_naming_it(where: tuple[str, set[str]], key: str,
                                         value: object) -> None:
    table, allowed = where
    if key in allowed:
        return
    data = sim_tank()
    path = f"{table}.{key}" if table else key
    edit(data, path, value)
    problems = problems_of(data)
    assert any(p == path and r.startswith("unknown key") for p, r in problems), problems


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        out: list[str] = []
        for k, v in node.items():
            out += _leaves(v, f"{prefix}.{k}" if prefix else k)
        return out or [prefix]
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{prefix}[{i}]")]
    return [prefix]


LEAVES = _leaves(sim_tank())
# every leaf, every table and array entry, and the arrays themselves
DAMAGE_PATHS = sorted({*LEAVES, *(loc for loc, _ in LOCATIONS if loc),
                       "signals", "groups", "outputs", "trips"})
TOML_SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3),
                        st.dictionaries(st.text(max_size=5), TOML_SCALARS, max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(DAMAGE_PATHS),
                               st.one_of(TOML_VALUES, st.just(DELETE)), min_size=1,
                               max_size=4))
def test_any_damage_is_a_profile_error_never_a_crash(changes: dict[str, object]) -> None:
    data = sim_tank()
    for path, value in changes.items():
        # an earlier change may have removed or replaced the parent: nothing to edit then
        with contextlib.suppress(KeyError, IndexError, TypeError):
            edit(data, path, value)
    try:
        profile = parse_profile(data, "fuzz.toml")
    except ProfileError as error:
        assert error.problems
        assert all(p.path and p.reason for p in error.problems)
    else:
        assert isinstance(profile, Profile)


def test_a_broken_array_does_not_cascade_into_its_references() -> None:
    problems = problems_of(edited({"signals": {"name": "x"}}))
    assert [path for path, _ in problems] == ["signals"]


# --- regressions hypothesis found (issue 13): explicit, so CI does not depend on finding them

EXTREME_SCALING = [("outputs[0].scale", 5e-324), ("outputs[0].offset", 1.7e308)]


@pytest.mark.parametrize(("path", "value"), EXTREME_SCALING, ids=["scale", "offset"])
def test_extreme_scaling_is_a_profile_error_never_a_crash(path: str, value: float) -> None:
    """``scale = 5e-324`` / ``offset = 1.7e308`` made the raw limits infinite and
    ``round()`` raised OverflowError out of the parser."""
    with pytest.raises(ProfileError) as error:
        parse_profile(edited({path: value}), "fuzz.toml")
    assert any(p.path.startswith("outputs[0]") for p in error.value.problems), \
        error.value.problems


@pytest.mark.parametrize(("path", "value"), EXTREME_SCALING, ids=["scale", "offset"])
def test_check_names_the_key_of_extreme_scaling(tmp_path: Any, path: str, value: float) -> None:
    """What the user sees: ``twinguard check`` exits 2 naming FILE: KEY.PATH, no traceback."""
    import subprocess
    import sys
    text = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")
    key = path.rsplit(".", maxsplit=1)[-1]
    first = text.index("[[outputs]]")
    text = text[:first] + text[first:].replace("[[outputs]]\n", f"[[outputs]]\n{key} = {value!r}\n",
                                               1)
    if key == "scale":  # the profile's own scale of that output goes: one scale per table
        head, _, tail = text[first:].partition("\nscale = 0.1\n")
        text = text[:first] + head + "\n" + tail
    profile = tmp_path / "extreme.toml"
    profile.write_text(text)
    assert tomllib.loads(text)["outputs"][0][key] == value
    run = subprocess.run([sys.executable, "-m", "agent", "check", "--profile", str(profile)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run.stderr[-500:]
    assert "Traceback" not in run.stderr + run.stdout
    assert f"{profile}: outputs[0]" in run.stderr + run.stdout
