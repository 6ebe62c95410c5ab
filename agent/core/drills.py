"""The fault drills the decision core can rehearse: each one a short script of phases (sans-IO).

A scenario is built for one profile (:func:`build`) as a tuple of :class:`Phase`: what the
twin, the sensors and the PLC do from the phase's start on, and for how long at least. The
engine (``agent.core.rehearsal``) plays the phases in order on a copy of the controller,
feeding the events that world would cause, and ends each phase once the agent has settled
(nothing changed for a few polls) after its minimum duration. The last phase is always the
fault cleared: the recovery, with what the operator has to do.

=============== ==========================================================================
twin-outage     the twin's heartbeats stop (the link stays up, silent) past
                ``heartbeat_timeout_s``; then they resume
twin-unhealthy  the twin keeps sending heartbeats with ``healthy: false``; then healthy again
sensor-fail     one channel of a group reads out of its range; then a second of the same
                group stops answering
sensor-disagree one channel of a group drifts ``2 x discrepancy`` from its peers, to the
                unsafe side, at half the group's ``max_rate``
plc-silent      the PLC stops answering (every read and write times out) past its comm
                watchdog's ``expected_timeout_ms``
python-hang     the agent's loop stops for ``2 x watchdog_deadline_s``: the native watchdog
                fires, then Python runs again
trip            a trip's group rises (falls) at half its ``max_rate`` past the trip's limit
=============== ==========================================================================

Channels are named by the profile; ``target`` picks the group (sensor-*) or the trip (trip),
else the first that fits. ``DrillRefused`` (``agent.model.errors``, a ValueError) says why a
scenario cannot be played on a profile (no trip, no group of two channels, an unknown
target).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.model.errors import DrillRefused
from agent.model.profile import Group, Profile, SafeDirection, TripCondition

SETTLE_POLLS = 3  # a phase ends after this many polls with nothing new (past its minimum)


class TwinDoes(enum.Enum):
    """What the simulated twin does during a phase."""

    HEARTBEATS = "healthy heartbeats"  # as before the fault (only if it was heard)
    SILENT = "silent"
    UNHEALTHY = "unhealthy heartbeats"


@dataclass(frozen=True)
class ChannelFault:
    """How one signal reads during a phase: ``value`` None is a failed read (``error``);
    else the reading moves from where it was to ``value`` (``offset``: to where it was plus
    ``value``) at ``rate`` units/s (None: at once). The engine holds a phase open while a
    channel is still on its way."""

    value: float | None
    error: str = ""
    rate: float | None = None
    offset: bool = False


@dataclass(frozen=True)
class Phase:
    """One part of a scenario: the world from ``text`` on, for at least ``min_s``."""

    text: str  # what happens now ("temp_a reads 297 degC (out of [-20, 250])")
    min_s: float
    twin: TwinDoes = TwinDoes.HEARTBEATS
    channels: Mapping[str, ChannelFault] = field(default_factory=dict)
    plc_answers: bool = True
    hang_s: float = 0.0  # the loop stops for this long at the phase's start (python-hang)
    recovery: bool = False  # the fault is cleared: the operator may ack


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    build: Callable[[Profile, str | None], tuple[Phase, ...]]


def _settle(profile: Profile) -> float:
    return SETTLE_POLLS * profile.timing.poll_period_s


def _group(profile: Profile, target: str | None, channels: int) -> Group:
    if target is not None:
        try:
            group = profile.group(target)
        except KeyError:
            names = ", ".join(g.name for g in profile.groups) or "none"
            raise DrillRefused(f"no group {target!r} in the profile (groups: {names})") \
                from None
        if len(group.signals) < channels:
            raise DrillRefused(f"group {target!r} has {len(group.signals)} channel(s); this "
                               f"drill needs {channels}")
        return group
    for group in profile.groups:
        if len(group.signals) >= channels:
            return group
    raise DrillRefused(f"the profile has no redundancy group of {channels} or more channels")


def _recovered(text: str, profile: Profile) -> Phase:
    return Phase(text, min_s=_settle(profile), recovery=True)


def twin_outage(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    t = profile.timing
    return (
        Phase(f"the twin's last heartbeat; then silence (LATE after {t.heartbeat_late_s:g} s, "
              f"LOST after {t.heartbeat_timeout_s:g} s)", t.heartbeat_timeout_s + _settle(profile),
              twin=TwinDoes.SILENT),
        _recovered("the twin's heartbeats resume (the same session)", profile),
    )


def twin_unhealthy(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    return (
        Phase("the twin reports itself unhealthy (heartbeats with healthy: false)",
              _settle(profile), twin=TwinDoes.UNHEALTHY),
        _recovered("the twin reports healthy again", profile),
    )


def sensor_fail(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    group = _group(profile, target, 2)
    first, second = group.signals[0], group.signals[1]
    sig = profile.signal(first)
    wild = sig.high + (sig.high - sig.low) * 0.1
    settle = group.max_age_s + _settle(profile)
    return (
        Phase(f"{first} reads {wild:g} {sig.unit} (out of its range [{sig.low:g}, "
              f"{sig.high:g}]): a broken wire", settle,
              channels={first: ChannelFault(wild)}),
        Phase(f"{second} stops answering as well (its reads time out)", settle,
              channels={first: ChannelFault(wild),
                        second: ChannelFault(None, "drill: no reply (timeout)")}),
        _recovered(f"{first} and {second} repaired: both read as before", profile),
    )


def sensor_disagree(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    group = _group(profile, target, 2)
    channel = group.signals[-1]
    sig = profile.signal(channel)
    sign = -1.0 if group.safe_direction is SafeDirection.HIGH else 1.0
    offset = sign * 2 * group.discrepancy
    rate = None if group.max_rate is None else group.max_rate / 2
    return (
        Phase(f"{channel} drifts {offset:+g} {sig.unit} from where it reads (2 x the "
              f"group's discrepancy {group.discrepancy:g}, to the unsafe side, "
              f"{'at once' if rate is None else f'at {rate:g} {sig.unit}/s'})",
              _settle(profile), channels={channel: ChannelFault(offset, rate=rate,
                                                                offset=True)}),
        _recovered(f"{channel} recalibrated: it reads as before", profile),
    )


def plc_silent(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    timeout = profile.plc_watchdog.expected_timeout_ms / 1000
    return (
        Phase("the PLC stops answering: every read and write times out",
              timeout + _settle(profile), plc_answers=False),
        _recovered("the PLC answers again", profile),
    )


def python_hang(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    deadline = profile.timing.watchdog_deadline_s
    hang = 2 * deadline
    return (
        Phase(f"the agent's Python loop stops (GIL held, deadlock) for {hang:g} s",
              hang + _settle(profile), hang_s=hang),
        _recovered("the loop runs again; the plant is healthy", profile),
    )


def trip(profile: Profile, target: str | None) -> tuple[Phase, ...]:
    trips = [t for t in profile.trips if t.condition is not TripCondition.BAD]
    if target is not None:
        trips = [t for t in profile.trips if t.name == target]
        if not trips:
            names = ", ".join(t.name for t in profile.trips) or "none"
            raise DrillRefused(f"no trip {target!r} in the profile (trips: {names})")
    if not trips:
        raise DrillRefused("the profile has no trip on a limit ([[trips]] above/below)")
    rule = trips[0]
    group = profile.group(rule.group)
    if rule.condition is TripCondition.BAD or rule.limit is None:
        faults = {s: ChannelFault(None, "drill: no reply (timeout)") for s in group.signals}
        return (
            Phase(f"every channel of {group.name} stops answering (trip {rule.name}: "
                  f"{group.name} BAD)", group.max_age_s + _settle(profile), channels=faults),
            _recovered(f"{group.name} answers again", profile),
        )
    above = rule.condition is TripCondition.ABOVE
    faults = {}
    for name in group.signals:
        sig = profile.signal(name)
        margin = max(group.discrepancy, (sig.high - sig.low) * 0.01)
        value = min(rule.limit + margin, sig.high) if above else max(rule.limit - margin,
                                                                     sig.low)
        rate = None if group.max_rate is None else group.max_rate / 2
        faults[name] = ChannelFault(value, rate=rate)
    unit = profile.signal(group.signals[0]).unit
    first = faults[group.signals[0]]
    rate_text = "at once" if first.rate is None else f"at {first.rate:g} {unit}/s"
    return (
        Phase(f"{group.name} {'rises' if above else 'falls'} {rate_text} to "
              f"{first.value:g} {unit}, past trip {rule.name}'s limit {rule.limit:g}",
              _settle(profile), channels=faults),
        _recovered(f"{group.name} back where it was", profile),
    )


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("twin-outage", "the twin's heartbeats stop past the heartbeat timeout, then "
             "resume", twin_outage),
    Scenario("twin-unhealthy", "the twin says it is unhealthy, then healthy again",
             twin_unhealthy),
    Scenario("sensor-fail", "one channel of a redundancy group fails, then a second of the "
             "same group", sensor_fail),
    Scenario("sensor-disagree", "one channel drifts away from its peers by twice the "
             "group's discrepancy", sensor_disagree),
    Scenario("plc-silent", "the PLC stops answering past its communication watchdog's "
             "timeout, then answers again", plc_silent),
    Scenario("python-hang", "the agent's loop hangs past the native watchdog's deadline",
             python_hang),
    Scenario("trip", "a trip's group moves past its limit (the first trip, or --target)",
             trip),
)}


def build(name: str, profile: Profile, target: str | None = None) -> tuple[Phase, ...]:
    """The phases of scenario ``name`` for ``profile``; DrillRefused for an unknown name or
    when it cannot be played on this profile."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise DrillRefused(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}")
    return scenario.build(profile, target)
