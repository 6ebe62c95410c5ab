"""The simulated PLC's own program (``[sim.program]``), run as a real process and driven by
a plain pymodbus master over TCP: the PI loop holds the tank with no master at all, the
``[plc_remote]`` flag hands the outputs to the registers and back bumplessly, a hazard's
"safe set + flag remote" acts at once in every write order, and the communication watchdog
falls back to the program or to the safe values. Everything is asserted at the PLC: its
true process values, what the plant got (the program trace), its write log, its registers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from sim.plc.control import ControlError
from sim.plc.harness import SimPlcProcess
from sim.stack import wait_for

pytestmark = pytest.mark.timeout(120)

SIM_TANK = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")
SETPOINT = 60.0  # sim-tank's [sim.program].setpoint
KP, KI = 10.0, 1.5  # sim-tank's gains
FLAG = 1  # sim-tank's [plc_remote]: coil 1, remote 1, local 0
HEATER, COOLING = "heater_power", "cooling_valve"
QUANTUM = 0.1  # both outputs are uint16 with scale 0.1


def variant(tmp_path: Path, *pairs: tuple[str, str]) -> str:
    """sim-tank's text with each (old, new) replaced once, as a profile file."""
    text = SIM_TANK
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "sim-tank-variant.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def plc() -> Iterator[SimPlcProcess]:
    with SimPlcProcess("sim-tank") as p:
        yield p


def master(plc: SimPlcProcess) -> ModbusTcpClient:
    c = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=2, retries=0)
    assert c.connect()
    return c


def raw(percent: float) -> int:
    return round(percent / QUANTUM)


def ok(rr: Any) -> None:
    assert not rr.isError(), rr


def program(plc: SimPlcProcess) -> dict[str, Any]:
    state: dict[str, Any] = plc.control.state()["program"]
    return state


# --- the loop on its own -----------------------------------------------------------------


def test_program_holds_the_setpoint_with_no_master_and_logs_no_write(
    plc: SimPlcProcess,
) -> None:
    start = plc.program_switches()[0]
    assert (start["mode"], start["cause"]) == ("local", "start")
    state = plc.control.state()
    assert state["plc_remote"] == 0 and state["program"]["mode"] == "local"

    def near() -> dict[str, Any] | None:
        s: dict[str, Any] = plc.control.state()
        return s if abs(s["temperature"] - SETPOINT) <= 1.0 else None

    settled = wait_for(near, 90.0, "the tank within 1 degC of the setpoint")
    print(f"settled within 1 degC {settled['t'] - start['t']:.1f} s after power-up")
    worst = 0.0
    c = master(plc)
    try:
        until = time.monotonic() + 15.0
        while time.monotonic() < until:
            s = plc.control.state()
            worst = max(worst, abs(s["temperature"] - SETPOINT))
            # the program writes its output into the register a master reads
            heater = c.read_holding_registers(100, count=1).registers[0]
            assert abs(heater * QUANTUM - s["applied"][HEATER]) <= 5.0
            time.sleep(0.2)
    finally:
        c.close()
    print(f"band over 15 s after settling: +/-{worst:.2f} degC")
    assert worst <= 2.0
    assert plc.write_log() == [] and plc.control.writes() == []  # the program wrote "nothing"


def test_set_setpoint_moves_the_loop_and_needs_a_program(plc: SimPlcProcess) -> None:
    assert plc.set_setpoint(35.0) == 35.0
    assert program(plc)["setpoint"] == 35.0
    wait_for(lambda: abs(plc.control.state()["temperature"] - 35.0) <= 1.0, 60.0,
             "the tank at the new setpoint")
    with pytest.raises(ControlError, match="set_setpoint needs 'value'"):
        plc.control.request({"cmd": "set_setpoint"})
    with pytest.raises(ControlError, match="finite"):
        plc.control.request({"cmd": "set_setpoint", "value": float("inf")})
    with SimPlcProcess("sim-coupler") as coupler, pytest.raises(ControlError, match="program"):
        coupler.set_setpoint(50.0)


# --- the flag --------------------------------------------------------------------------


