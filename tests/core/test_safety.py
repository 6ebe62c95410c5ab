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
    *,
    required: bool = False,
) -> Health:
    return Health(twin, quality, trips, plc, watchdog, twin_required=required)


HIT = TripHit("overtemperature", "temperature", "overtemperature: temperature 99 > 95")


def test_table_has_a_row_for_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(isinstance(k, EventKind) and isinstance(v, State) for k, v in row.items())


HAZARDS = (EventKind.TWIN_LOST, EventKind.TRIP, EventKind.PLC_UNREACHABLE,
           EventKind.PLC_WATCHDOG_FAULT, EventKind.PLC_FELL_BACK, EventKind.SAFE_UNCONFIRMED,
           EventKind.STOP,
           EventKind.FAULT)


def test_the_fault_events_are_the_hazards() -> None:
    assert frozenset(HAZARDS) == FAULT_EVENTS


REFUSED = "refused"  # a Refusal, the state unchanged
UNEXPECTED = "unexpected"  # drives FAILSAFE, cause "unexpected EVENT in STATE"
_ST, _NO, _DE, _FS, _RE = (State.STARTING, State.NORMAL, State.DEGRADED, State.FAILSAFE,
                           State.RECOVERING)


def _running_row(healthy: State, degraded: State) -> dict[EventKind, State | str]:
    """NORMAL's and DEGRADED's row: every hazard is FAILSAFE, an ack has nothing to do."""
    return {
        EventKind.PLANT_HEALTHY: healthy, EventKind.PLANT_DEGRADED: degraded,
        EventKind.TWIN_LOST: _FS, EventKind.TRIP: _FS, EventKind.PLC_UNREACHABLE: _FS,
        EventKind.PLC_WATCHDOG_FAULT: _FS, EventKind.PLC_FELL_BACK: _FS,
        EventKind.SAFE_UNCONFIRMED: _FS,
        EventKind.ACK: REFUSED, EventKind.HOLDOFF_ELAPSED: UNEXPECTED, EventKind.STOP: _FS,
        EventKind.FAULT: _FS,
    }


def _expected(policy: RecoveryPolicy) -> dict[State, dict[EventKind, State | str]]:
    """The safety table written from issue 12 / the design note (not from the module).
    HOLDOFF_ELAPSED is sent only once the hold-off has really elapsed (timing: below)."""
    manual = policy is RecoveryPolicy.MANUAL
    return {
        _ST: {
            # either policy: nothing is latched at start, a healthy plant is not stopped
            EventKind.PLANT_HEALTHY: _NO,
            EventKind.PLANT_DEGRADED: _DE,
            EventKind.TWIN_LOST: _ST,  # waits for the twin it needs
            EventKind.TRIP: _FS,  # a hazard found at start acts
            EventKind.PLC_UNREACHABLE: _ST,  # nothing can be written; the PLC's watchdog covers
            EventKind.PLC_WATCHDOG_FAULT: _FS,
            # the PLC's fallback covered the agent's absence: cleared at start, no hazard
            EventKind.PLC_FELL_BACK: _ST,
            EventKind.SAFE_UNCONFIRMED: _ST,  # nothing planned: STARTING writes nothing
            EventKind.ACK: REFUSED, EventKind.HOLDOFF_ELAPSED: UNEXPECTED,
            EventKind.STOP: _FS, EventKind.FAULT: _FS,
        },
        _NO: _running_row(_NO, _DE),
        _DE: _running_row(_NO, _DE),
        _FS: {
            EventKind.PLANT_HEALTHY: _RE, EventKind.PLANT_DEGRADED: _RE,
            EventKind.TWIN_LOST: _FS, EventKind.TRIP: _FS, EventKind.PLC_UNREACHABLE: _FS,
            EventKind.PLC_WATCHDOG_FAULT: _FS, EventKind.PLC_FELL_BACK: _FS,
            EventKind.SAFE_UNCONFIRMED: _FS,
            EventKind.ACK: REFUSED,  # the plant is not healthy yet
            EventKind.HOLDOFF_ELAPSED: UNEXPECTED, EventKind.STOP: _FS, EventKind.FAULT: _FS,
        },
        _RE: {
            EventKind.PLANT_HEALTHY: _RE, EventKind.PLANT_DEGRADED: _RE,
            EventKind.TWIN_LOST: _FS, EventKind.TRIP: _FS, EventKind.PLC_UNREACHABLE: _FS,
            EventKind.PLC_WATCHDOG_FAULT: _FS, EventKind.PLC_FELL_BACK: _FS,
            EventKind.SAFE_UNCONFIRMED: _RE,  # held: no completion, no ack
            EventKind.ACK: _NO,
            EventKind.HOLDOFF_ELAPSED: UNEXPECTED if manual else _NO,
            EventKind.STOP: _FS, EventKind.FAULT: _FS,
        },
    }


