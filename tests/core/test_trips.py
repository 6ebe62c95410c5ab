"""Trips: limits on voted values, BAD conditions, required groups, and doubt that trips."""

from __future__ import annotations

import math

import pytest

from agent.core.trips import TripHit, evaluate
from agent.core.voting import Exclusion, ExclusionReason, Vote
from agent.model.profile import Group, SafeDirection, Trip, TripCondition, Voting
from agent.model.readings import Quality

pytestmark = pytest.mark.timeout(30)


def grp(name: str, required: bool = True) -> Group:
    return Group(
        name=name,
        signals=(f"{name}_a", f"{name}_b", f"{name}_c"),
        voting=Voting(2, 3),
        min_healthy=2,
        safe_direction=SafeDirection.HIGH,
        discrepancy=3.0,
        max_age_s=1.0,
        max_rate=None,
        stuck_after_s=None,
        required=required,
    )


def vote(group: str, value: float | None, quality: Quality, *excluded: Exclusion) -> Vote:
    return Vote(group, value, quality, (), tuple(excluded), 1.0)


OVERTEMP = Trip("overtemperature", "temperature", TripCondition.ABOVE, 95.0)
UNDERTEMP = Trip("undertemperature", "temperature", TripCondition.BELOW, 5.0)
TEMP_BAD = Trip("temperature lost", "temperature", TripCondition.BAD, None)


@pytest.mark.parametrize(
    ("trip", "value", "quality", "hit"),
    [
        (OVERTEMP, 94.9, Quality.GOOD, False),
        (OVERTEMP, 95.0, Quality.GOOD, False),
        (OVERTEMP, 95.1, Quality.GOOD, True),
        (OVERTEMP, 96.0, Quality.DEGRADED, True),
        (OVERTEMP, None, Quality.BAD, True),  # cannot evaluate: in doubt, trip
        (OVERTEMP, math.nan, Quality.GOOD, True),
        (UNDERTEMP, 5.0, Quality.GOOD, False),
        (UNDERTEMP, 4.9, Quality.GOOD, True),
        (UNDERTEMP, None, Quality.BAD, True),
        (TEMP_BAD, 50.0, Quality.GOOD, False),
        (TEMP_BAD, 50.0, Quality.DEGRADED, False),
        (TEMP_BAD, None, Quality.BAD, True),
    ],
)
def test_trip_table(trip: Trip, value: float | None, quality: Quality, hit: bool) -> None:
    votes = {"temperature": vote("temperature", value, quality)}
    hits = evaluate([trip], [grp("temperature", required=False)], votes)
    assert bool(hits) is hit
    if hit:
        assert hits[0].name == trip.name
        assert hits[0].group == "temperature"
        assert hits[0].cause.startswith(f"{trip.name}: ")


def test_limit_cause_names_value_and_limit() -> None:
    [hit] = evaluate([OVERTEMP], [], {"temperature": vote("temperature", 96.5, Quality.GOOD)})
    assert hit.cause == "overtemperature: temperature 96.5 > 95"


def test_required_group_bad_is_a_trip_of_its_own() -> None:
    votes = {
        "temperature": vote(
            "temperature",
            None,
            Quality.BAD,
            Exclusion("temp_a", ExclusionReason.RANGE, "300 not in [-20, 250]"),
            Exclusion("temp_b", ExclusionReason.STALE, "2.000 s old > 1 s"),
        )
    }
    hits = evaluate([], [grp("temperature")], votes)
    assert hits == (
        TripHit(
            "group temperature BAD",
            "temperature",
            "group temperature BAD: temp_a out of range, temp_b stale",
        ),
    )


def test_bad_group_without_exclusions_says_why() -> None:
    v = Vote("temperature", None, Quality.BAD, ("a", "b"), (), 1.0, "1 agreeing of 2, need 2")
    [hit] = evaluate([], [grp("temperature")], {"temperature": v})
    assert hit.cause == "group temperature BAD: 1 agreeing of 2, need 2"


def test_non_required_bad_group_is_not_a_trip_by_itself() -> None:
    votes = {"aux": vote("aux", None, Quality.BAD)}
    assert evaluate([], [grp("aux", required=False)], votes) == ()


def test_missing_vote_trips_required_group_and_its_limits() -> None:
    hits = evaluate([OVERTEMP], [grp("temperature")], {})
    assert [h.name for h in hits] == ["overtemperature", "group temperature BAD"]
    assert all("no vote" in h.cause for h in hits)


def test_missing_limit_trips() -> None:
    trip = Trip("broken", "temperature", TripCondition.ABOVE, None)
    [hit] = evaluate([trip], [], {"temperature": vote("temperature", 20.0, Quality.GOOD)})
    assert "no limit" in hit.cause


def test_healthy_plant_has_no_hits_and_several_faults_all_count() -> None:
    groups = [grp("temperature"), grp("pressure")]
    trips = [OVERTEMP, Trip("overpressure", "pressure", TripCondition.ABOVE, 6.0)]
    ok = {
        "temperature": vote("temperature", 50.0, Quality.GOOD),
        "pressure": vote("pressure", 2.0, Quality.DEGRADED),
    }
    assert evaluate(trips, groups, ok) == ()
    hot = {
        "temperature": vote("temperature", 99.0, Quality.GOOD),
        "pressure": vote("pressure", None, Quality.BAD),
    }
    names = [h.name for h in evaluate(trips, groups, hot)]
    assert names == ["overtemperature", "overpressure", "group pressure BAD"]
