"""Local trip rules: votes in, trip hits out (sans-IO, stateless).

A trip forces the safe state whatever the twin says. The rules, in doubt toward the trip:

=========  ==========================================================================
ABOVE      voted value > limit
BELOW      voted value < limit
BAD        the group's vote is BAD
(value)    an ABOVE/BELOW limit that cannot be evaluated (vote BAD, value None or not
           finite, no vote at all for the group, no limit configured) counts as tripped
(group)    every *required* group whose vote is BAD (or missing) is a hit of its own,
           named ``group <name> BAD``, cause "group temperature BAD: temp_a out of range,
           temp_b stale"
=========  ==========================================================================

:func:`evaluate` never raises on the votes it is given: whatever is missing or unreadable
trips. Hits come back in profile order: the trips first, then the required groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.core.voting import Vote
from agent.model.profile import Group, Trip, TripCondition
from agent.model.readings import Quality


@dataclass(frozen=True)
class TripHit:
    """One rule that demands the safe state now: which rule, which group, and why."""

    name: str
    group: str
    cause: str

    def __str__(self) -> str:
        return self.cause


def evaluate(
    trips: Iterable[Trip], groups: Iterable[Group], votes: Mapping[str, Vote]
) -> tuple[TripHit, ...]:
    """All trips and required-group failures present in ``votes`` (keyed by group name)."""
    hits: list[TripHit] = []
    for trip in trips:
        cause = _check(trip, votes.get(trip.group))
        if cause is not None:
            hits.append(TripHit(trip.name, trip.group, f"{trip.name}: {cause}"))
    for group in groups:
        if not group.required:
            continue
        vote = votes.get(group.name)
        if vote is None or vote.quality is Quality.BAD:
            hits.append(TripHit(f"group {group.name} BAD", group.name, bad_cause(group.name, vote)))
    return tuple(hits)


def bad_cause(group: str, vote: Vote | None) -> str:
    """Why a group's vote is BAD, for people: "group temperature BAD: temp_a out of range"."""
    if vote is None:
        return f"group {group} BAD: no vote"
    why = ", ".join(str(e) for e in vote.excluded) or vote.reason or "no healthy channel"
    return f"group {group} BAD: {why}"


def _check(trip: Trip, vote: Vote | None) -> str | None:
    """The cause if ``trip`` is hit by ``vote``, else None."""
    if vote is None:
        return f"no vote for group {trip.group}"
    if trip.condition is TripCondition.BAD:
        return bad_cause(trip.group, vote) if vote.quality is Quality.BAD else None
    value = vote.value
    if vote.quality is Quality.BAD or value is None or not math.isfinite(value):
        return f"{trip.group} cannot be evaluated ({bad_cause(trip.group, vote)})"
    if trip.limit is None:
        return f"no limit configured for condition {trip.condition.value}"
    if trip.condition is TripCondition.ABOVE and value > trip.limit:
        return f"{trip.group} {value:g} > {trip.limit:g}"
    if trip.condition is TripCondition.BELOW and value < trip.limit:
        return f"{trip.group} {value:g} < {trip.limit:g}"
    return None