EXPECTED = {policy: _expected(policy) for policy in RecoveryPolicy}

# how to reach each state from a fresh machine under each policy, one event per second
POLICY_PATHS: dict[RecoveryPolicy, dict[State, list[EventKind]]] = {
    RecoveryPolicy.AUTO: PATHS,
    RecoveryPolicy.MANUAL: {
        State.STARTING: [],
        State.NORMAL: [EventKind.PLANT_HEALTHY],
        State.DEGRADED: [EventKind.PLANT_HEALTHY, EventKind.PLANT_DEGRADED],
        State.FAILSAFE: [EventKind.TRIP],
        State.RECOVERING: [EventKind.TRIP, EventKind.PLANT_HEALTHY],
    },
}


def test_the_expected_table_covers_every_cell() -> None:
    for policy in RecoveryPolicy:
        assert set(EXPECTED[policy]) == set(State)
        for row in EXPECTED[policy].values():
            assert set(row) == set(EventKind)


@pytest.mark.parametrize(("policy", "state", "kind"),
                         list(itertools.product(RecoveryPolicy, State, EventKind)))
def test_every_cell(policy: RecoveryPolicy, state: State, kind: EventKind) -> None:
    m = SafetyMachine(Recovery(policy, HOLDOFF))
    for i, step in enumerate(POLICY_PATHS[policy][state]):
        m.handle(ev(step), float(i))
    assert state_of(m) is state
    now = 100.0  # long after RECOVERING was entered: a hold-off has really elapsed
    expected = EXPECTED[policy][state][kind]
    result = m.handle(ev(kind, "the cause"), now)
    if expected == UNEXPECTED:
        assert isinstance(result, Transition)
        assert (result.old, result.event, result.new) == (state, kind, State.FAILSAFE)
        assert result.cause == f"unexpected {kind.name} in {state.name}"
        assert state_of(m) is State.FAILSAFE
    elif expected == REFUSED:
        assert isinstance(result, Refusal)
        assert result.reason and (result.state, result.t) == (state, now)
        assert state_of(m) is state
    elif expected is state:
        assert result is None
        assert state_of(m) is state
        if kind in HAZARDS:
            assert m.cause == "the cause"  # the latest reason to stay where it is
    else:
        assert isinstance(result, Transition)
        assert (result.old, result.event, result.new, result.t) == (state, kind, expected, now)
        assert state_of(m) is expected
        if kind is not EventKind.HOLDOFF_ELAPSED:
            assert "the cause" in m.cause


# an unconfirmed safe set holds RECOVERING instead (its own test below)
@pytest.mark.parametrize(("state", "kind"), [
    (s, k) for s in (State.NORMAL, State.DEGRADED, State.RECOVERING)
    for k in HAZARDS
    if (s, k) != (State.RECOVERING, EventKind.SAFE_UNCONFIRMED)])
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


def test_starting_writes_nothing_and_waits_for_the_plc() -> None:
    m = SafetyMachine(AUTO)
    assert not m.outputs_safe, "STARTING is not a safe-output state: nothing is written"
    assert m.assess(health(plc=False), 0.1) == []
    assert m.assess(health(twin=LinkState.LOST, required=True), 0.2) == []  # waits for it
    assert m.assess(unconfirmed(), 0.35) == []
    assert state_of(m) is State.STARTING and not m.outputs_safe
    [t] = m.assess(health(), 0.4)
    assert (t.old, t.new) == (State.STARTING, State.NORMAL)
    assert not m.outputs_safe


def test_starting_needs_no_twin() -> None:
    for twin in (LinkState.LOST, LinkState.LATE):
        m = SafetyMachine(AUTO)
        [t] = m.assess(health(twin=twin), 0.0)
        assert (t.old, t.new) == (State.STARTING, State.NORMAL)


@pytest.mark.parametrize("h", [health(trips=(HIT,)), health(watchdog=False)],
                         ids=["trip", "plc_watchdog_fault"])
def test_a_hazard_found_at_start_drives_failsafe(h: Health) -> None:
    m = SafetyMachine(AUTO)
    [t] = m.assess(h, 0.0)
    assert (t.old, t.new) == (State.STARTING, State.FAILSAFE)
    assert m.outputs_safe


def test_starting_with_a_degraded_plant_goes_degraded() -> None:
    m = SafetyMachine(AUTO)
    [t] = m.assess(health(quality=Quality.DEGRADED), 0.0)
    assert t.new is State.DEGRADED