def test_flag_remote_applies_the_registers_and_local_hands_back_bumplessly(
    plc: SimPlcProcess,
) -> None:
    plc.set_setpoint(40.0)
    c = master(plc)
    try:
        ok(c.write_coil(FLAG, True))  # remote: the registers hold the program's last outputs
        to_remote = plc.program_switches()[-1]
        assert (to_remote["mode"], to_remote["cause"]) == ("remote", "modbus")
        assert abs(to_remote["heater_after"] - to_remote["heater_before"]) <= QUANTUM
        ok(c.write_registers(100, [raw(30.0), raw(20.0)]))
        state = plc.control.state()
        assert state["applied"] == {HEATER: 30.0, COOLING: 20.0}
        assert state["program"]["mode"] == "remote"
        t_remote = state["t"]
        time.sleep(1.0)  # nothing overwrites the registers while remote
        assert c.read_holding_registers(100, count=2).registers == [raw(30.0), raw(20.0)]
        assert all(e["mode"] == "remote" and e["heater"] == 30.0
                   for e in plc.program_trace(t_remote))
        # the tank sits well below the setpoint now: a non-bumpless start would jump
        wait_for(lambda: plc.control.state()["temperature"] < 40.0 - 5.0, 30.0,
                 "the tank 5 degC below the setpoint")
        ok(c.write_coil(FLAG, False))
    finally:
        c.close()
    to_local = plc.program_switches()[-1]
    assert (to_local["mode"], to_local["cause"]) == ("local", "modbus")
    assert to_local["heater_before"] == 30.0
    assert abs(to_local["heater_after"] - 30.0) <= QUANTUM
    wait_for(lambda: [e for e in plc.program_trace(to_local["t"]) if e["heater"] > 45.0],
             10.0, "the loop driving the heater up")
    trace = [e for e in plc.program_trace(to_local["t"] - 1.0)]
    i = next(k for k, e in enumerate(trace) if e["mode"] == "local")
    assert trace[i - 1]["mode"] == "remote" and trace[i - 1]["heater"] == 30.0
    assert abs(trace[i]["heater"] - 30.0) <= QUANTUM  # the step across the switch
    largest = 0.0
    for prev, cur in zip(trace[i:], trace[i + 1 : i + 30], strict=False):
        step = abs(cur["heater"] - prev["heater"])
        dt = cur["t"] - prev["t"]
        e = cur["setpoint"] - cur["measured"]
        bound = KP * abs(cur["measured"] - prev["measured"]) + KI * abs(e) * dt + QUANTUM
        assert step <= bound + 1e-9, (prev, cur, bound)
        largest = max(largest, step)
    print(f"step across the switch {abs(trace[i]['heater'] - 30.0):.2f} %, largest one-step "
          f"change after it {largest:.2f} %")


HOLDING_FLAG = (
    'table = "coil"\naddress = 1                   # coil 0 is the watchdog reset',
    'table = "holding"\naddress = 102',
)


@pytest.mark.parametrize("order", ["safe set, then flag", "flag, then safe set", "one fc16"])
def test_hazard_safe_set_with_flag_remote_applies_the_safe_values_at_once(
    tmp_path: Path, order: str
) -> None:
    """The agent's FAILSAFE write (the safe set with the flag at remote_value) overrides the
    program whatever the order of the frames; the program's own updates never reach the
    write log, which holds exactly the master's writes."""
    profile = variant(tmp_path, HOLDING_FLAG) if order == "one fc16" else "sim-tank"
    with SimPlcProcess(profile) as plc:
        c = master(plc)
        try:
            # the program is running: the heater register moves with no master writing
            first = c.read_holding_registers(100, count=1).registers[0]
            wait_for(lambda: c.read_holding_registers(100, count=1).registers[0] != first,
                     10.0, "the program moving the heater register")
            safe = [raw(0.0), raw(100.0)]
            t0 = plc.control.state()["t"]
            if order == "safe set, then flag":
                ok(c.write_registers(100, safe))
                ok(c.write_coil(FLAG, True))
            elif order == "flag, then safe set":
                ok(c.write_coil(FLAG, True))
                ok(c.write_registers(100, safe))
            else:
                ok(c.write_registers(100, [*safe, 1]))
            state = plc.control.state()
            assert state["applied"] == {HEATER: 0.0, COOLING: 100.0}
            assert state["outputs"] == {HEATER: 0.0, COOLING: 100.0}
            assert state["program"]["mode"] == "remote" and state["program"]["staged"] == []
            time.sleep(0.5)
            assert c.read_holding_registers(100, count=2).registers == safe
        finally:
            c.close()
        log = plc.write_log()
        switch = plc.program_switches()[-1]
        assert [e["cause"] for e in plc.program_switches()] == ["start", "modbus"]
        # what the plant got while remote: the safe values from the last frame on; before
        # it (flag first) only the program's last outputs, which the registers held
        remote = [e for e in plc.program_trace(t0) if e["mode"] == "remote"]
        last_write = max(r["t"] for r in log)
        assert remote and all((e["heater"], e["cooling"]) == (0.0, 100.0)
                              for e in remote if e["t"] >= last_write)
        between = {e["heater"] for e in remote if e["t"] < last_write}
        if order == "flag, then safe set":
            assert between <= {switch["heater_after"]}
        else:
            assert switch["heater_after"] == 0.0 and between <= {0.0}
        assert [r["source"] for r in log] == ["modbus"] * len(log)
        assert len(log) == (1 if order == "one fc16" else 2)
        assert all(r["accepted"] for r in log)


