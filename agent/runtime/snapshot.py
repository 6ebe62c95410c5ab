"""What ``twinguard status`` shows, built on the agent's loop: the snapshot and recent events.

:func:`build_snapshot` makes a :class:`~agent.model.status.StatusSnapshot` from the
controller and the adapters' counters (pure: no I/O, no clock); :class:`EventRing` keeps the
last :data:`~agent.model.status.EVENTS_KEPT` transitions and events for it. The status
socket (``agent.io.status_socket``) serves the snapshot.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from typing import TYPE_CHECKING, TypeVar

import agent
from agent.core.authority import Authority, AuthorityMachine
from agent.core.safety import State
from agent.model.mode import Mode
from agent.model.policy import TelemetryPolicy
from agent.model.profile import RecoveryPolicy, ReturnPolicy
from agent.model.status import (
    EVENTS_KEPT,
    SCHEMA,
    AuthorityStatus,
    ClientStats,
    EventEntry,
    ExcludedChannel,
    LinkStatus,
    LoopStatus,
    OutputStatus,
    PlcStatus,
    PolicyRuleStatus,
    RealtimeStatus,
    RecommendationCounts,
    RecommendationDrops,
    RecommendationStatus,
    RefusedCount,
    SafeSetStatus,
    SpoolStatus,
    StatusSnapshot,
    TelemetryPolicyStatus,
    TripStatus,
    TwinStatus,
    VoteStatus,
    WatchdogStatus,
)

_T = TypeVar("_T")

if TYPE_CHECKING:
    from agent.core.controller import Controller, Decision
    from agent.core.heartbeat import LinkEvent
    from agent.core.minimise import Minimiser
    from agent.core.safety import Transition
    from agent.io.twin.settings import LinkCounters
    from agent.model.spool import Backlog
    from firmware_bridge.results import WatchdogStats


# --- building a snapshot ---------------------------------------------------------------------

def build_snapshot(
    controller: Controller, *, now: float, wall: float, started: float,
    plc: ClientStats, loop: LoopStatus, watchdog: WatchdogStats | None,
    watchdog_kind: str, backlog: Backlog | None, config_version: int, events: EventRing,
    twin_connected: bool | None,
    plc_watchdog: tuple[int | None, bool | None] = (None, None),
    link: LinkCounters | None = None,
    realtime: RealtimeStatus | None = None,
    policy: TelemetryPolicyStatus | None = None,
) -> StatusSnapshot:
    """A snapshot from the controller and the adapters' counters (pure: no I/O, no clock).

    ``now`` and ``started`` are monotonic seconds (the loop's clock), ``wall`` Unix time.
    Recommendations: the live ones in the profile's output order, with the seconds of
    validity left at ``now`` (one whose validity ended at or before ``now`` but was not
    dropped yet is left out, as the next decision drops it); in shadow mode each carries
    its latest comparison with what the PLC holds, if that comparison is of this very
    recommendation (same id). ``link`` is the twin link's counters (None: no twin);
    ``realtime`` what the kernel grants (read back by ``agent.io.realtime``: the caller's I/O).
    """
    machine, monitor = controller.machine, controller.monitor
    deadline = machine.holdoff_deadline()
    counters = monitor.counters
    last_seen = monitor.last_seen
    votes = tuple(
        VoteStatus(v.group, v.value, v.quality.value, v.used,
                   tuple(ExcludedChannel(e.channel, e.reason.value, e.detail)
                         for e in v.excluded),
                   v.reason, max(0.0, now - v.t))
        for v in controller.votes.values())
    book = controller.recommendations
    live, lines = book.live(), book.divergences()
    shadow = machine.mode is Mode.SHADOW
    recommendations = []
    for out in controller.profile.outputs:
        rec = live.get(out.name)
        if rec is None or rec.expires <= now:
            continue
        line = lines.get(out.name) if shadow else None
        if line is not None and line.id != rec.id:
            line = None  # a comparison of the recommendation this one replaced
        recommendations.append(RecommendationStatus(
            rec.id, rec.output, rec.value, None if line is None else line.actual,
            None if line is None else line.divergence, rec.valid_s, rec.expires - now))
    wd = None
    if watchdog is not None:
        wd = WatchdogStatus(
            watchdog_kind, watchdog["armed"], watchdog["fired"], watchdog["kicks"],
            watchdog["fires"], watchdog["feeds"], watchdog["feed_errors"],
            watchdog["worst_lateness_ns"] / 1e6, watchdog["last_lateness_ns"] / 1e6)
    return StatusSnapshot(
        schema=SCHEMA, version=agent.__version__, pid=os.getpid(), wall=wall,
        uptime_s=max(0.0, now - started), profile=controller.profile.source,
        state=machine.state.value, mode=machine.mode.value, cause=machine.cause,
        waiting_for_ack=(machine.state is State.RECOVERING
                         and controller.profile.recovery.policy is RecoveryPolicy.MANUAL),
        holdoff_left_s=None if deadline is None else max(0.0, deadline - now),
        twin=TwinStatus(
            monitor.state.value, controller.health().twin_cause, twin_connected,
            monitor.epoch, None if last_seen is None else max(0.0, now - last_seen),
            counters.accepted, counters.duplicates, counters.out_of_order,
            counters.stale_epoch, counters.unhealthy, counters.after_bye,
            None if link is None else _link_status(link)),
        votes=votes,
        trips=tuple(TripStatus(t.name, t.group, t.cause) for t in controller.trips),
        outputs=tuple(OutputStatus(o.name, controller.last_written.get(o.name))
                      for o in controller.profile.writes),
        recommendations=tuple(recommendations),
        recommendation_counts=RecommendationCounts(
            book.accepted, book.rejected, book.expired,
            RecommendationDrops(**{cause.value: n for cause, n in book.dropped.items()})),
        plc=PlcStatus.of(plc, reachable=controller.plc_reachable,
                         watchdog_ok=controller.plc_watchdog_ok, watchdog_read=plc_watchdog,
                         watchdog_expected_ms=controller.profile.plc_watchdog.expected_timeout_ms),
        loop=loop,
        watchdog=wd,
        spool=None if backlog is None else SpoolStatus(
            backlog.count, backlog.first_seq, backlog.last_seq, backlog.bytes),
        config_version=config_version,
        events=events.entries(),
        safe_set=SafeSetStatus(
            not controller.unconfirmed, tuple(sorted(controller.unconfirmed)),
            None if controller.unconfirmed_since is None
            else wall - max(0.0, now - controller.unconfirmed_since)),
        authority=_authority(controller.authority, now, wall),
        realtime=realtime,
        telemetry_policy=policy,
    )


def policy_status(policy: TelemetryPolicy, minimiser: Minimiser | None) -> TelemetryPolicyStatus:
    """The status view of ``policy``; ``minimiser`` None: telemetry is off."""
    rules = tuple(PolicyRuleStatus(name, policy.rule(name).action.value,
                                   policy.rule(name).window_s, policy.rule(name).step)
                  for name in policy.minimised)
    return TelemetryPolicyStatus(
        policy.header()["id"], policy.device.value,
        "" if minimiser is None else minimiser.device, rules,
        0 if minimiser is None else minimiser.windows_open)


def _link_status(link: LinkCounters) -> LinkStatus:
    """The link's counters as status; what it refused, by reason, in a stable order."""
    refused = tuple(RefusedCount(k, v) for k, v in sorted(link.refused.items()))
    return dataclasses.replace(copy_fields(LinkStatus, link), refused=refused)


def copy_fields(cls: type[_T], source: object) -> _T:
    """A ``cls`` (a dataclass) from the attributes of ``source`` that it has fields for."""
    return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                  if hasattr(source, f.name)})


