"""The PLC program in process, on plant time (a fake clock): sim-tank's tuning settles the
tank as its profile promises, the PI loop engages bumplessly and does not wind up, and the
profile refuses a program it could not run."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import pytest

from agent.config.profile.load import load_profile
from agent.config.profile.parse import parse_profile
from agent.model.errors import ProfileError
from agent.model.profile import CommFallback, SimProgram
from sim.plc.plc import SimPlc
from sim.plc.program import CYCLE_S, PiProgram

SIM_TANK = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")
TICK_S = 0.01  # the sim server's tick


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sim_tank_program_settles_within_30_s_and_stays_in_band(seed: int) -> None:
    t = [1000.0]
    plc = SimPlc(load_profile("sim-tank"), seed=seed, clock=lambda: t[0])
    setpoint = plc.profile.sim.program.setpoint  # type: ignore[union-attr]
    history: list[tuple[float, float]] = []
    while t[0] < 1000.0 + 120.0:
        t[0] += TICK_S
        plc.tick(t[0])
        history.append((t[0] - 1000.0, plc.model.state.temperature))
    last_outside = max(at for at, temp in history if abs(temp - setpoint) > 1.0)
    assert last_outside <= 30.0  # within +/-1 degC from here on
    assert max(abs(temp - setpoint) for at, temp in history if at >= 30.0) <= 1.0
    assert max(temp for _, temp in history) <= setpoint + 2.0  # no overshoot past the band
    assert plc.writes() == []


def _program(kp: float = 10.0, ki: float = 1.5) -> PiProgram:
    return PiProgram(SimProgram(setpoint=60.0, kp=kp, ki=ki, cooling=20.0,
                                comm_fallback=CommFallback.LOCAL), 0.0, 100.0)


def test_engage_starts_from_the_heater_the_plant_gets() -> None:
    pi = _program()
    assert pi.engage(5.0, heater=42.0, measured=50.0).heater == 42.0  # e = 10: no kick
    out = pi.cycle(5.0 + CYCLE_S, measured=50.0)
    assert out is not None
    assert out.heater == pytest.approx(42.0 + 1.5 * 10.0 * CYCLE_S)  # one integral step
    assert out.cooling == 20.0
    assert pi.cycle(5.0 + CYCLE_S * 1.5, measured=50.0) is None  # not due yet


def test_saturated_loop_does_not_wind_up() -> None:
    pi = _program()
    pi.engage(0.0, heater=0.0, measured=20.0)
    now = 0.0
    for i in range(600):  # a minute far below the setpoint: the heater climbs to its limit
        now += CYCLE_S
        out = pi.cycle(now, measured=20.0)
        assert out is not None and (i < 20 or out.heater == 100.0)
    now += CYCLE_S
    out = pi.cycle(now, measured=60.5)  # just above the setpoint: the heater backs off now
    assert out is not None and out.heater < 100.0


def _parse(text: str) -> None:
    parse_profile(tomllib.loads(text), "p.toml")


def test_profile_refuses_a_program_without_a_flag_or_with_impossible_cooling() -> None:
    start = SIM_TANK.index("\n[plc_remote]\n")
    no_flag = SIM_TANK[:start] + SIM_TANK[SIM_TANK.index("\n[timing]\n"):]
    no_flag = no_flag.replace('on_twin_loss = "release"', 'on_twin_loss = "hold"')
    with pytest.raises(ProfileError) as exc:
        _parse(no_flag)
    assert [p.path for p in exc.value.problems] == ["sim.program"]
    with pytest.raises(ProfileError) as exc:
        _parse(SIM_TANK.replace("cooling = 20.0 ", "cooling = 120.0"))
    assert [p.path for p in exc.value.problems] == ["sim.program.cooling"]
    assert "outside output 'cooling_valve'" in str(exc.value)