# --- the communication watchdog --------------------------------------------------------


def _arm_remote(c: ModbusTcpClient, heater: float, cooling: float) -> None:
    ok(c.write_register(200, 1))  # the first heartbeat arms the watchdog
    ok(c.write_coil(FLAG, True))
    ok(c.write_registers(100, [raw(heater), raw(cooling)]))
    ok(c.write_register(200, 2))


def test_watchdog_expiry_falls_back_to_the_program_which_holds_the_tank() -> None:
    with SimPlcProcess("sim-tank", watchdog_ms=300) as plc:
        plc.set_setpoint(35.0)
        c = master(plc)
        try:
            _arm_remote(c, heater=0.0, cooling=100.0)  # an agent holding the heater off,
            # then silent: heater_before 0 below says the program was remote until then
            fallback = wait_for(lambda: [s for s in plc.program_switches()
                                         if s["cause"] == "plc watchdog"], 10.0,
                                "the watchdog's fallback")[0]
            assert fallback["mode"] == "local" and fallback["heater_before"] == 0.0
            assert c.read_coils(FLAG, count=1).bits[0] is False  # the flag itself set local
            assert c.read_discrete_inputs(0, count=1).bits[0] is True  # latched
        finally:
            c.close()
        wait_for(lambda: abs(plc.control.state()["temperature"] - 35.0) <= 1.0, 60.0,
                 "the program bringing the tank to its setpoint")
        worst = 0.0
        until = time.monotonic() + 5.0
        while time.monotonic() < until:
            worst = max(worst, abs(plc.control.state()["temperature"] - 35.0))
            time.sleep(0.1)
        assert worst <= 2.0
        pseudo = [r for r in plc.write_log() if r["source"] == "plc watchdog"]
        assert [(r["names"], r["values"]) for r in pseudo] == [(["plc_remote"], [0])]


COMM_SAFE = ('comm_fallback = "local"', 'comm_fallback = "safe"')


@pytest.mark.parametrize("remote", [True, False], ids=["flag remote", "flag local"])
def test_watchdog_expiry_with_safe_fallback_applies_the_safe_values(
    tmp_path: Path, remote: bool
) -> None:
    with SimPlcProcess(variant(tmp_path, COMM_SAFE), watchdog_ms=300) as plc:
        c = master(plc)
        try:
            if remote:
                _arm_remote(c, heater=50.0, cooling=20.0)
            else:  # the program runs; only the heartbeat is written
                wait_for(lambda: plc.control.state()["applied"][HEATER] > 50.0, 10.0,
                         "the program heating")
                ok(c.write_register(200, 1))
            wait_for(lambda: plc.control.state()["watchdog"]["latched"], 10.0,
                     "the watchdog's fallback")
            state = plc.control.state()
            assert state["applied"] == {HEATER: 0.0, COOLING: 100.0}
            assert state["plc_remote"] == 1 and state["program"]["mode"] == "remote"
            t_fallback = state["t"]
            time.sleep(1.0)  # the program does not come back by itself
            assert c.read_holding_registers(100, count=2).registers == [raw(0.0), raw(100.0)]
        finally:
            c.close()
        assert all((e["mode"], e["heater"], e["cooling"]) == ("remote", 0.0, 100.0)
                   for e in plc.program_trace(t_fallback))
        pseudo = [r for r in plc.write_log() if r["source"] == "plc watchdog"]
        assert [r["names"][0] for r in pseudo] == [HEATER, COOLING, "plc_remote"]
