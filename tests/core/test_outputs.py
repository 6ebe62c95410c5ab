"""Output policy: safe values, hold-last, ramps, and clamping of recommendations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.outputs import OutputPlanner, clamp
from agent.core.safety import SAFE_STATES, State
from agent.model.profile import DataType, FailsafePolicy, Output, Table, WordOrder

pytestmark = pytest.mark.timeout(30)


def output(
    name: str,
    policy: FailsafePolicy,
    *,
    safe: float = 0.0,
    max_rate: float | None = 20.0,
    lo: float = 0.0,
    hi: float = 100.0,
) -> Output:
    return Output(
        name=name,
        table=Table.HOLDING,
        address=100,
        dtype=DataType.UINT16,
        word_order=WordOrder.BIG,
        scale=0.1,
        offset=0.0,
        unit="%",
        minimum=lo,
        maximum=hi,
        max_rate=max_rate,
        safe_value=safe,
        failsafe=policy,
        unit_id=1,
    )


HEATER = output("heater_power", FailsafePolicy.SAFE_VALUE, safe=0.0)
MIXER = output("mixer", FailsafePolicy.HOLD_LAST, safe=10.0)
COOLING = output("cooling_valve", FailsafePolicy.RAMP, safe=100.0, max_rate=50.0)


@pytest.mark.parametrize("state", [s for s in State if s in SAFE_STATES])
def test_safe_states_plan_every_output(state: State) -> None:
    p = OutputPlanner([HEATER, MIXER, COOLING])
    p.plan(state, {}, 0.0)
    plan = p.plan(state, {"heater_power": 80.0, "mixer": 55.0, "cooling_valve": 20.0}, 0.1)
    assert plan == {"heater_power": 0.0, "mixer": 55.0, "cooling_valve": pytest.approx(25.0)}


# STARTING is not a safe-output state: the agent writes nothing at start
@pytest.mark.parametrize("state", [State.STARTING, State.NORMAL, State.DEGRADED])
def test_running_states_impose_nothing(state: State) -> None:
    p = OutputPlanner([HEATER, MIXER, COOLING])
    assert p.plan(state, {"heater_power": 80.0}, 0.0) == {}


def test_never_written_outputs_go_to_their_safe_value() -> None:
    p = OutputPlanner([HEATER, MIXER, COOLING])
    assert p.plan(State.FAILSAFE, {"mixer": None}, 0.0) == {
        "heater_power": 0.0,
        "mixer": 10.0,
        "cooling_valve": 100.0,
    }


def test_hold_last_of_a_non_finite_value_is_the_safe_value() -> None:
    p = OutputPlanner([MIXER])
    assert p.plan(State.FAILSAFE, {"mixer": math.nan}, 0.0) == {"mixer": 10.0}


def test_ramp_reaches_the_safe_value_at_max_rate_and_stays() -> None:
    p = OutputPlanner([COOLING])
    last: float | None = 0.0
    seen = []
    for i in range(40):
        value = p.plan(State.FAILSAFE, {"cooling_valve": last}, 0.1 * i)["cooling_valve"]
        assert last is not None
        assert abs(value - last) <= 50.0 * 0.1 + 1e-9
        seen.append(value)
        last = value
    assert seen[0] == 0.0  # first plan: no dt yet
    assert seen[-1] == 100.0
    assert seen == sorted(seen)
    assert seen.index(100.0) == 20


def test_ramp_from_above_moves_down() -> None:
    o = output("v", FailsafePolicy.RAMP, safe=10.0, max_rate=10.0)
    p = OutputPlanner([o])
    p.plan(State.FAILSAFE, {"v": 90.0}, 0.0)
    assert p.plan(State.FAILSAFE, {"v": 90.0}, 0.5) == {"v": pytest.approx(85.0)}


def test_ramp_without_max_rate_is_immediate() -> None:
    o = output("v", FailsafePolicy.RAMP, safe=100.0, max_rate=None)
    p = OutputPlanner([o])
    assert p.plan(State.FAILSAFE, {"v": 0.0}, 0.0) == {"v": 100.0}


def test_a_stalled_loop_does_not_turn_a_ramp_into_a_jump() -> None:
    p = OutputPlanner([COOLING], max_dt_s=0.2)
    p.plan(State.NORMAL, {}, 0.0)
    plan = p.plan(State.FAILSAFE, {"cooling_valve": 0.0}, 30.0)
    assert plan == {"cooling_valve": pytest.approx(10.0)}  # 50 %/s * 0.2 s, not 100


def test_bad_max_dt_is_refused() -> None:
    with pytest.raises(ValueError):
        OutputPlanner([COOLING], max_dt_s=0.0)


@pytest.mark.parametrize(
    ("target", "last", "dt", "expected"),
    [
        (50.0, None, 0.1, 50.0),  # nothing written yet: limits only
        (150.0, None, 0.1, 100.0),
        (-5.0, None, 0.1, 0.0),
        (50.0, 40.0, 0.1, 42.0),  # 20 %/s
        (30.0, 40.0, 0.1, 38.0),
        (41.0, 40.0, 0.1, 41.0),
        (150.0, 99.0, 1.0, 100.0),  # limit wins over rate
        (50.0, 40.0, 0.0, 40.0),
    ],
)
def test_clamp_table(target: float, last: float | None, dt: float, expected: float) -> None:
    assert clamp(HEATER, target, last, dt) == pytest.approx(expected)


@pytest.mark.parametrize(("target", "dt"), [(math.nan, 0.1), (math.inf, 0.1), (50.0, -0.1)])
def test_clamp_refuses_bad_input(target: float, dt: float) -> None:
    with pytest.raises(ValueError, match="heater_power"):
        clamp(HEATER, target, 40.0, dt)


@settings(max_examples=300, deadline=None)
@given(
    target=st.floats(min_value=-1e6, max_value=1e6),
    last=st.floats(min_value=0.0, max_value=100.0),
    dt=st.floats(min_value=0.0, max_value=10.0),
)
def test_clamp_stays_within_limits_and_rate(target: float, last: float, dt: float) -> None:
    value = clamp(HEATER, target, last, dt)
    assert HEATER.minimum <= value <= HEATER.maximum
    assert abs(value - last) <= 20.0 * dt + 1e-9
