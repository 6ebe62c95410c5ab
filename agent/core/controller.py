"""The agent's decision core for one plant (sans-IO): readings and heartbeats in, writes out.

One :class:`Controller` composes the pure cores in the order of the data flow::

    readings ─▶ voting (per group) ─▶ trips ─┐
    heartbeats / silence ─▶ heartbeat monitor ─┼─▶ safety state machine ─▶ output plan
    PLC reachable / PLC watchdog verified ───┘

It owns no clock and does no I/O: the runtime calls :meth:`Controller.tick` once per poll
with the readings and ``now``, feeds twin messages as they arrive, and calls
:meth:`Controller.on_timer` when the heartbeat deadline it scheduled (``next_deadline``)
passes. Every call returns a :class:`Decision`: the transitions to log and audit, and the
output values to write now.

Writes: entering a safe state always writes the full safe set (whatever the PLC holds
now); while safe, outputs are written again when the plan changes them (a ramp) and every
``refresh_s`` (someone else may have written the PLC). Outside the safe states nothing is
written in shadow mode.

The safe set counts only once it is **confirmed**: the runtime reports through
:meth:`Controller.written` what the PLC acknowledged and which of those it read back equal.
Every safe value planned and not yet confirmed stays in :attr:`Controller.unconfirmed` and
is written again by every later decision (``Decision.safe``: the runtime sends it past any
unit backoff); while any is unconfirmed the state machine cannot leave the safe states
(``Health.safe_set_confirmed``: FAILSAFE and STARTING hold, RECOVERING does not complete), and
:attr:`Controller.unconfirmed_since` says since when, for ``twinguard status`` and the LEDs.

Recommendations (``agent.core.recommend``): :meth:`Controller.on_recommend` validates one the
moment it arrives, bound to the link session and epoch it came from (:meth:`on_session`
reports each session that comes up); the live ones are dropped when that session ends
(heartbeat LOST for any cause), when the twin's epoch changes, when the plant leaves NORMAL
and when the mode changes. Every decision first drops the expired ones (``Decision.expired``). In
ACTIVE mode, NORMAL state, twin ALIVE and no group vote BAD (:meth:`Controller.may_write`),
each live one is written, clamped to its output's limits and max rate from the value last
written (``Decision.reason`` "recommendation"); otherwise none is (the rate limiter restarts
from dt = 0 when writing is allowed again). In a safe state the safe-state output policy
writes, as always. SHADOW mode never writes a recommendation: the runtime compares them
with what the PLC holds (``recommendations.shadow``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.core.heartbeat import HeartbeatMonitor, LinkEvent, LinkState
from agent.core.outputs import OutputPlanner
from agent.core.recommend import DropCause, Recommendation, Recommendations, Verdict
from agent.core.safety import (
    EventKind,
    Health,
    Refusal,
    SafetyEvent,
    SafetyMachine,
    State,
    Transition,
)
from agent.core.trips import TripHit, evaluate
from agent.core.voting import GroupVoter, Vote
from agent.model.messages import Bye, Heartbeat, Origin, Recommend
from agent.model.mode import Mode
from agent.model.profile import Profile
from agent.model.readings import Quality, Reading

log = logging.getLogger(__name__)

_WORST = {Quality.GOOD: 0, Quality.DEGRADED: 1, Quality.BAD: 2}


def _logged(transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
    """Log each transition once at INFO (old, event, new, cause); returns them."""
    for t in transitions:
        log.info("safety %s -> %s on %s (%s)", t.old.name, t.new.name, t.event.name, t.cause)
    return transitions


@dataclass(frozen=True)
class Decision:
    """What one call into the controller decided."""

    transitions: tuple[Transition, ...] = ()
    link_events: tuple[LinkEvent, ...] = ()
    writes: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""  # why these writes (for the log)
    expired: tuple[Recommendation, ...] = ()  # recommendations whose validity just ended
    safe: bool = False  # the writes are (part of) the safe set: sent urgently, confirmed


class Controller:
    """Decides the safety state and the outputs of one plant; see the module docstring."""

    def __init__(self, profile: Profile, mode: Mode = Mode.SHADOW, refresh_s: float = 5.0,
                 max_validity_s: float = 60.0) -> None:
        self.profile = profile
        self.voters = {g.name: GroupVoter(g, (profile.signal(s) for s in g.signals))
                       for g in profile.groups}
        self.monitor = HeartbeatMonitor(profile.timing)
        self.machine = SafetyMachine(profile.recovery, mode)
        self.planner = OutputPlanner(profile.outputs)
        self.refresh_s = refresh_s
        self.recommendations = Recommendations(profile.outputs, max_validity_s)
        self.votes: dict[str, Vote] = {}
        self.trips: tuple[TripHit, ...] = ()
        self.readings: dict[str, Reading] = {}
        self.plc_reachable = False
        self.plc_watchdog_ok = False
        self.last_written: dict[str, float] = {}
        self._last_safe_write: float | None = None
        # safe values planned but not yet acknowledged and read back at the PLC
        self.unconfirmed: dict[str, float] = {}
        self.unconfirmed_since: float | None = None
        # while recommendations may be written: what the PLC holds (seeded from a read when
        # authority is gained, then what the agent wrote); None without write authority
        self.held: dict[str, float] | None = None
        self.needs_seed = False
        self._twin_cause = "no heartbeat seen yet"
        self._assessed = False
        self._was_normal = False  # the state as recommendations last saw it

    # --- inputs --------------------------------------------------------------------------

    def tick(self, readings: Mapping[str, Reading], now: float, *, plc_reachable: bool,
             plc_watchdog_ok: bool) -> Decision:
        """One poll cycle: vote, evaluate trips and the link, step the state machine, plan."""
        self.readings = dict(readings)
        self.plc_reachable = plc_reachable
        self.plc_watchdog_ok = plc_watchdog_ok
        self.votes = {name: v.update(readings, now) for name, v in self.voters.items()}
        self.trips = evaluate(self.profile.trips, self.profile.groups, self.votes)
        link_events = self._note_link(self.monitor.poll(now))
        self._assessed = True
        return self._decide(now, link_events)

    def on_heartbeat(self, hb: Heartbeat, now: float) -> Decision:
        unhealthy = self.monitor.counters.unhealthy
        events = self.monitor.on_heartbeat(hb, now)
        self.recommendations.epoch_seen(self.monitor.epoch)
        if self.monitor.counters.unhealthy > unhealthy:  # also when the link was LOST already
            self.recommendations.drop(DropCause.HEARTBEAT_LOST, "twin reports unhealthy")
        return self._link_changed(events, now)

    def on_bye(self, bye: Bye, now: float) -> Decision:
        events = self.monitor.on_bye(bye, now)
        self.recommendations.bye(bye.epoch)
        return self._link_changed(events, now)

    def on_disconnect(self, now: float) -> Decision:
        self.recommendations.session_down("twin link disconnected")
        return self._link_changed(self.monitor.on_disconnect(now), now)

    def on_session(self, origin: Origin) -> None:
        """A twin link session came up (``origin``: its number and its hello's epoch):
        recommendations are accepted from it, and from no other, until it ends."""
        self.recommendations.session_up(origin)

    def on_recommend(self, msg: Recommend, now: float, origin: Origin | None) -> Verdict:
        """Validate a twin recommendation now, as it arrived from ``origin`` (None: from no
        link session, so ``stale_session``); the verdict is for the twin (and telemetry).
        An accepted one is written from the next decision on, if and while allowed."""
        return self.recommendations.offer(msg, now, origin)

    def set_mode(self, mode: Mode) -> None:
        """Change control authority (authorising a promotion is the config layer's job)."""
        if mode is not self.machine.mode:
            log.info("control authority %s -> %s", self.machine.mode.value, mode.value)
            self.recommendations.drop(DropCause.MODE_CHANGED, f"control authority "
                                      f"{self.machine.mode.value} -> {mode.value}")
        self.machine.set_mode(mode)
        self.recommendations.pause()

    def may_write(self) -> bool:
        """Recommendations may be written: ACTIVE + NORMAL, twin ALIVE, no group vote BAD."""
        return (self.machine.writes_allowed and self.monitor.state is LinkState.ALIVE
                and bool(self.votes)
                and all(v.quality is not Quality.BAD for v in self.votes.values()))

    def on_timer(self, now: float) -> Decision:
        """The heartbeat deadline (or the hold-off) passed: re-evaluate now, not next poll."""
        return self._link_changed(self.monitor.poll(now), now, force=True)

    def ack(self, now: float, source: str) -> tuple[Decision, str | None]:
        """An operator reset. Returns the decision and, if refused, the reason."""
        result = self.machine.handle(SafetyEvent(EventKind.ACK, f"ack from {source}"), now)
        if isinstance(result, Refusal):
            return Decision(), result.reason
        transitions = _logged((result,) if isinstance(result, Transition) else ())
        return Decision(transitions=transitions), None

    def stop(self, now: float) -> Decision:
        """The agent is shutting down: FAILSAFE and the full safe set."""
        result = self.machine.handle(SafetyEvent(EventKind.STOP, "agent stopping"), now)
        transitions = _logged((result,) if isinstance(result, Transition) else ())
        return self._safe_decision(transitions, (), self._safe_writes(now, force=True), "stop")

    def fault(self, now: float, cause: str) -> Decision:
        """The runtime caught an internal error: FAILSAFE and the full safe set."""
        result = self.machine.handle(SafetyEvent(EventKind.FAULT, cause), now)
        transitions = _logged((result,) if isinstance(result, Transition) else ())
        return self._safe_decision(transitions, (), self._safe_writes(now, force=True), "fault")

    def start(self, now: float) -> Decision:
        """The agent starts: the full safe set, before anything else is trusted."""
        return self._safe_decision((), (), self._safe_writes(now, force=True), "safe start")

    def written(self, values: Mapping[str, float], confirmed: Iterable[str] | None = None,
                now: float | None = None) -> None:
        """The runtime reports what the PLC acknowledged (``values``) and, of those, which
        outputs it read back holding exactly that value (``confirmed``; None: the PLC offers
        no read-back, the acknowledgement alone confirms). A safe value is confirmed only
        when the value acknowledged is the one still planned."""
        self.last_written.update(values)
        if self.held is not None:
            self.held.update(values)
        names = values.keys() if confirmed is None else confirmed
        for name in names:
            if name in self.unconfirmed and values.get(name) == self.unconfirmed[name]:
                del self.unconfirmed[name]
        if not self.unconfirmed and self.unconfirmed_since is not None:
            if now is not None:
                log.info("safe set confirmed at the PLC after %.3f s",
                         now - self.unconfirmed_since)
            self.unconfirmed_since = None

    # --- derived -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (heartbeat LATE/LOST, or auto hold-off)."""
        times = [t for t in (self.monitor.deadline(), self.machine.holdoff_deadline())
                 if t is not None]
        return min(times) if times else None

    def health(self) -> Health:
        worst = max((v.quality for v in self.votes.values()), key=_WORST.__getitem__,
                    default=Quality.BAD)
        return Health(
            twin=self.monitor.state,
            worst_quality=worst,
            trips=self.trips,
            plc_reachable=self.plc_reachable,
            plc_watchdog_ok=self.plc_watchdog_ok,
            twin_cause=self._twin_cause,
            safe_set_confirmed=not self.unconfirmed,
        )

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def link(self) -> LinkState:
        return self.monitor.state

    # --- internals -----------------------------------------------------------------------

    def _note_link(self, events: list[LinkEvent]) -> tuple[LinkEvent, ...]:
        for ev in events:
            self._twin_cause = ev.cause
            log.info("twin link %s -> %s (%s)", ev.old.name, ev.new.name, ev.cause)
            if ev.new is LinkState.LOST:
                self.recommendations.drop(DropCause.HEARTBEAT_LOST, ev.cause)
        return tuple(events)

    def _link_changed(self, events: list[LinkEvent], now: float, force: bool = False) -> Decision:
        link_events = self._note_link(events)
        if not self._assessed or not (link_events or force):
            return Decision(link_events=link_events)
        return self._decide(now, link_events)

    def _decide(self, now: float, link_events: tuple[LinkEvent, ...]) -> Decision:
        was_safe = self.machine.outputs_safe
        self._check_normal(())  # a state change made outside a decision (fault, stop)
        transitions = _logged(tuple(self.machine.assess(self.health(), now)))
        self._check_normal(transitions)
        entering = self.machine.outputs_safe and (not was_safe or self._last_safe_write is None)
        writes = self._safe_writes(now, force=entering) if self.machine.outputs_safe else {}
        reason = "enter safe state" if entering else ("hold safe state" if writes else "")
        expired = tuple(self.recommendations.expire(now))
        if not self.machine.outputs_safe:
            self.planner.plan(self.machine.state, self.last_written, now)  # keeps dt one tick
            self._last_safe_write = None
        if self.may_write() and self.held is not None:
            writes = self.recommendations.targets(now, self.held)
            reason = "recommendation" if writes else ""
        elif self.may_write():
            self.needs_seed = True  # the runtime reads what the PLC holds: no jump on takeover
        else:
            self.recommendations.pause()
            self.held = None
        if self.machine.outputs_safe:
            return self._safe_decision(transitions, link_events, writes, reason, expired)
        return Decision(transitions, link_events, writes, reason, expired)

    def _check_normal(self, transitions: tuple[Transition, ...]) -> None:
        """Drop the live recommendations if the plant left NORMAL since the last check."""
        left = [t for t in transitions if t.old is State.NORMAL]
        normal = self.machine.state is State.NORMAL
        if left or (self._was_normal and not normal):
            why = (f"{left[0].old.name} -> {left[0].new.name} ({left[0].cause})" if left
                   else f"the plant is {self.machine.state.name}")
            self.recommendations.drop(DropCause.LEFT_NORMAL, why)
        self._was_normal = normal

    def seed(self, actual: Mapping[str, float | None]) -> None:
        """What the PLC holds now, read when write authority is gained: rate limits start
        from there, not from whatever the agent wrote last (an operator may have moved the
        outputs since)."""
        self.needs_seed = False
        self.held = {**self.last_written,
                     **{k: v for k, v in actual.items() if v is not None}}

    def _safe_writes(self, now: float, *, force: bool) -> dict[str, float]:
        """The safe values to write now: the whole plan when forced or due for a refresh,
        else what the plan changes, plus every planned value not yet confirmed."""
        plan = self.planner.plan(State.FAILSAFE, self.last_written, now)
        refresh = (self._last_safe_write is None
                   or now - self._last_safe_write >= self.refresh_s)
        if force or refresh:
            self._last_safe_write = now
            writes = dict(plan)
        else:
            writes = {k: v for k, v in plan.items()
                      if self.last_written.get(k) != v or k in self.unconfirmed}
        if writes:
            self.unconfirmed.update(writes)
            if self.unconfirmed_since is None:
                self.unconfirmed_since = now
        return writes

    @staticmethod
    def _safe_decision(transitions: tuple[Transition, ...], link_events: tuple[LinkEvent, ...],
                       writes: Mapping[str, float], reason: str,
                       expired: tuple[Recommendation, ...] = ()) -> Decision:
        return Decision(transitions, link_events, writes, reason, expired, safe=bool(writes))
