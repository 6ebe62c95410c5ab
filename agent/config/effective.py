"""The effective profile: the hardware profile with a configuration's ``[overrides]`` applied.

``effective_profile(profile, overrides, source)`` returns a new frozen ``Profile`` or raises
``ConfigError`` listing every problem, each at the key path of the override
(``overrides.outputs.heater_power.maximum``), in the style of the profile parser.

Cross-checks (an override may only tighten or retune within what the hardware allows):

- names exist in the profile (``overrides.outputs.NAME``, ``trips.NAME``, ``groups.NAME``);
- outputs: ``minimum``/``maximum`` only narrow the profile's range (profile.min <= minimum <
  maximum <= profile.max); ``max_rate`` > 0 and not above the profile's (if it has one);
  the safe value (overridden or not) lies within the effective limits;
- trips: ``limit`` strictly inside the group's plausible range (lowest signal low ..
  highest signal high); a ``bad`` trip has no limit;
- groups: ``discrepancy``, ``max_rate``, ``stuck_after_s`` > 0; ``max_age_s`` >= the poll
  period;
- timing still coherent: ``poll_period_s < watchdog_deadline_s < PLC watchdog timeout``,
  ``poll_period_s < heartbeat_timeout_s``, ``heartbeat_late_s < heartbeat_timeout_s``,
  all > 0.

Pure: no I/O. Anything other than ``ConfigError`` raised from here is a bug.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from agent.config.agentconfig import Overrides
from agent.config.fields import Problems, suggest
from agent.model.errors import ConfigError
from agent.model.profile import Group, Output, Profile, Timing, Trip, TripCondition

__all__ = ["effective_profile"]


def _timing(out: Problems, profile: Profile, values: Mapping[str, float]) -> Timing:
    changes: dict[str, Any] = dict(values)
    t = dataclasses.replace(profile.timing, **changes)
    at = "overrides.timing."
    for key in ("poll_period_s", "heartbeat_timeout_s", "heartbeat_late_s",
                "watchdog_deadline_s"):
        if not getattr(t, key) > 0:
            out.add(at + key, f"must be greater than 0, got {getattr(t, key):g}")
    plc_s = profile.plc_watchdog.expected_timeout_ms / 1000.0
    if not t.poll_period_s < t.watchdog_deadline_s:
        out.add(at + "watchdog_deadline_s", f"{t.watchdog_deadline_s:g} s must be above the "
                                            f"poll period ({t.poll_period_s:g} s)")
    if not t.watchdog_deadline_s < plc_s:
        out.add(at + "watchdog_deadline_s", f"{t.watchdog_deadline_s:g} s must be below the "
                                            f"PLC watchdog timeout ({plc_s:g} s)")
    if not t.poll_period_s < t.heartbeat_timeout_s:
        out.add(at + "heartbeat_timeout_s", f"{t.heartbeat_timeout_s:g} s must be above the "
                                            f"poll period ({t.poll_period_s:g} s)")
    if not t.heartbeat_late_s < t.heartbeat_timeout_s:
        out.add(at + "heartbeat_late_s", f"{t.heartbeat_late_s:g} s must be below "
                                         f"heartbeat_timeout_s ({t.heartbeat_timeout_s:g} s)")
    return t


def _output(out: Problems, o: Output, values: Mapping[str, float]) -> Output:
    at = f"overrides.outputs.{o.name}."
    changes: dict[str, Any] = dict(values)
    new = dataclasses.replace(o, **changes)
    if new.minimum < o.minimum:
        out.add(at + "minimum", f"{new.minimum:g} is below the profile's minimum "
                                f"({o.minimum:g}): limits may only narrow")
    if new.maximum > o.maximum:
        out.add(at + "maximum", f"{new.maximum:g} is above the profile's maximum "
                                f"({o.maximum:g}): limits may only narrow")
    if not new.minimum < new.maximum:
        out.add(at + "maximum", f"{new.maximum:g} must be above minimum ({new.minimum:g})")
    if "max_rate" in values:
        rate = values["max_rate"]
        if not rate > 0:
            out.add(at + "max_rate", f"must be greater than 0, got {rate:g}")
        elif o.max_rate is not None and rate > o.max_rate:
            out.add(at + "max_rate", f"{rate:g} is above the profile's max_rate "
                                     f"({o.max_rate:g}): limits may only narrow")
    if not new.minimum <= new.safe_value <= new.maximum:
        key = "safe_value" if "safe_value" in values else "minimum" if "minimum" in values \
            else "maximum"
        out.add(at + key, f"safe value {new.safe_value:g} must lie within the limits "
                          f"[{new.minimum:g}, {new.maximum:g}]")
    return new


def _trip(out: Problems, profile: Profile, trip: Trip, values: Mapping[str, float]) -> Trip:
    at = f"overrides.trips.{trip.name}.limit"
    if "limit" not in values:
        return trip
    if trip.condition is TripCondition.BAD:
        out.add(at, "a 'bad' trip has no limit")
        return trip
    limit = values["limit"]
    group = profile.group(trip.group)
    low = min(profile.signal(s).low for s in group.signals)
    high = max(profile.signal(s).high for s in group.signals)
    if not low < limit < high:
        out.add(at, f"{limit:g} is outside the plausible range of group {group.name!r} "
                    f"({low:g}..{high:g}): the trip could never act or always would")
    return dataclasses.replace(trip, limit=limit)


def _group(out: Problems, timing: Timing, g: Group, values: Mapping[str, float]) -> Group:
    at = f"overrides.groups.{g.name}."
    for key in ("discrepancy", "max_rate", "stuck_after_s"):
        if key in values and not values[key] > 0:
            out.add(at + key, f"must be greater than 0, got {values[key]:g}")
    changes: dict[str, Any] = dict(values)
    new = dataclasses.replace(g, **changes)
    if new.max_age_s < timing.poll_period_s:
        out.add(at + "max_age_s", f"{new.max_age_s:g} s is shorter than the poll period "
                                  f"({timing.poll_period_s:g} s): every reading would be stale")
    return new


def _known(out: Problems, section: str, names: Mapping[str, object], known: list[str]) -> bool:
    ok = True
    for name in names:
        if name not in known:
            out.add(f"overrides.{section}.{name}",
                    f"the profile has no {section[:-1]} {name!r}{suggest(name, known)}")
            ok = False
    return ok


def effective_profile(profile: Profile, overrides: Overrides, source: str) -> Profile:
    """``profile`` with ``overrides`` applied; ``ConfigError`` (every problem) if they do not
    fit the profile. No overrides returns ``profile`` itself."""
    if not (overrides.timing or overrides.outputs or overrides.trips or overrides.groups):
        return profile
    out = Problems(source)
    timing = _timing(out, profile, overrides.timing)
    outputs, trips, groups = profile.outputs, profile.trips, profile.groups
    if _known(out, "outputs", overrides.outputs, [o.name for o in profile.outputs]):
        outputs = tuple(_output(out, o, overrides.outputs.get(o.name, {}))
                        for o in profile.outputs)
    if _known(out, "trips", overrides.trips, [t.name for t in profile.trips]):
        trips = tuple(_trip(out, profile, t, overrides.trips.get(t.name, {}))
                      for t in profile.trips)
    if _known(out, "groups", overrides.groups, [g.name for g in profile.groups]):
        groups = tuple(_group(out, timing, g, overrides.groups.get(g.name, {}))
                       for g in profile.groups)
    if out.items:
        raise ConfigError(out.items)
    return dataclasses.replace(profile, timing=timing, outputs=outputs, trips=trips,
                               groups=groups)
