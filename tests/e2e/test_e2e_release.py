"""The PLC program and the agent (issue 12, items 2 and 7), real processes, asserted at the PLC.

sim-tank's PLC runs its own PI loop behind the ``[plc_remote]`` flag (coil 1: 1 remote, the
registers the agent writes drive the plant; 0 local, the program does). What each test makes
happen, and reads back from the sim PLC (write log, ``applied``, ``plc_remote``, the
program's mode switches and trace, the tank's true temperature):

* ``release`` (active mode): the twin takes authority (the flag remote first, then its
  recommendation), then freezes: at the heartbeat deadline the agent writes the flag local
  and not the outputs, the program takes over bumpless and holds the tank at its setpoint;
  the twin returns: after the hold-off the flag goes remote again and a new recommendation
  ramps from what the PLC holds.
* A hazard overrides the program, from shadow mode (the flag local, the program running the
  plant): a trip, a required group BAD, a Python hang (the native watchdog's frames). The
  flag goes remote with the safe set; when the hazard clears, recovery hands the plant back.
* sim-coupler (no program): ``local`` ramps the heater to its ``local_value`` at
  ``max_rate``, ``hold`` leaves the cooling valve alone.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import signal
import time
from typing import Any

import pytest
from test_e2e_authority import (
    HB_ADDRESS,
    JITTER_S,
    POLL_S,
    TIMEOUT_S,
    last_heartbeat_t,
    states_since,
    take_authority,
    values_of,
)

from sim.stack import Stack, output_writes, recommend_script, sim_tank_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
log = logging.getLogger(__name__)

FLAG_COIL = 1  # [plc_remote] address in sim-tank; remote_value 1, local_value 0
SETPOINT = 30.0  # degC: the program's setpoint here, close to the tank's 25 degC start
HEATER_RATE = 20.0  # %/s, heater_power max_rate
SAFE = {"heater_power": 0.0, "cooling_valve": 100.0}
SHED_MARGIN_S = 0.25  # the shed acts at the deadline, not a poll later (generous: a loaded box)


def with_authority(text: str, holdoff_s: float = 1.0) -> str:
    """``text`` with a short auto-recovery hold-off and the twin's authority back
    ``holdoff_s`` after it is eligible."""
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', text)
    text = re.sub(r"(?m)^holdoff_s = .*$", "holdoff_s = 0.5", text)
    return text + f'\n[authority]\nreturn = "auto"\nreturn_holdoff_s = {holdoff_s}\n'


def tank(plc_timeout_ms: int | None = None) -> str:
    """sim-tank as shipped (release + the program), its setpoint at :data:`SETPOINT`."""
    text = re.sub(r"(?m)^setpoint = [0-9.]+", f"setpoint = {SETPOINT}", sim_tank_text())
    if plc_timeout_ms is not None:
        text = re.sub(r"(?m)^expected_timeout_ms = \d+", f"expected_timeout_ms = "
                      f"{plc_timeout_ms}", text)
    return with_authority(text)


def coupler() -> str:
    """sim-coupler as shipped (heater local to 35 %, cooling hold, no program)."""
    return with_authority(importlib.resources.files("hw_profiles").joinpath(
        "sim-coupler.toml").read_text())


def flag_log(stack: Stack, since: float) -> list[tuple[float, int]]:
    """(t, value) of every accepted write of the flag since ``since``, by the agent (or its
    native watchdog: both are Modbus masters)."""
    return [(w["t"], w["values"][0]) for w in stack.plc.write_log() if w["t"] >= since
            and w["fc"] == 5 and w["address"] == FLAG_COIL and w.get("source") == "modbus"
            and w.get("accepted", True)]


def output_log(stack: Stack, since: float) -> list[dict[str, Any]]:
    """Every accepted Modbus write of an output (not the flag, not the heartbeat)."""
    return [w for w in stack.plc.write_log() if w["t"] >= since and w.get("source") == "modbus"
            and w.get("accepted", True) and w["address"] not in (HB_ADDRESS, FLAG_COIL)
            and w["fc"] != 5]


def wait_settled(stack: Stack, band: float = 0.5, for_s: float = 2.0) -> None:
    """Wait until the tank's true temperature has stayed within ``band`` of the setpoint
    for ``for_s`` (the program brings it there from 25 degC)."""
    since: list[float | None] = [None]

    def settled() -> bool:
        near = abs(stack.plc.control.state()["temperature"] - SETPOINT) <= band
        now = time.monotonic()
        since[0] = (since[0] or now) if near else None
        return since[0] is not None and now - since[0] >= for_s

    wait_for(settled, 60, f"the tank settled at {SETPOINT} degC", period=0.1)


def switches_since(stack: Stack, since: float) -> list[dict[str, Any]]:
    return [s for s in stack.plc.control.switches() if s["t"] >= since]


def test_release_hands_the_plant_to_the_program_and_back() -> None:
    with Stack(profile_text=tank(), mode="active") as st:
        wait_settled(st)
        t_start = 0.0
        st.wait_authority("remote", timeout=30)
        # taking authority: the flag remote first, before any output is written
        flags = wait_for(lambda: flag_log(st, t_start), 10, "the flag written remote")
        assert flags[0][1] == 1
        held = st.plc.control.state()["outputs"]["heater_power"]  # the program's last output
        target = round(held + 3.0, 1)
        take_authority(st, heater=target)
        first_output = output_log(st, t_start)[0]
        assert first_output["t"] > flags[0][0], "the flag went remote before the outputs"
        assert st.plc.control.state()["applied"]["heater_power"] == pytest.approx(target,
                                                                                    abs=0.05)

        # the twin freezes: the flag local at the deadline, the outputs not written
        st.twin.request({"cmd": "stop"})
        deadline = last_heartbeat_t(st) + TIMEOUT_S
        shed = wait_for(lambda: [f for f in flag_log(st, deadline) if f[1] == 0], 10,
                        "the flag written local")[0]
        reaction = shed[0] - deadline
        assert 0.0 <= reaction < SHED_MARGIN_S, f"shed {reaction * 1000:.1f} ms past the deadline"
        switch = wait_for(lambda: [s for s in switches_since(st, deadline)
                                   if s["mode"] == "local"], 5, "the program engaged")[0]
        bump = switch["heater_after"] - switch["heater_before"]
        assert switch["cause"] == "modbus"
        assert switch["heater_before"] == pytest.approx(target, abs=0.05)
        assert abs(bump) <= 0.1, f"bumpless: {switch}"
        temps = []
        t_end = time.monotonic() + 8.0
        while time.monotonic() < t_end:  # the outage: the program runs the plant
            state = st.plc.control.state()
            temps.append(state["temperature"])
            assert state["plc_remote"] == 0 and state["program"]["mode"] == "local"
            time.sleep(0.1)
        band = (min(temps) - SETPOINT, max(temps) - SETPOINT)
        assert band[0] >= -2.0 and band[1] <= 2.0, f"true temperature {band} around the setpoint"
        assert output_log(st, deadline) == [], "release: the outputs themselves are not written"
        assert "failsafe" not in states_since(st, deadline)
        snap = st.status_json()
        assert snap["state"] == "normal" and snap["authority"]["state"] == "local"

        # the twin returns: after the hold-off the flag remote, then a ramp from what is held
        st.twin.request({"cmd": "resume"})
        resumed = time.monotonic()
        t_back = st.wait_authority("remote", since=resumed, timeout=30)
        assert t_back - resumed >= 1.0, "the return hold-off"
        back = wait_for(lambda: [f for f in flag_log(st, resumed) if f[1] == 1], 10,
                        "the flag written remote again")[0]
        to_remote = wait_for(lambda: [s for s in switches_since(st, resumed)
                                      if s["mode"] == "remote"], 5, "the program handed over")[0]
        assert abs(to_remote["heater_after"] - to_remote["heater_before"]) <= 0.1
        time.sleep(0.3)
        assert output_log(st, resumed) == [], "nothing written until the twin recommends"
        at_return = st.plc.control.state()["outputs"]["heater_power"]  # the program's last
        st.twin.request(recommend_script([(0.0, "heater_power", at_return + 10.0, 30.0)]))
        ramp = wait_for(lambda: values_of(st, "heater_power", back[0]), 10, "a new ramp")
        step = ramp[0][1] - at_return
        assert 0.0 < step <= HEATER_RATE * (POLL_S + JITTER_S) + 0.1 + 1e-6, \
            f"no bump at the return: {at_return} % then {ramp[0][1]} %"
        log.info("release: shed %.1f ms past the deadline, bump %.2f %% at the release, "
                 "true temperature %+.2f..%+.2f degC around %g, step %.2f %% at the return",
                 reaction * 1000, bump, band[0], band[1], SETPOINT, step)


def assert_safe_at_the_plc(stack: Stack, since: float) -> float:
    """The flag remote and the safe set written since ``since``, and the plant getting the
    safe values; returns when the safe set was written."""
    flags = wait_for(lambda: [f for f in flag_log(stack, since) if f[1] == 1], 10,
                     "the flag written remote")
    safe = wait_for(lambda: [w for w in output_writes(stack.plc.write_log(), "heater_power",
                                                      since=since) if w["values"][:2] == [0, 1000]],
                    10, "the safe set written")
    assert safe[0]["fc"] == 16
    wait_for(lambda: stack.plc.control.state()["applied"] == SAFE, 5, "the plant gets the safe set")
    state = stack.plc.control.state()
    assert state["plc_remote"] == 1 and state["program"]["mode"] == "remote"
    assert flags[0][0] <= safe[0]["t"] + 0.25, "the flag with the safe set"
    return float(safe[0]["t"])


def assert_handed_back(stack: Stack, since: float) -> None:
    """Recovery wrote the flag local after ``since`` and the program runs again."""
    wait_for(lambda: [f for f in flag_log(stack, since) if f[1] == 0], 20,
             "the flag written local on recovery")
    wait_for(lambda: stack.plc.control.state()["program"]["mode"] == "local", 5,
             "the program runs again")
    switch = [s for s in switches_since(stack, since) if s["mode"] == "local"]
    assert switch and switch[-1]["cause"] == "modbus"
    stack.wait_state("normal", since=since)


@pytest.mark.parametrize("hazard", ["trip", "group_bad"])
def test_a_hazard_in_shadow_overrides_the_plc_program(hazard: str) -> None:
    with Stack(profile_text=tank()) as st:
        t_normal = st.wait_state("normal")
        st.wait_twin("alive")
        time.sleep(0.5)
        state = st.plc.control.state()
        assert state["plc_remote"] == 0 and state["program"]["mode"] == "local"
        assert flag_log(st, 0.0) == [] and output_log(st, 0.0) == [], "shadow: nothing written"
        t0 = time.monotonic()
        if hazard == "trip":
            for ch in ("temp_a", "temp_b", "temp_c"):
                st.plc.control.fault("offset", signal=ch, value=120.0)
        else:  # two of three temperature channels gone: the required group BAD
            st.plc.control.fault("dropout", signal="temp_a")
            st.plc.control.fault("out_of_range", signal="temp_b")
        t_safe = assert_safe_at_the_plc(st, t0)
        st.wait_state("failsafe", since=t_normal)
        st.plc.control.clear()
        assert_handed_back(st, t_safe)


def test_a_python_hang_in_shadow_overrides_the_plc_program() -> None:
    env = {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_WATCHDOG": "native",
           "TWINGUARD_HANG_S": "0.8", "TWINGUARD_WATCHDOG_EXIT": ""}
    # the PLC's own watchdog at 2 s: the 0.8 s hang stays below it, so what the plant gets
    # during the hang is the native watchdog's doing, not the PLC's fallback
    with Stack(profile_text=tank(plc_timeout_ms=2000), agent_env=env) as st:
        st.wait_state("normal", timeout=30)
        time.sleep(0.5)
        assert st.plc.control.state()["program"]["mode"] == "local"
        assert st.agent is not None
        t_sig = time.monotonic()
        st.agent.signal(signal.SIGUSR2)  # the main thread holds the GIL

        def guard_frames() -> tuple[float, float] | None:
            flag = [t for t, v in flag_log(st, t_sig) if v == 1]
            safe = [w["t"] for w in output_writes(st.plc.write_log(), "heater_power", t_sig)
                    if w["values"][:2] == [0, 1000]]
            return (flag[0], safe[0]) if flag and safe else None

        t_flag, t_safe = wait_for(guard_frames, 10, "the native watchdog's frames")
        beats = [w["t"] for w in st.plc.write_log() if w["address"] == HB_ADDRESS
                 and w["t"] > t_sig and w.get("source") == "modbus"]
        assert not beats or beats[0] > t_safe, "written while the loop was stopped: the guard"
        assert t_safe - t_flag < 0.05, "one burst of frames: the flag, then the safe set"
        # what the plant got while the loop was still stopped (the hang outlasts the
        # watchdog's deadline by more than this), from the first task cycle after the
        # frames (the sample at the switch itself may come between the flag and the fc16)
        wait_for(lambda: st.plc.control.state()["t"] > t_safe + 0.3, 5, "0.3 s at the PLC")
        got = [e for e in st.plc.control.trace(since_t=t_safe + 0.02) if e["t"] <= t_safe + 0.3]
        assert got and all(e["mode"] == "remote" and e["heater"] == 0.0
                           and e["cooling"] == 100.0 for e in got), got
        assert [s for s in switches_since(st, t_sig) if s["mode"] == "remote"], \
            "the program handed the plant to the guard's safe set"
        wait_for(lambda: "native watchdog fired" in st.agent_stderr(), 20, "the fire seen")
        # FAILSAFE for the hang, from the agent's recent events: the twin may never hear of
        # it (a hang that outlasts the link's idle timeout, 1 s here, ends the session, and
        # a status goes out only while one is up: the next says RECOVERING or NORMAL)
        st.wait_status(lambda s: any("-> FAILSAFE on FAULT: agent hang" in e["text"]
                                     for e in s["events"]), 20, "FAILSAFE on the agent hang")
        assert_handed_back(st, t_safe)
        assert st.plc.control.state()["watchdog"]["trips"] == 0, "the PLC's watchdog held"


def test_coupler_local_ramps_the_heater_and_hold_leaves_the_cooling() -> None:
    with Stack(profile_text=coupler(), mode="active") as st:
        take_authority(st, heater=60.0)
        st.twin.request(recommend_script([(0.0, "cooling_valve", 40.0, 50.0)]))
        wait_for(lambda: st.plc.control.state()["outputs"]["cooling_valve"] == pytest.approx(
            40.0, abs=0.05), 20, "cooling at 40 %")
        st.twin.request({"cmd": "stop"})
        deadline = last_heartbeat_t(st) + TIMEOUT_S
        wait_for(lambda: st.plc.control.state()["outputs"]["heater_power"] == pytest.approx(
            35.0, abs=0.05), 10, "the heater at its local_value")
        time.sleep(0.5)
        ramp = values_of(st, "heater_power", deadline)
        assert ramp[0][0] >= deadline and ramp[0][0] - deadline < SHED_MARGIN_S
        assert len(ramp) >= 2, f"a ramp from 60 %, not a jump: {ramp}"
        # the agent sizes each step by its own clock; the PLC logs arrival times, which a
        # loaded machine delays by up to about a poll: a step may look fast against the write
        # before it, never over the ramp as a whole
        previous_t, previous = deadline - POLL_S, 60.0
        for t, v in ramp:
            assert 35.0 - 1e-6 <= v <= previous + 1e-6, "monotonic down to 35 %"
            assert previous - v <= HEATER_RATE * (t - previous_t + POLL_S) + 0.1 + 1e-6
            previous_t, previous = t, v
        total_s = ramp[-1][0] - (deadline - POLL_S)
        assert 60.0 - ramp[-1][1] <= HEATER_RATE * (total_s + JITTER_S) + 0.1 + 1e-6
        assert ramp[-1][1] == pytest.approx(35.0, abs=0.05)
        assert values_of(st, "cooling_valve", deadline) == [], "hold: cooling not written"
        assert st.plc.control.state()["outputs"]["cooling_valve"] == pytest.approx(40.0,
                                                                                    abs=0.05)
        assert "failsafe" not in states_since(st, deadline)
        assert st.plc.control.state()["watchdog"]["trips"] == 0


def test_a_restart_slower_than_the_plc_watchdog_writes_nothing() -> None:
    with Stack(profile_text=tank()) as st:
        st.wait_state("normal")
        assert st.agent is not None
        t_stop = time.monotonic()
        assert st.agent.stop() == 0
        wait_for(lambda: [w for w in st.plc.write_log() if w["t"] >= t_stop
                          and w.get("source") == "plc watchdog"], 10, "the PLC's fallback")
        assert st.plc.control.state()["program"]["mode"] == "local", "production goes on"
        t_start = time.monotonic()
        st.start_agent()
        st.wait_state("normal", since=t_start, timeout=30)
        time.sleep(1.0)
        assert output_log(st, t_stop) == [], "a healthy plant: not one output write"
        assert "failsafe" not in states_since(st, t_start)
