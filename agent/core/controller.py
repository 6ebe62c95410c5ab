"""The agent's decision core for one plant (sans-IO): readings and heartbeats in, writes out.

One :class:`Controller` composes the pure cores in the order of the data flow::

    readings ─▶ voting (per group) ─▶ trips ─┐
    PLC reachable / PLC watchdog verified ───┼─▶ plant safety (agent.core.safety) ─┐
    heartbeats / silence ─▶ heartbeat monitor ┴─▶ twin authority (agent.core.authority) ┴─▶ plan

It owns no clock and does no I/O: the runtime calls :meth:`Controller.tick` once per poll
with the readings and ``now``, feeds twin messages as they arrive, and calls
:meth:`Controller.on_timer` when the deadline it scheduled (``next_deadline``: heartbeat
LATE/LOST, a safety or an authority hold-off) passes. Every call returns a
:class:`Decision`: the transitions of both axes to log and audit, and the values to write.

Two axes. *Plant safety* moves only on hazards; in its safe states (FAILSAFE, RECOVERING)
the safe set is written — every output's safe value by its ``failsafe`` policy plus, with a
``[plc_remote]``, the flag at ``remote_value`` so that a PLC program takes the agent's values
whatever mode it is in: entering writes the full set, then what the plan changes (a ramp)
and the full set every ``refresh_s``. *Twin authority* says who decides outside them: in
REMOTE (active mode, twin ALIVE, plant NORMAL, after the return rule) the twin's live
recommendations are written, clamped to limits and max rate from what the PLC holds (read
when authority is taken: ``needs_seed``/:meth:`seed`), after the flag is set to
``remote_value``. Anywhere else the agent writes nothing while the plant is healthy: not at
start (STARTING writes nothing), not in shadow mode, not without a twin.

When authority is **shed** (REMOTE -> LOCAL: the twin lost, a new epoch, the mode or the plant
leaving what REMOTE needs, the agent stopping), the live recommendations are dropped and each
output follows its ``on_twin_loss``: ``hold`` writes nothing; ``local`` ramps at
``max_rate`` from what the PLC holds to ``local_value``, one step per decision until the PLC
acknowledged it; ``release`` writes the flag at ``local_value`` (the PLC program takes
over, bumpless; the output itself is not written); ``safe`` outputs make the twin's loss a
hazard (``Health.twin_required``, decided on the safety axis), and act as ``hold`` on a
shed that is not a loss of the twin. When the plant leaves the safe states, the flag is set
back to ``local_value`` (the PLC program resumes; an agent with authority takes it again by
the return rule). A flag value or a ramp step is written again every decision until the PLC
acknowledged it.

The safe set counts only once it is **confirmed**: the runtime reports through
:meth:`Controller.written` what the PLC acknowledged and which of those it read back equal.
Every safe value planned and not yet confirmed stays in :attr:`Controller.unconfirmed` and
is written again by every later decision (``Decision.safe``: the runtime sends it past any
unit backoff); while any is unconfirmed the state machine cannot leave the safe states
(``Health.safe_set_confirmed``), and :attr:`Controller.unconfirmed_since` says since when,
for ``twinguard status`` and the LEDs.

Recommendations (``agent.core.recommend``): :meth:`Controller.on_recommend` validates one the
moment it arrives, bound to the link session and epoch it came from (:meth:`on_session`
reports each session that comes up); the live ones are dropped when that session ends
(heartbeat LOST for any cause), when the twin's epoch changes, when the plant leaves NORMAL,
when the mode changes and on every shed. Every decision first drops the expired ones
(``Decision.expired``). SHADOW mode never writes a recommendation: the runtime compares them
with what the PLC holds (``recommendations.shadow``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.core.authority import (
    AuthEvent,
    Authority,
    AuthorityMachine,
    AuthRefusal,
    AuthTransition,
)
from agent.core.heartbeat import HeartbeatMonitor, LinkEvent, LinkState
from agent.core.outputs import OutputPlanner, clamp
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
from agent.model.profile import PLC_REMOTE, Profile, TwinLossPolicy
from agent.model.readings import Quality, Reading

log = logging.getLogger(__name__)

_WORST = {Quality.GOOD: 0, Quality.DEGRADED: 1, Quality.BAD: 2}
_SHED_ACTION = {
    TwinLossPolicy.HOLD: "held",
    TwinLossPolicy.LOCAL: "ramps to its local_value",
    TwinLossPolicy.RELEASE: "released to the PLC program",
    TwinLossPolicy.SAFE: "held (not a loss of the twin) or safe (a hazard)",
}


def _logged(transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
    """Log each transition once at INFO (old, event, new, cause); returns them."""
    for t in transitions:
        log.info("safety %s -> %s on %s (%s)", t.old.name, t.new.name, t.event.name, t.cause)
    return transitions


def _auth_logged(transitions: list[AuthTransition]) -> tuple[AuthTransition, ...]:
    for t in transitions:
        log.info("twin authority %s -> %s on %s (%s)", t.old.name, t.new.name, t.event.name,
                 t.cause)
    return tuple(transitions)


@dataclass(frozen=True)
class Decision:
    """What one call into the controller decided."""

    transitions: tuple[Transition, ...] = ()
    link_events: tuple[LinkEvent, ...] = ()
    writes: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""  # why these writes (for the log)
    expired: tuple[Recommendation, ...] = ()  # recommendations whose validity just ended
    safe: bool = False  # the writes are (part of) the safe set: sent urgently, confirmed
    authority: tuple[AuthTransition, ...] = ()  # twin authority transitions


class Controller:
    """Decides the safety state and the outputs of one plant; see the module docstring."""

    def __init__(self, profile: Profile, mode: Mode = Mode.SHADOW, refresh_s: float = 5.0,
                 max_validity_s: float = 60.0, *, twin: bool = True,
                 now: float = 0.0) -> None:
        """``twin``: a twin is configured (False: a local guard, authority LOCAL for good).
        ``now``: the caller's clock at start (the time of the first LOCAL)."""
        self.profile = profile
        self.voters = {g.name: GroupVoter(g, (profile.signal(s) for s in g.signals))
                       for g in profile.groups}
        self.monitor = HeartbeatMonitor(profile.timing)
        self.machine = SafetyMachine(profile.recovery, mode)
        self.planner = OutputPlanner(profile.writes)
        self.authority = AuthorityMachine(profile.authority, now)
        self.twin = twin
        self._stopping = False
        self._auth_epoch: int | None = None  # the twin epoch authority was last eligible on
        # outputs on their way to local_value after a shed (on_twin_loss = "local"), and
        # when each last stepped; the flag value still to be acknowledged
        self.local_ramps: dict[str, float] = {}
        self._ramp_t: dict[str, float] = {}
        self.flag_wanted: float | None = None
        self._ramp_planned: dict[str, float] = {}  # the step planned last, until acknowledged
        self._outputs_were_safe = False
        self.refresh_s = refresh_s
        self.recommendations = Recommendations(profile.outputs, max_validity_s)
        self.votes: dict[str, Vote] = {}
        self.trips: tuple[TripHit, ...] = ()
        self.readings: dict[str, Reading] = {}
        self.plc_reachable = False
        self.plc_watchdog_ok = False
        self.plc_fell_back = False  # the PLC's comm watchdog latch, as last read
        self.last_written: dict[str, float] = {}
        # what the PLC holds, as last read (observed) or acknowledged: ramps start from it
        self.plc_holds: dict[str, float] = {}
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
             plc_watchdog_ok: bool, plc_fell_back: bool = False) -> Decision:
        """One poll cycle: vote, evaluate trips and the link, step the state machine, plan."""
        self.readings = dict(readings)
        self.plc_reachable = plc_reachable
        self.plc_watchdog_ok = plc_watchdog_ok
        self.plc_fell_back = plc_fell_back
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
        recommendations are accepted from it, and from no other, until it ends. Heartbeat
        epochs are tracked afresh on it, from the hello's (``HeartbeatMonitor.new_session``)."""
        self.monitor.new_session(origin.epoch)
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
        """Recommendations may be written: the twin has authority (REMOTE)."""
        return self.authority.state is Authority.REMOTE and not self.machine.outputs_safe

    @property
    def twin_required(self) -> bool:
        """The twin's supervision is a protection layer now: a twin is configured, active
        mode, and some output says ``on_twin_loss = "safe"``."""
        return (self.twin and self.machine.mode is Mode.ACTIVE
                and self.profile.twin_loss_is_hazard)

    def on_timer(self, now: float) -> Decision:
        """The heartbeat deadline (or the hold-off) passed: re-evaluate now, not next poll."""
        return self._link_changed(self.monitor.poll(now), now, force=True)

    def ack(self, now: float, source: str) -> tuple[Decision, str | None]:
        """An operator's acknowledgement: it resets the plant from RECOVERING; else, while
        the twin's authority is RETURNING, it grants the return. Returns the decision and,
        if refused on both axes, the reasons."""
        result = self.machine.handle(SafetyEvent(EventKind.ACK, f"ack from {source}"), now)
        if not isinstance(result, Refusal):
            transitions = _logged((result,) if isinstance(result, Transition) else ())
            return Decision(transitions=transitions), None
        granted = self.authority.handle(AuthEvent.ACK, f"return granted by ack from {source}",
                                        now)
        if isinstance(granted, AuthRefusal):
            return Decision(), f"{result.reason}; {granted.reason}"
        auth = _auth_logged([granted] if granted is not None else [])
        writes = self._authority_writes(auth, now)
        return Decision(writes=writes, reason="twin authority" if writes else "",
                        authority=auth), None

    def stop(self, now: float) -> Decision:
        """The agent is stopping. Where the twin's supervision is a protection layer
        (:attr:`twin_required`), that is a hazard: FAILSAFE and the full safe set. Otherwise
        authority sheds as on the twin's loss (``release`` hands back, ``hold`` writes
        nothing, a ``local`` ramp cannot run after the agent is gone: the output is left
        where it is); in FAILSAFE the safe set stays, and what is unconfirmed of it is sent
        again. In shadow mode and without a twin nothing is written."""
        self._stopping = True
        if self.twin_required and not self.machine.outputs_safe:
            result = self.machine.handle(SafetyEvent(EventKind.STOP, "agent stopping"), now)
            transitions = _logged((result,) if isinstance(result, Transition) else ())
            return self._safe_decision(transitions, (), self._safe_writes(now, force=True),
                                       "stop")
        if self.machine.outputs_safe:
            return self._safe_decision((), (), dict(self.unconfirmed), "stop")
        auth = _auth_logged(self.authority.step(AuthEvent.SHED, "agent stopping", now))
        writes = self._authority_writes(auth, now)
        for name in self.local_ramps:
            writes.pop(name, None)  # no first step: the ramp could not go on
        for name in sorted(self.local_ramps):
            log.warning("stopping: %s is left at %s, short of its local_value %g (the ramp "
                        "cannot run after the agent stops)", name,
                        self.plc_holds.get(name, "what the PLC holds"),
                        self.local_ramps[name])
        self.local_ramps.clear()
        self._ramp_planned.clear()
        return Decision(writes=writes, reason="twin authority shed: agent stopping"
                        if writes else "", authority=auth)

    def fault(self, now: float, cause: str) -> Decision:
        """The runtime caught an internal error: FAILSAFE and the full safe set."""
        result = self.machine.handle(SafetyEvent(EventKind.FAULT, cause), now)
        transitions = _logged((result,) if isinstance(result, Transition) else ())
        return self._safe_decision(transitions, (), self._safe_writes(now, force=True), "fault")

    def written(self, values: Mapping[str, float], confirmed: Iterable[str] | None = None,
                now: float | None = None) -> None:
        """The runtime reports what the PLC acknowledged (``values``) and, of those, which
        outputs it read back holding exactly that value (``confirmed``; None: the PLC offers
        no read-back, the acknowledgement alone confirms). A safe value is confirmed only
        when the value acknowledged is the one still planned."""
        self.last_written.update(values)
        self.plc_holds.update(values)
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
        times = [t for t in (self.monitor.deadline(), self.machine.holdoff_deadline(),
                             self.authority.holdoff_deadline()) if t is not None]
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
            plc_fell_back=self.plc_fell_back,
            twin_cause=self._twin_cause,
            safe_set_confirmed=not self.unconfirmed,
            twin_required=self.twin_required,
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
        # the safe states as the previous decision left them (an ack or a fault may have
        # moved the machine in between)
        was_safe = self._outputs_were_safe
        self._outputs_were_safe = self.machine.outputs_safe
        self._check_normal(())  # a state change made outside a decision (fault, stop)
        transitions = _logged(tuple(self.machine.assess(self.health(), now)))
        self._check_normal(transitions)
        event, cause = self._authority_event()
        auth = _auth_logged(self.authority.step(event, cause, now))
        self._auth_epoch = self.monitor.epoch
        expired = tuple(self.recommendations.expire(now))
        if self.machine.outputs_safe:
            entering = self._last_safe_write is None  # also after a fault or stop
            self.recommendations.pause()
            self.held = None
            self.local_ramps.clear()
            self._ramp_planned.clear()
            self.flag_wanted = None
            writes = self._safe_writes(now, force=entering)
            reason = "enter safe state" if entering else ("hold safe state" if writes else "")
            return self._safe_decision(transitions, link_events, writes, reason, expired,
                                       auth=auth)
        self.planner.plan(self.machine.state, self.last_written, now)  # keeps dt one tick
        self._last_safe_write = None
        if was_safe and self.profile.plc_remote is not None:
            # the hazard is over: the PLC program runs the plant again (bumpless)
            self.flag_wanted = float(self.profile.plc_remote.local_value)
        writes = self._authority_writes(auth, now)
        reason = "twin authority" if writes else ""
        if self.may_write() and self.held is not None:
            recs = self.recommendations.targets(now, self.held)
            if recs:
                writes.update(recs)
                reason = "recommendation"
        else:
            self.recommendations.pause()
        return Decision(transitions, link_events, writes, reason, expired, authority=auth)

    def _authority_event(self) -> tuple[AuthEvent, str]:
        """The one authority event this moment stands for; the first reason wins."""
        m = self.machine
        if self._stopping:
            return AuthEvent.SHED, "agent stopping"
        if not self.twin:
            return AuthEvent.SHED, "no twin configured"
        if m.mode is not Mode.ACTIVE:
            return AuthEvent.SHED, f"{m.mode.value} mode"
        if m.state is not State.NORMAL:
            return AuthEvent.SHED, f"plant {m.state.name}: {m.cause}"
        if self.monitor.state is LinkState.LOST:
            return AuthEvent.SHED, f"twin LOST: {self._twin_cause}"
        epoch = self.monitor.epoch
        if self._auth_epoch is not None and epoch != self._auth_epoch:
            return AuthEvent.SHED, f"twin session changed: epoch {self._auth_epoch} -> {epoch}"
        if self.monitor.state is LinkState.LATE:
            return AuthEvent.LATE, "twin heartbeat LATE"
        return AuthEvent.ELIGIBLE, "twin ALIVE, active mode, plant NORMAL"

    def _authority_writes(self, auth: tuple[AuthTransition, ...], now: float) -> dict[str, float]:
        """Apply what authority transitions mean for the outputs; return what to write now
        (the flag until acknowledged, the next step of every local ramp)."""
        remote = self.profile.plc_remote
        for tr in auth:
            if tr.old is Authority.REMOTE:
                self._shed_outputs(tr.cause, now)
            if tr.new is Authority.REMOTE:
                self.local_ramps.clear()
                self._ramp_planned.clear()
                if remote is not None:
                    self.flag_wanted = float(remote.remote_value)
                self.needs_seed = True  # the runtime reads what the PLC holds: no bump
                self.held = None
        writes: dict[str, float] = {}
        if self.flag_wanted is not None:
            if self.last_written.get(PLC_REMOTE) == self.flag_wanted:
                self.flag_wanted = None
            else:
                writes[PLC_REMOTE] = self.flag_wanted
        for name, target in list(self.local_ramps.items()):
            last = self.plc_holds.get(name)
            if last is not None and self.profile.output(name).same_raw(last, target):
                del self.local_ramps[name]
                self._ramp_planned.pop(name, None)
                continue
            planned = self._ramp_planned.get(name)
            if planned is not None and planned != last:
                writes[name] = planned  # not acknowledged yet: the same step again
                continue
            dt = min(max(now - self._ramp_t.get(name, now), 0.0), self.planner.max_dt_s)
            if dt <= 0.0:
                continue  # a second decision at the same instant: no step to take
            self._ramp_t[name] = now
            writes[name] = self._ramp_planned[name] = clamp(
                self.profile.output(name), target, last, dt)
        return writes

    def _shed_outputs(self, cause: str, now: float) -> None:
        """REMOTE -> LOCAL: what each output does (its ``on_twin_loss``)."""
        self.recommendations.drop(DropCause.AUTHORITY_SHED, cause)
        held = self.held if self.held is not None else self.plc_holds
        self.held = None
        self.needs_seed = False
        releases = []
        for o in self.profile.outputs:
            if o.on_twin_loss is TwinLossPolicy.LOCAL and o.local_value is not None:
                self.local_ramps[o.name] = o.local_value
                # the first step is one poll period's worth, from what the PLC holds
                self._ramp_t[o.name] = now - self.profile.timing.poll_period_s
                if o.name in held:
                    self.plc_holds[o.name] = held[o.name]
            elif o.on_twin_loss is TwinLossPolicy.RELEASE:
                releases.append(o.name)
        remote = self.profile.plc_remote
        if releases and remote is not None:
            self.flag_wanted = float(remote.local_value)
        log.info("twin authority shed (%s): %s", cause, ", ".join(
            f"{o.name} {_SHED_ACTION[o.on_twin_loss]}" for o in self.profile.outputs))

    def _check_normal(self, transitions: tuple[Transition, ...]) -> None:
        """Drop the live recommendations if the plant left NORMAL since the last check."""
        left = [t for t in transitions if t.old is State.NORMAL]
        normal = self.machine.state is State.NORMAL
        if left or (self._was_normal and not normal):
            why = (f"{left[0].old.name} -> {left[0].new.name} ({left[0].cause})" if left
                   else f"the plant is {self.machine.state.name}")
            self.recommendations.drop(DropCause.LEFT_NORMAL, why)
        self._was_normal = normal

    def observed(self, actual: Mapping[str, float | None]) -> None:
        """What the PLC's outputs hold, as the runtime read them (None: unreadable): a
        ``local`` ramp starts from there, not from a write the agent made long ago (a PLC
        program or an operator may have moved them since). The safe-state policies still
        start from the agent's own last write (``outputs.OutputPlanner``)."""
        self.plc_holds.update({k: v for k, v in actual.items() if v is not None})

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
                       expired: tuple[Recommendation, ...] = (), *,
                       auth: tuple[AuthTransition, ...] = ()) -> Decision:
        return Decision(transitions, link_events, writes, reason, expired, safe=bool(writes),
                        authority=auth)
