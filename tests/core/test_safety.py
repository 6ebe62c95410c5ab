"""Safety state machine: every cell of the table, recovery policies, health assessment."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.heartbeat import LinkState
from agent.core.safety import (
    FAULT_EVENTS,
    SAFE_STATES,
    TRANSITIONS,
    EventKind,
    Health,
    Refusal,
    SafetyEvent,
    SafetyMachine,
    State,
    Transition,
    health_event,
)
from agent.core.trips import TripHit
from agent.model.mode import Mode
from agent.model.profile import Recovery, RecoveryPolicy
from agent.model.readings import Quality

pytestmark = pytest.mark.timeout(30)

HOLDOFF = 3.0
AUTO = Recovery(RecoveryPolicy.AUTO, HOLDOFF)
MANUAL = Recovery(RecoveryPolicy.MANUAL, HOLDOFF)

# how to reach each state from a fresh machine (auto policy), one event per second
PATHS: dict[State, list[EventKind]] = {
    State.STARTING: [],
    State.NORMAL: [EventKind.PLANT_HEALTHY],
    State.DEGRADED: [EventKind.PLANT_DEGRADED],
    State.FAILSAFE: [EventKind.PLANT_HEALTHY, EventKind.TRIP],
    State.RECOVERING: [EventKind.PLANT_HEALTHY, EventKind.TRIP, EventKind.PLANT_HEALTHY],
}


def state_of(m: SafetyMachine) -> State:
    """Read the state through a call, so mypy does not pin it after an assert."""
    return m.state


def mode_of(m: SafetyMachine) -> Mode:
    return m.mode


def ev(kind: EventKind, cause: str = "") -> SafetyEvent:
    return SafetyEvent(kind, cause)


def machine_in(state: State, recovery: Recovery = AUTO) -> SafetyMachine:
    m = SafetyMachine(recovery)
    for i, kind in enumerate(PATHS[state]):
        m.handle(ev(kind), float(i))
    assert state_of(m) is state
    return m


def health(
    twin: LinkState = LinkState.ALIVE,
    quality: Quality = Quality.GOOD,
    trips: tuple[TripHit, ...] = (),
    plc: bool = True,
    watchdog: bool = True,
) -> Health:
    return Health(twin, quality, trips, plc, watchdog)


HIT = TripHit("overtemperature", "temperature", "overtemperature: temperature 99 > 95")


def test_table_has_a_row_for_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(isinstance(k, EventKind) and isinstance(v, State) for k, v in row.items())


@pytest.mark.parametrize(("state", "kind"), list(itertools.product(State, EventKind)))
def test_every_cell(state: State, kind: EventKind) -> None:
    m = machine_in(state)
    now = 100.0  # long after RECOVERING was entered: a hold-off has really elapsed
    expected = TRANSITIONS[state].get(kind)
    result = m.handle(ev(kind, "the cause"), now)
    if expected is None:
        assert isinstance(result, Transition)
        assert (result.old, result.event, result.new) == (state, kind, State.FAILSAFE)
        assert result.cause == f"unexpected {kind.name} in {state.name}"
        assert state_of(m) is State.FAILSAFE
    elif kind is EventKind.ACK and expected is state:
        assert isinstance(result, Refusal)
        assert result.reason
        assert state_of(m) is state
    elif expected is state:
        assert result is None
        assert state_of(m) is state
    else:
        assert isinstance(result, Transition)
        assert result == Transition(state, kind, expected, result.cause, now)
        assert state_of(m) is expected
        if kind is not EventKind.HOLDOFF_ELAPSED:
            assert "the cause" in m.cause


# an unconfirmed safe set holds RECOVERING instead (its own test below)
@pytest.mark.parametrize(("state", "kind"), [
    (s, k) for s in (State.NORMAL, State.DEGRADED, State.RECOVERING)
    for k in EventKind if k in FAULT_EVENTS
    and (s, k) != (State.RECOVERING, EventKind.SAFE_UNCONFIRMED)])
def test_every_fault_drives_failsafe_from_running_states(state: State, kind: EventKind) -> None:
    m = machine_in(state)
    result = m.handle(ev(kind, "why"), 50.0)
    assert isinstance(result, Transition)
    assert (result.new, result.cause) == (State.FAILSAFE, "why")
    assert m.outputs_safe


def unconfirmed(**kw: object) -> Health:
    h = health(**kw)  # type: ignore[arg-type]
    return Health(h.twin, h.worst_quality, h.trips, h.plc_reachable, h.plc_watchdog_ok,
                  safe_set_confirmed=False)


def test_an_unconfirmed_safe_set_holds_the_failsafe_latch() -> None:
    m = machine_in(State.FAILSAFE)
    for i in range(5):  # the plant is healthy, but the safe set never reached the PLC
        assert m.assess(unconfirmed(), 10.0 + i) == []
        assert state_of(m) is State.FAILSAFE
    assert "safe set not confirmed" in m.cause
    [t] = m.assess(health(), 20.0)
    assert (t.old, t.new) == (State.FAILSAFE, State.RECOVERING)


@pytest.mark.parametrize("recovery", [AUTO, MANUAL])
def test_an_unconfirmed_safe_set_keeps_recovering_from_completing(recovery: Recovery) -> None:
    m = machine_in(State.FAILSAFE, recovery)
    [t] = m.assess(health(), 10.0)
    assert t.new is State.RECOVERING
    # a refresh of the safe set fails: RECOVERING holds, past the hold-off, acks refused
    assert m.assess(unconfirmed(), 10.0 + HOLDOFF + 1.0) == []
    assert state_of(m) is State.RECOVERING
    refused = m.handle(ev(EventKind.ACK), 10.0 + HOLDOFF + 1.5)
    assert isinstance(refused, Refusal) and "safe set not confirmed" in refused.reason
    assert state_of(m) is State.RECOVERING
    if recovery is AUTO:  # confirmed again: the hold-off (long elapsed) completes at once
        [t] = m.assess(health(), 10.0 + HOLDOFF + 2.0)
        assert (t.old, t.new) == (State.RECOVERING, State.NORMAL)
    else:
        assert m.assess(health(), 10.0 + HOLDOFF + 2.0) == []
        done = m.handle(ev(EventKind.ACK, "ack"), 10.0 + HOLDOFF + 2.5)
        assert isinstance(done, Transition) and done.new is State.NORMAL


def test_starting_waits_safely_for_readiness() -> None:
    m = SafetyMachine(AUTO)
    assert m.outputs_safe
    assert m.assess(health(twin=LinkState.LOST), 0.0) == []
    assert m.assess(health(plc=False), 0.1) == []
    assert m.assess(health(watchdog=False), 0.2) == []
    assert m.assess(health(trips=(HIT,)), 0.3) == []
    assert m.assess(unconfirmed(), 0.35) == []
    assert state_of(m) is State.STARTING
    [t] = m.assess(health(), 0.4)
    assert (t.old, t.new) == (State.STARTING, State.NORMAL)
    assert not m.outputs_safe


def test_starting_with_a_degraded_plant_goes_degraded() -> None:
    m = SafetyMachine(AUTO)
    [t] = m.assess(health(quality=Quality.DEGRADED), 0.0)
    assert t.new is State.DEGRADED


def test_manual_start_waits_for_an_ack() -> None:
    m = SafetyMachine(MANUAL)
    [t] = m.assess(health(), 0.0)
    assert (t.old, t.new) == (State.STARTING, State.RECOVERING)
    assert "ack" in t.cause
    assert m.assess(health(), 1000.0) == []  # no hold-off under manual
    assert state_of(m) is State.RECOVERING and m.outputs_safe
    result = m.handle(ev(EventKind.ACK, "reset button"), 1001.0)
    assert isinstance(result, Transition) and result.new is State.NORMAL


def test_manual_holdoff_elapsed_is_unexpected() -> None:
    m = machine_in(State.RECOVERING, MANUAL)
    result = m.handle(ev(EventKind.HOLDOFF_ELAPSED), 1000.0)
    assert isinstance(result, Transition) and result.new is State.FAILSAFE
    assert result.cause == "unexpected HOLDOFF_ELAPSED in RECOVERING"


def test_premature_holdoff_elapsed_is_unexpected() -> None:
    m = machine_in(State.RECOVERING)  # entered at t=2
    result = m.handle(ev(EventKind.HOLDOFF_ELAPSED), 2.0 + HOLDOFF - 0.01)
    assert isinstance(result, Transition) and result.new is State.FAILSAFE


def test_manual_ack_refused_while_unhealthy() -> None:
    m = SafetyMachine(MANUAL)
    m.assess(health(), 0.0)
    m.handle(ev(EventKind.ACK), 0.1)
    assert state_of(m) is State.NORMAL
    [t] = m.assess(health(twin=LinkState.LOST), 1.0)
    assert t.new is State.FAILSAFE
    refusal = m.handle(ev(EventKind.ACK), 2.0)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "plant not healthy: twin LOST"
    assert refusal.state is State.FAILSAFE
    assert state_of(m) is State.FAILSAFE
    # healthy again: RECOVERING, and now the ack is honoured
    [t] = m.assess(health(), 3.0)
    assert t.new is State.RECOVERING
    result = m.handle(ev(EventKind.ACK), 4.0)
    assert isinstance(result, Transition) and result.new is State.NORMAL


def test_failsafe_is_latched_until_recovery() -> None:
    m = SafetyMachine(AUTO)
    m.assess(health(), 0.0)
    m.assess(health(trips=(HIT,)), 1.0)
    assert state_of(m) is State.FAILSAFE
    assert "overtemperature" in m.cause
    [t] = m.assess(health(), 1.05)
    assert t.new is State.RECOVERING
    assert m.outputs_safe


def test_auto_holdoff_needs_continuous_health() -> None:
    m = SafetyMachine(AUTO)
    m.assess(health(), 0.0)
    m.assess(health(twin=LinkState.LOST), 1.0)
    m.assess(health(), 2.0)  # RECOVERING from t=2
    assert m.holdoff_deadline() == 2.0 + HOLDOFF
    m.assess(health(), 4.0)
    m.assess(health(plc=False), 4.5)  # a blip
    assert state_of(m) is State.FAILSAFE
    m.assess(health(), 4.6)  # RECOVERING again: the clock restarts at 4.6
    assert m.assess(health(), 2.0 + HOLDOFF + 0.5) == []
    assert state_of(m) is State.RECOVERING
    assert m.assess(health(), 4.6 + HOLDOFF - 0.01) == []
    [t] = m.assess(health(), 4.6 + HOLDOFF)
    assert (t.old, t.event, t.new) == (State.RECOVERING, EventKind.HOLDOFF_ELAPSED, State.NORMAL)
    assert m.holdoff_deadline() is None


def test_degraded_health_counts_for_holdoff_and_lands_in_degraded() -> None:
    m = machine_in(State.RECOVERING)  # entered at t=2
    m.assess(health(twin=LinkState.LATE), 3.0)
    ts = m.assess(health(quality=Quality.DEGRADED), 2.0 + HOLDOFF)
    assert [(t.old, t.new) for t in ts] == [
        (State.RECOVERING, State.NORMAL),
        (State.NORMAL, State.DEGRADED),
    ]


def test_ack_in_a_running_state_is_refused_without_effect() -> None:
    m = machine_in(State.NORMAL)
    refusal = m.handle(ev(EventKind.ACK), 5.0)
    assert isinstance(refusal, Refusal)
    assert "nothing to acknowledge" in refusal.reason
    assert state_of(m) is State.NORMAL


@pytest.mark.parametrize(
    ("h", "kind"),
    [
        (health(), EventKind.PLANT_HEALTHY),
        (health(twin=LinkState.LATE), EventKind.PLANT_DEGRADED),
        (health(quality=Quality.DEGRADED), EventKind.PLANT_DEGRADED),
        (health(quality=Quality.BAD), EventKind.PLANT_DEGRADED),  # non-required group
        (health(trips=(HIT,)), EventKind.TRIP),
        (health(twin=LinkState.LOST), EventKind.TWIN_LOST),
        (health(watchdog=False), EventKind.PLC_WATCHDOG_FAULT),
        (health(plc=False), EventKind.PLC_UNREACHABLE),
        # the worst finding wins
        (health(twin=LinkState.LOST, trips=(HIT,)), EventKind.TWIN_LOST),
        (health(plc=False, twin=LinkState.LOST, watchdog=False), EventKind.PLC_UNREACHABLE),
    ],
)
def test_health_event_table(h: Health, kind: EventKind) -> None:
    assert health_event(h).kind is kind


def test_health_causes_name_the_fault() -> None:
    lost = Health(LinkState.LOST, Quality.GOOD, (), True, True, "no heartbeat for 0.512 s")
    assert health_event(lost).cause == "twin LOST: no heartbeat for 0.512 s"
    assert health_event(health(trips=(HIT,))).cause == HIT.cause


@pytest.mark.parametrize("state", list(State))
def test_outputs_safe_by_state(state: State) -> None:
    assert machine_in(state).outputs_safe is (state in SAFE_STATES)
    assert (state in SAFE_STATES) is (state in {State.STARTING, State.FAILSAFE, State.RECOVERING})


def test_mode_is_beside_the_state_and_failsafe_is_the_same_in_both() -> None:
    for mode in Mode:
        m = SafetyMachine(AUTO, mode=mode)
        m.assess(health(), 0.0)
        assert m.writes_allowed is (mode is Mode.ACTIVE)
        [t] = m.assess(health(twin=LinkState.LOST), 1.0)
        assert t.new is State.FAILSAFE and m.outputs_safe and not m.writes_allowed
        assert m.mode is mode
    m = SafetyMachine(AUTO)
    assert m.mode is Mode.SHADOW
    m.set_mode(Mode.ACTIVE)
    assert mode_of(m) is Mode.ACTIVE and state_of(m) is State.STARTING


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(EventKind), st.floats(min_value=0.0, max_value=2.0)),
        max_size=50,
    ),
    policy=st.sampled_from(RecoveryPolicy),
)
def test_any_event_sequence_is_handled_and_faults_are_always_safe(
    steps: list[tuple[EventKind, float]], policy: RecoveryPolicy
) -> None:
    m = SafetyMachine(Recovery(policy, HOLDOFF))
    now = 0.0
    for kind, dt in steps:
        now += dt
        old = m.state
        result = m.handle(ev(kind), now)
        if kind in FAULT_EVENTS:
            assert m.outputs_safe
        if old is State.FAILSAFE:
            assert m.state in (State.FAILSAFE, State.RECOVERING)
        if m.state is State.NORMAL and old is not State.NORMAL:
            assert old in (State.DEGRADED, State.RECOVERING) or (
                old is State.STARTING and policy is RecoveryPolicy.AUTO
            )
        if isinstance(result, Transition):
            assert (result.old, result.new, result.t) == (old, m.state, now)