def _authority(auth: AuthorityMachine, now: float, wall: float) -> AuthorityStatus:
    deadline = auth.holdoff_deadline()
    shed_at = auth.shed_at
    return AuthorityStatus(
        state=auth.state.value, shed_reason=auth.shed_reason,
        shed_since_wall=None if shed_at is None else wall - max(0.0, now - shed_at),
        return_policy=auth.settings.return_policy.value,
        holdoff_left_s=None if deadline is None else max(0.0, deadline - now),
        waiting_for_ack=(auth.state is Authority.RETURNING
                         and auth.settings.return_policy is ReturnPolicy.MANUAL))


# --- recent events ---------------------------------------------------------------------

class EventRing:
    """The last ``size`` transitions and events, with wall time, for ``twinguard status``."""

    def __init__(self, size: int = EVENTS_KEPT) -> None:
        self._ring: deque[EventEntry] = deque(maxlen=size)

    def add(self, wall: float, kind: str, text: str) -> None:
        self._ring.append(EventEntry(wall, kind, text))

    def transition(self, tr: Transition, wall: float) -> None:
        self.add(wall, "transition",
                 f"{tr.old.name} -> {tr.new.name} on {tr.event.name}: {tr.cause}")

    def link(self, ev: LinkEvent, wall: float) -> None:
        self.add(wall, "link", f"twin {ev.old.name} -> {ev.new.name}: {ev.cause}")

    def decision(self, decision: Decision, wall: float) -> None:
        """Record a controller decision's link events, safety and authority transitions,
        in that order."""
        for ev in decision.link_events:
            self.link(ev, wall)
        for tr in decision.transitions:
            self.transition(tr, wall)
        for at in decision.authority:
            self.add(wall, "authority",
                     f"twin authority {at.old.name} -> {at.new.name} on {at.event.name}: "
                     f"{at.cause}")

    def entries(self) -> tuple[EventEntry, ...]:
        return tuple(self._ring)
