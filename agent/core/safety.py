"""Plant safety: hazards in, transitions out (sans-IO).

The first of the agent's two axes (the second, who is in charge, is ``agent.core.authority``).
This one answers "is the plant safe?" and moves **only on hazards**: a trip (including a
required group BAD), the PLC unreachable, the PLC's communication watchdog not verified or
fallen back, a safe set not confirmed at the PLC, an agent fault (including a native-watchdog
fire), and the twin's loss **only where the twin's supervision is a protection layer**
(active mode and some output with ``on_twin_loss = "safe"``: ``Health.twin_required``).
Anywhere else the twin going away is a matter of authority, not of safety: it never reaches
this table.

Rule 1: everything that decides the safety state lives in this file, as much as possible in
the one literal table :data:`TRANSITIONS`; the few rules that do not fit a table (hold-off
timing, refused acks) are the code of :class:`SafetyMachine` below.

Rule 2: nothing here raises for an event. A (state, event) pair the table does not list
drives FAILSAFE with the cause "unexpected EVENT in STATE": a surprise is a fault.

States::

    STARTING ──ready──▶ NORMAL ⇄ DEGRADED ──hazard──▶ FAILSAFE (latched)
        └─hazard (trip, PLC watchdog)──────────────▶ │ plant healthy again
                                                     ▼
                                                RECOVERING
                     RECOVERING ──holdoff of continuous health (auto) / ACK──▶ NORMAL
                     RECOVERING ──hazard──▶ FAILSAFE

STARTING writes nothing: it waits for the PLC (reachable, its watchdog verified) and the
plant's groups, then goes to NORMAL (or DEGRADED) under either recovery policy — nothing is
latched at start, and a healthy plant is not stopped for an ack; a trip or a PLC watchdog
fault found at start is a hazard and drives
FAILSAFE; an unreachable PLC keeps it waiting (nothing can be written anyway, and the PLC's
own watchdog covers); a PLC whose communication watchdog fell back while no agent ran (a
restart slower than its timeout, a death the PLC covered) keeps it waiting while the runtime
clears the latch (PLC_FELL_BACK), and is no hazard: the PLC already applied its fallback.
While the agent runs, the same latch is a hazard. SAFE_UNCONFIRMED (a safe value planned is
not yet acknowledged and read back at the PLC) holds FAILSAFE, and holds RECOVERING without
completing (no hold-off completion, acks refused) until it is. STOP (the agent stops while
the twin's supervision is a protection layer) and FAULT drive FAILSAFE from every state.

An ACK is honoured only in RECOVERING (under either policy: a deliberate act may cut an
auto hold-off short) and only while no fault is present; anywhere else it is refused.
HOLDOFF_ELAPSED is honoured only under the auto policy once the hold-off really elapsed;
otherwise it is unexpected (a caller bug) and drives FAILSAFE.

Outputs are held safe (:attr:`SafetyMachine.outputs_safe`) in FAILSAFE and RECOVERING only.
A DEGRADED plant (a channel out, a non-required group not GOOD) keeps running. The mode
(SHADOW by default, ACTIVE) is kept beside the state and changes nothing about it except
through ``Health.twin_required``: FAILSAFE is the same in both modes.

Every change of state comes back to the caller as a :class:`Transition` (who logs and
audits it); an ACK that cannot be honoured comes back as a :class:`Refusal` and changes
nothing.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from agent.core.heartbeat import LinkState
from agent.core.trips import TripHit
from agent.model.mode import Mode
from agent.model.profile import Recovery, RecoveryPolicy
from agent.model.readings import Quality

log = logging.getLogger(__name__)


class State(enum.Enum):
    STARTING = "starting"  # not yet sure of the plant; nothing written
    NORMAL = "normal"
    DEGRADED = "degraded"  # working, with a warning (a channel out, a group not GOOD)
    FAILSAFE = "failsafe"  # latched; outputs safe
    RECOVERING = "recovering"  # healthy again, waiting for hold-off or ack; outputs safe


class EventKind(enum.Enum):
    PLANT_HEALTHY = "plant_healthy"  # no hazard, every group GOOD
    PLANT_DEGRADED = "plant_degraded"  # no hazard, but a group not GOOD
    TWIN_LOST = "twin_lost"  # only where the twin's supervision is a protection layer
    TRIP = "trip"
    PLC_UNREACHABLE = "plc_unreachable"
    PLC_WATCHDOG_FAULT = "plc_watchdog_fault"  # PLC comm watchdog not as configured / unread
    PLC_FELL_BACK = "plc_fell_back"  # the PLC's comm watchdog fell back (its latch is set)
    SAFE_UNCONFIRMED = "safe_unconfirmed"  # safe set not acknowledged + read back at the PLC
    ACK = "ack"  # operator reset: button or `twinguard ack`
    HOLDOFF_ELAPSED = "holdoff_elapsed"  # auto policy: holdoff_s of continuous health
    STOP = "stop"  # the agent stops while the twin's supervision is a protection layer
    FAULT = "fault"  # the agent caught an internal error in its loop


_S = State
_E = EventKind

TRANSITIONS: dict[State, dict[EventKind, State]] = {
    _S.STARTING: {
        _E.PLANT_HEALTHY: _S.NORMAL,  # either policy: nothing is latched at start
        _E.PLANT_DEGRADED: _S.DEGRADED,
        _E.TWIN_LOST: _S.STARTING,  # waits for the twin it needs
        _E.TRIP: _S.FAILSAFE,  # a hazard found at start acts
        _E.PLC_UNREACHABLE: _S.STARTING,  # nothing can be written; the PLC's watchdog covers
        _E.PLC_WATCHDOG_FAULT: _S.FAILSAFE,  # misconfigured: a hazard found at start
        _E.PLC_FELL_BACK: _S.STARTING,  # the PLC covered the agent's absence: cleared at start
        _E.SAFE_UNCONFIRMED: _S.STARTING,  # nothing planned yet (STARTING writes nothing)
        _E.ACK: _S.STARTING,  # refused
        _E.STOP: _S.FAILSAFE,
        _E.FAULT: _S.FAILSAFE,
    },
    _S.NORMAL: {
        _E.PLANT_HEALTHY: _S.NORMAL,
        _E.PLANT_DEGRADED: _S.DEGRADED,
        _E.TWIN_LOST: _S.FAILSAFE,
        _E.TRIP: _S.FAILSAFE,
        _E.PLC_UNREACHABLE: _S.FAILSAFE,
        _E.PLC_WATCHDOG_FAULT: _S.FAILSAFE,
        _E.PLC_FELL_BACK: _S.FAILSAFE,
        _E.SAFE_UNCONFIRMED: _S.FAILSAFE,
        _E.ACK: _S.NORMAL,  # refused
        _E.STOP: _S.FAILSAFE,
        _E.FAULT: _S.FAILSAFE,
    },
    _S.DEGRADED: {
        _E.PLANT_HEALTHY: _S.NORMAL,
        _E.PLANT_DEGRADED: _S.DEGRADED,
        _E.TWIN_LOST: _S.FAILSAFE,
        _E.TRIP: _S.FAILSAFE,
        _E.PLC_UNREACHABLE: _S.FAILSAFE,
        _E.PLC_WATCHDOG_FAULT: _S.FAILSAFE,
        _E.PLC_FELL_BACK: _S.FAILSAFE,
        _E.SAFE_UNCONFIRMED: _S.FAILSAFE,
        _E.ACK: _S.DEGRADED,  # refused
        _E.STOP: _S.FAILSAFE,
        _E.FAULT: _S.FAILSAFE,
    },
    _S.FAILSAFE: {
        _E.PLANT_HEALTHY: _S.RECOVERING,
        _E.PLANT_DEGRADED: _S.RECOVERING,
        _E.TWIN_LOST: _S.FAILSAFE,
        _E.TRIP: _S.FAILSAFE,
        _E.PLC_UNREACHABLE: _S.FAILSAFE,
        _E.PLC_WATCHDOG_FAULT: _S.FAILSAFE,
        _E.PLC_FELL_BACK: _S.FAILSAFE,
        _E.SAFE_UNCONFIRMED: _S.FAILSAFE,
        _E.ACK: _S.FAILSAFE,  # refused: the plant is not healthy yet
        _E.STOP: _S.FAILSAFE,
        _E.FAULT: _S.FAILSAFE,
    },
    _S.RECOVERING: {
        _E.PLANT_HEALTHY: _S.RECOVERING,
        _E.PLANT_DEGRADED: _S.RECOVERING,
        _E.TWIN_LOST: _S.FAILSAFE,
        _E.TRIP: _S.FAILSAFE,
        _E.PLC_UNREACHABLE: _S.FAILSAFE,
        _E.PLC_WATCHDOG_FAULT: _S.FAILSAFE,
        _E.PLC_FELL_BACK: _S.FAILSAFE,
        _E.SAFE_UNCONFIRMED: _S.RECOVERING,  # held: no hold-off completion, no ack
        _E.ACK: _S.NORMAL,
        _E.HOLDOFF_ELAPSED: _S.NORMAL,  # only when really elapsed under the auto policy
        _E.STOP: _S.FAILSAFE,
        _E.FAULT: _S.FAILSAFE,
    },
}

SAFE_STATES = frozenset({State.FAILSAFE, State.RECOVERING})
HEALTH_EVENTS = frozenset({EventKind.PLANT_HEALTHY, EventKind.PLANT_DEGRADED})
FAULT_EVENTS = frozenset(
    {
        EventKind.TWIN_LOST,
        EventKind.TRIP,
        EventKind.PLC_UNREACHABLE,
        EventKind.PLC_WATCHDOG_FAULT,
        EventKind.PLC_FELL_BACK,
        EventKind.SAFE_UNCONFIRMED,
        EventKind.STOP,
        EventKind.FAULT,
    }
)


@dataclass(frozen=True)
class SafetyEvent:
    kind: EventKind
    cause: str = ""


@dataclass(frozen=True)
class Transition:
    """``old`` --``event``--> ``new`` at monotonic ``t``; ``cause`` is for people."""

    old: State
    event: EventKind
    new: State
    cause: str
    t: float


@dataclass(frozen=True)
class Refusal:
    """An ACK that changed nothing, and why (for the button's LED, `twinguard ack`)."""

    state: State
    reason: str
    t: float


@dataclass(frozen=True)
class Health:
    """What the runtime saw this tick; :meth:`SafetyMachine.assess` turns it into an event.

    ``worst_quality`` is over all groups; a *required* group that is BAD reaches the
    machine as a trip (``agent.core.trips.evaluate`` always reports it), a non-required BAD
    group only degrades. ``plc_watchdog_ok``: the PLC's communication watchdog was read
    back with the expected timeout; ``plc_fell_back``: its latch says it fell back (the agent
    was silent longer than its timeout). ``twin`` matters only when
    ``twin_required`` (active mode with an ``on_twin_loss = "safe"`` output): then LOST is
    a hazard; otherwise the twin is the authority axis' business and is ignored here.
    """

    twin: LinkState
    worst_quality: Quality
    trips: tuple[TripHit, ...]
    plc_reachable: bool
    plc_watchdog_ok: bool
    twin_cause: str = ""  # why the twin link is in its state (the last LinkEvent's cause)
    safe_set_confirmed: bool = True  # every safe value planned is acknowledged + read back
    twin_required: bool = False  # the twin's supervision is a protection layer
    plc_fell_back: bool = False  # the PLC's comm watchdog latch is set (it fell back)


def health_event(h: Health) -> SafetyEvent:
    """The one event a health snapshot stands for; the worst finding wins."""
    if not h.plc_reachable:
        return SafetyEvent(EventKind.PLC_UNREACHABLE, "PLC unreachable")
    if not h.plc_watchdog_ok:
        return SafetyEvent(EventKind.PLC_WATCHDOG_FAULT, "PLC communication watchdog not verified")
    if h.plc_fell_back:
        return SafetyEvent(EventKind.PLC_FELL_BACK,
                           "PLC communication watchdog fell back (its latch is set)")
    if h.twin_required and h.twin is LinkState.LOST:
        why = f": {h.twin_cause}" if h.twin_cause else ""
        return SafetyEvent(EventKind.TWIN_LOST, f"twin LOST{why}")
    if h.trips:
        return SafetyEvent(EventKind.TRIP, "; ".join(hit.cause for hit in h.trips))
    if not h.safe_set_confirmed:
        return SafetyEvent(EventKind.SAFE_UNCONFIRMED, "safe set not confirmed at the PLC")
    if h.worst_quality is not Quality.GOOD:
        return SafetyEvent(EventKind.PLANT_DEGRADED,
                           f"plant degraded: a group is {h.worst_quality.name}")
    return SafetyEvent(EventKind.PLANT_HEALTHY, "plant healthy")


class SafetyMachine:
    """The safety state and the control mode of one agent; see the module docstring."""

    def __init__(self, recovery: Recovery, mode: Mode = Mode.SHADOW) -> None:
        self._recovery = recovery
        self._state = State.STARTING
        self._mode = mode
        self._cause = "starting: plant not yet verified (nothing written)"
        self._unhealthy: str | None = "not yet assessed"
        self._healthy_since: float | None = None  # entry into RECOVERING

    @property
    def state(self) -> State:
        return self._state

    @property
    def cause(self) -> str:
        """Why the machine is in its state (the cause of the last transition)."""
        return self._cause

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Change control authority. Authorising a promotion is the config layer's job."""
        self._mode = mode

    @property
    def outputs_safe(self) -> bool:
        """True while outputs must be held safe: FAILSAFE, RECOVERING."""
        return self._state in SAFE_STATES

    def holdoff_deadline(self) -> float | None:
        """When auto recovery will complete if health holds (for the caller's timer)."""
        if self._state is not State.RECOVERING or self._healthy_since is None:
            return None
        if self._recovery.policy is not RecoveryPolicy.AUTO:
            return None
        return self._healthy_since + self._recovery.holdoff_s

    def handle(self, event: SafetyEvent, now: float) -> Transition | Refusal | None:
        """Apply one event. Returns the Transition if the state changed (or the event was
        unexpected), a Refusal for an ACK that changes nothing, None otherwise."""
        kind, old = event.kind, self._state
        if kind in FAULT_EVENTS:
            self._unhealthy = event.cause or kind.name
        elif kind in HEALTH_EVENTS:
            self._unhealthy = None

        new = TRANSITIONS[old].get(kind)
        cause = event.cause or kind.name
        if kind is EventKind.HOLDOFF_ELAPSED and new is not None:
            deadline = self.holdoff_deadline()
            if deadline is None or now < deadline:
                new = None  # not really elapsed, or manual policy: a caller bug
        if kind is EventKind.ACK and new is not None:
            if self._unhealthy is not None:
                return Refusal(old, f"plant not healthy: {self._unhealthy}", now)
            if new is old:
                return Refusal(old, f"nothing to acknowledge in {old.name}", now)
        if new is None:
            cause = f"unexpected {kind.name} in {old.name}"
            log.warning("%s: driving FAILSAFE", cause)
            return self._enter(old, kind, State.FAILSAFE, cause, now)

        if new is old:
            if kind in FAULT_EVENTS:
                self._cause = cause  # the latest reason to stay where we are
            return None
        return self._enter(old, kind, new, cause, now)

    def assess(self, health: Health, now: float) -> list[Transition]:
        """Turn a health snapshot into events and apply them; return the transitions.

        Also completes an auto recovery whose hold-off of continuous health has elapsed
        (and then applies the health event again, so a degraded plant lands in DEGRADED),
        but never while this snapshot holds a fault (SAFE_UNCONFIRMED keeps RECOVERING).
        """
        event = health_event(health)
        out: list[Transition] = []
        result = self.handle(event, now)
        if isinstance(result, Transition):
            out.append(result)
        deadline = self.holdoff_deadline()
        if deadline is not None and now >= deadline and self._unhealthy is None:
            elapsed = SafetyEvent(
                EventKind.HOLDOFF_ELAPSED,
                f"{self._recovery.holdoff_s:g} s of continuous health",
            )
            for ev in (elapsed, event):
                result = self.handle(ev, now)
                if isinstance(result, Transition):
                    out.append(result)
        return out

    def _enter(self, old: State, kind: EventKind, new: State, cause: str, now: float) -> Transition:
        self._state = new
        self._cause = cause
        self._healthy_since = now if new is State.RECOVERING else None
        return Transition(old=old, event=kind, new=new, cause=cause, t=now)
