"""Twin authority end to end (issue 12), real processes: sim PLC + sim twin + `twinguard run`.

The twin's loss changes who is in charge, not whether the plant runs. Each test makes the
twin go away for real (its heartbeats stopped at the sim twin) and asserts what the sim
PLC's write log saw: nothing in shadow mode, each output's ``on_twin_loss`` policy in active
mode, FAILSAFE only where the profile makes the twin's supervision a protection layer.
The agent's state and authority are taken from the status messages it sends the twin.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest

from sim.stack import Stack, output_writes, recommend_script, sim_tank_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TIMEOUT_S = 0.5  # sim-tank heartbeat_timeout_s
HB_ADDRESS = 200  # plc_watchdog.heartbeat_address
HOLDOFF_S = 1.0  # [authority] return_holdoff_s of these tests
SCALE = 0.1  # heater_power and cooling_valve: raw * 0.1 = %
COOLING_RATE = 50.0  # %/s
JITTER_S = 0.02
POLL_S = 0.05  # sim-tank poll_period_s


def profile(*, heater: str = "hold", cooling: str = "hold", cooling_local: float | None = None,
            return_policy: str = "auto", holdoff_s: float = HOLDOFF_S) -> str:
    """sim-tank with these on_twin_loss policies (any the shipped file has are replaced),
    no [plc_remote] or PLC program, and an [authority] table."""
    text = sim_tank_text()
    text = re.sub(r"(?m)^(on_twin_loss|local_value) = .*\n", "", text)
    text = re.sub(r"(?ms)^\[plc_remote\][^\n]*\n.*?(?=^\[|\Z)", "", text)
    text = re.sub(r"(?ms)^\[sim\.program\][^\n]*\n.*?(?=^\[|\Z)", "", text)
    text = re.sub(r"(?ms)^\[authority\][^\n]*\n.*?(?=^\[|\Z)", "", text)
    assert not re.search(r"(?m)^\[(sim\.program|plc_remote)\]", text), "the tables are gone"
    policies = iter([(heater, None), (cooling, cooling_local)])

    def add(match: re.Match[str]) -> str:
        policy, local = next(policies)
        extra = f'on_twin_loss = "{policy}"\n'
        if local is not None:
            extra += f"local_value = {local}\n"
        return match.group(0) + extra

    text = re.sub(r"(?m)^failsafe = .*\n", add, text)
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', text)
    text = re.sub(r"(?m)^holdoff_s = .*$", "holdoff_s = 0.5", text)
    return text + f'\n[authority]\nreturn = "{return_policy}"\nreturn_holdoff_s = {holdoff_s}\n'


def output_log(stack: Stack, since: float) -> list[dict[str, Any]]:
    """Every accepted write of the agent to anything but the PLC watchdog heartbeat."""
    return [w for w in stack.plc.write_log() if w["t"] >= since and w.get("accepted", True)
            and w.get("source") == "modbus" and w["address"] != HB_ADDRESS]


def values_of(stack: Stack, name: str, since: float) -> list[tuple[float, float]]:
    return [(w["t"], w["values"][w["names"].index(name)] * SCALE)
            for w in output_writes(stack.plc.write_log(), name, since=since)]


def last_heartbeat_t(stack: Stack) -> float:
    return float(stack.twin.stats(last=1)["last_heartbeat_t"])


def take_authority(stack: Stack, heater: float = 30.0) -> float:
    """Wait for NORMAL and REMOTE, then have the twin recommend ``heater`` % and wait until
    the PLC holds it; returns when authority was reported remote."""
    stack.wait_state("normal")
    t_remote = stack.wait_authority("remote", timeout=30)
    stack.twin.request(recommend_script([(0.0, "heater_power", heater, 50.0)]))
    wait_for(lambda: stack.plc.control.state()["outputs"]["heater_power"] == pytest.approx(
        heater, abs=0.05), 20, f"heater at {heater} %")
    return t_remote


def states_since(stack: Stack, since: float) -> set[str]:
    return {s[2] for s in stack.twin.stats(last=500)["statuses"] if s[0] >= since}


def test_shadow_twin_loss_writes_nothing_and_production_goes_on() -> None:
    with Stack(profile_text=profile(heater="safe", cooling="local", cooling_local=20.0)) as st:
        t_normal = st.wait_state("normal")
        st.wait_status(lambda s: s["twin"]["state"] == "alive", 20, "twin ALIVE")
        st.twin.request({"cmd": "stop"})
        st.wait_status(lambda s: s["twin"]["state"] == "lost", 10, "twin LOST")
        time.sleep(1.0)
        st.twin.request({"cmd": "resume"})
        st.wait_status(lambda s: s["twin"]["state"] == "alive", 20, "twin back")
        time.sleep(HOLDOFF_S + 0.5)
        assert output_log(st, t_normal) == [], "shadow mode: not one output write"
        snap = st.status_json()
        assert snap["state"] == "normal" and snap["authority"]["state"] == "local"
        assert "failsafe" not in states_since(st, t_normal)


def test_no_twin_is_a_local_guard_that_still_trips() -> None:
    with Stack(profile_text=profile(), twin_configured=False) as st:
        t0 = time.monotonic()
        st.wait_status(lambda s: s["state"] == "normal", 30, "NORMAL without a twin")
        time.sleep(1.0)
        assert output_log(st, t0) == [], "a healthy plant: nothing written"
        snap = st.status_json()
        assert snap["authority"]["shed_reason"] == "no twin configured"
        t_fault = time.monotonic()
        for name in ("temp_a", "temp_b", "temp_c"):
            st.plc.control.fault("offset", signal=name, value=120.0)
        writes = wait_for(lambda: output_log(st, t_fault), 10, "the safe set on a trip")
        assert writes[0]["values"][:2] == [0, 1000], "heater 0 %, cooling 100 %"
        st.wait_status(lambda s: s["state"] == "failsafe", 10, "FAILSAFE")


def test_active_hold_sheds_authority_and_writes_nothing() -> None:
    with Stack(profile_text=profile(), mode="active") as st:
        take_authority(st, heater=30.0)
        st.twin.request({"cmd": "stop"})
        deadline = last_heartbeat_t(st) + TIMEOUT_S
        t_local = st.wait_authority("local", since=deadline - 0.1, timeout=10)
        time.sleep(1.0)
        assert output_log(st, deadline) == [], "hold: the PLC keeps what it holds"
        assert st.plc.control.state()["outputs"]["heater_power"] == pytest.approx(30.0, abs=0.05)
        assert "failsafe" not in states_since(st, deadline)
        snap = st.status_json()
        assert snap["state"] == "normal"
        assert "twin LOST" in snap["authority"]["shed_reason"]
        assert t_local >= deadline


def test_active_local_ramps_to_the_local_value_at_max_rate() -> None:
    with Stack(profile_text=profile(cooling="local", cooling_local=80.0), mode="active") as st:
        take_authority(st, heater=30.0)
        held = st.plc.control.state()["outputs"]["cooling_valve"]
        st.twin.request({"cmd": "stop"})
        deadline = last_heartbeat_t(st) + TIMEOUT_S
        wait_for(lambda: st.plc.control.state()["outputs"]["cooling_valve"] == pytest.approx(
            80.0, abs=0.05), 10, "cooling at its local_value")
        ramp = values_of(st, "cooling_valve", deadline)
        assert ramp[0][0] >= deadline, "nothing before the heartbeat deadline"
        assert ramp[0][0] - deadline < 0.25, "the shed acts at the deadline, not a poll later"
        assert ramp[-1][1] == pytest.approx(80.0, abs=0.05)
        assert len(ramp) >= 2, f"a ramp from {held} %, not a jump: {ramp}"
        # the first step, at the shed, is one poll period's worth (zero-order hold)
        previous_t, previous = deadline - POLL_S, held
        for t, v in ramp:
            assert abs(v - 80.0) <= abs(previous - 80.0) + 1e-6, "monotonic toward 80 %"
            assert abs(v - previous) <= COOLING_RATE * (t - previous_t + JITTER_S) + SCALE + 1e-6
            previous_t, previous = t, v
        assert values_of(st, "heater_power", deadline) == [], "heater holds (its policy)"
        assert "failsafe" not in states_since(st, deadline)


def test_active_safe_policy_makes_the_twin_loss_a_hazard() -> None:
    with Stack(profile_text=profile(heater="safe"), mode="active") as st:
        take_authority(st, heater=30.0)
        st.twin.request({"cmd": "stop"})
        deadline = last_heartbeat_t(st) + TIMEOUT_S
        writes = wait_for(lambda: output_log(st, deadline), 10, "the safe set")
        assert writes[0]["values"][:2] == [0, 1000]
        assert writes[0]["t"] - deadline < 0.25
        st.wait_state("failsafe", since=deadline)


def test_auto_return_waits_for_the_holdoff_of_continuous_heartbeats() -> None:
    with Stack(profile_text=profile(holdoff_s=2.0), mode="active") as st:
        take_authority(st, heater=30.0)
        st.twin.request({"cmd": "stop"})
        t_local = st.wait_authority("local", since=last_heartbeat_t(st), timeout=10)
        st.twin.request({"cmd": "resume"})
        resumed = time.monotonic()
        t_remote = st.wait_authority("remote", since=t_local, timeout=30)
        # the link needs 3 heartbeats to be ALIVE, then the 2 s hold-off runs
        assert t_remote - resumed >= 2.0
        # the recommendation died with the shed: nothing is written after the return until
        # the twin recommends again, and then it ramps from what the PLC holds
        time.sleep(0.5)
        assert values_of(st, "heater_power", t_remote) == []
        st.twin.request(recommend_script([(0.0, "heater_power", 40.0, 50.0)]))
        wait_for(lambda: values_of(st, "heater_power", t_remote), 10, "a new recommendation")
        first = values_of(st, "heater_power", t_remote)[0][1]
        assert 30.0 <= first <= 30.0 + 20.0 * (0.05 + JITTER_S) + SCALE, "no bump"


def test_manual_return_waits_for_an_ack() -> None:
    with Stack(profile_text=profile(return_policy="manual", holdoff_s=0.5),
               mode="active") as st:
        st.wait_state("normal")
        t_ret = st.wait_authority("returning", timeout=30)
        time.sleep(1.5)
        assert st.status_json()["authority"]["state"] == "returning", "no return by itself"
        assert st.status_json()["authority"]["waiting_for_ack"] is True
        ack = st.ack()
        assert ack.returncode == 0, ack.stderr + ack.stdout
        st.wait_authority("remote", since=t_ret, timeout=10)


def test_sigterm_in_shadow_writes_nothing_and_start_writes_nothing() -> None:
    with Stack(profile_text=profile(cooling="local", cooling_local=20.0)) as st:
        t0 = time.monotonic()
        st.wait_state("normal")
        assert st.agent is not None
        st.agent.signal(signal.SIGTERM)
        wait_for(lambda: not st.agent.alive(), 15, "agent stopped")  # type: ignore[union-attr]
        assert output_log(st, t0) == [], "start and stop in shadow: not one output write"
        assert "safe state written" not in st.agent_stderr()