def test_manual_start_of_a_healthy_plant_does_not_wait_for_an_ack() -> None:
    m = SafetyMachine(MANUAL)
    [t] = m.assess(health(), 0.0)
    assert (t.old, t.new) == (State.STARTING, State.NORMAL)
    assert not m.outputs_safe
    # a latch is for a hazard: after one, the manual policy waits for the ack
    m.assess(health(plc=False), 1.0)
    m.assess(health(), 2.0)
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
    [t] = m.assess(health(plc=False), 1.0)
    assert t.new is State.FAILSAFE
    refusal = m.handle(ev(EventKind.ACK), 2.0)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "plant not healthy: PLC unreachable"
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
    m.assess(health(trips=(HIT,)), 1.0)
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
    m.assess(health(quality=Quality.DEGRADED), 3.0)
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
        # the twin is the authority axis' business: LATE or LOST never reach safety ...
        (health(twin=LinkState.LATE), EventKind.PLANT_HEALTHY),
        (health(twin=LinkState.LOST), EventKind.PLANT_HEALTHY),
        (health(twin=LinkState.LOST, trips=(HIT,)), EventKind.TRIP),
        # ... unless its supervision is a protection layer (twin_required); LATE still not
        (health(twin=LinkState.LOST, required=True), EventKind.TWIN_LOST),
        (health(twin=LinkState.LATE, required=True), EventKind.PLANT_HEALTHY),
        (health(quality=Quality.DEGRADED), EventKind.PLANT_DEGRADED),
        (health(quality=Quality.BAD), EventKind.PLANT_DEGRADED),  # non-required group
        (health(trips=(HIT,)), EventKind.TRIP),
        (health(watchdog=False), EventKind.PLC_WATCHDOG_FAULT),
        (health(plc=False), EventKind.PLC_UNREACHABLE),
        # the worst finding wins
        (health(twin=LinkState.LOST, trips=(HIT,), required=True), EventKind.TWIN_LOST),
        (health(plc=False, twin=LinkState.LOST, watchdog=False, required=True),
         EventKind.PLC_UNREACHABLE),
        (health(watchdog=False, twin=LinkState.LOST, required=True),
         EventKind.PLC_WATCHDOG_FAULT),
    ],
)
def test_health_event_table(h: Health, kind: EventKind) -> None:
    assert health_event(h).kind is kind


def test_health_causes_name_the_fault() -> None:
    lost = Health(LinkState.LOST, Quality.GOOD, (), True, True, "no heartbeat for 0.512 s",
                  twin_required=True)
    assert health_event(lost).cause == "twin LOST: no heartbeat for 0.512 s"
    assert health_event(health(trips=(HIT,))).cause == HIT.cause


@pytest.mark.parametrize("state", list(State))
def test_outputs_safe_by_state(state: State) -> None:
    assert machine_in(state).outputs_safe is (state in SAFE_STATES)
    assert (state in SAFE_STATES) is (state in {State.FAILSAFE, State.RECOVERING})


def test_mode_is_beside_the_state_and_failsafe_is_the_same_in_both() -> None:
    for mode in Mode:
        m = SafetyMachine(AUTO, mode=mode)
        m.assess(health(), 0.0)
        assert state_of(m) is State.NORMAL
        assert m.assess(health(twin=LinkState.LOST), 0.5) == [], "not a hazard in either mode"
        [t] = m.assess(health(trips=(HIT,)), 1.0)
        assert t.new is State.FAILSAFE and m.outputs_safe
        assert m.mode is mode
    m = SafetyMachine(AUTO)
    assert m.mode is Mode.SHADOW
    m.set_mode(Mode.ACTIVE)
    assert mode_of(m) is Mode.ACTIVE and state_of(m) is State.STARTING


@settings(max_examples=200, deadline=None, derandomize=True)
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
        if old is State.STARTING and kind in (EventKind.TWIN_LOST, EventKind.PLC_UNREACHABLE,
                                               EventKind.SAFE_UNCONFIRMED,
                                               EventKind.PLC_FELL_BACK):
            assert m.state is State.STARTING  # waits, writing nothing
        elif kind in FAULT_EVENTS:
            assert m.outputs_safe
        if old is State.FAILSAFE:
            assert m.state in (State.FAILSAFE, State.RECOVERING)
        if m.state is State.NORMAL and old is not State.NORMAL:
            assert old in (State.DEGRADED, State.RECOVERING, State.STARTING)
        if isinstance(result, Transition):
            assert (result.old, result.new, result.t) == (old, m.state, now)
