"""Voting: each channel check, each policy, and the two safety properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.voting import ExclusionReason, GroupVoter, Vote
from agent.model.profile import DataType, Group, SafeDirection, Signal, Table, Voting, WordOrder
from agent.model.readings import Quality, Reading

pytestmark = pytest.mark.timeout(30)

LOW, HIGH = -20.0, 250.0
DISC = 3.0
MAX_AGE = 1.0
MAX_RATE = 20.0
STUCK_S = 10.0


def sig(name: str) -> Signal:
    return Signal(
        name=name,
        table=Table.INPUT,
        address=0,
        dtype=DataType.INT16,
        word_order=WordOrder.BIG,
        scale=0.1,
        offset=0.0,
        unit="degC",
        low=LOW,
        high=HIGH,
        unit_id=1,
    )


def group(
    m: int,
    n: int,
    *,
    min_healthy: int | None = None,
    side: SafeDirection = SafeDirection.HIGH,
    max_rate: float | None = MAX_RATE,
    stuck_after_s: float | None = STUCK_S,
) -> Group:
    names = tuple(f"c{i}" for i in range(n))
    return Group(
        name="temperature",
        signals=names,
        voting=Voting(m, n),
        min_healthy=m if min_healthy is None else min_healthy,
        safe_direction=side,
        discrepancy=DISC,
        max_age_s=MAX_AGE,
        max_rate=max_rate,
        stuck_after_s=stuck_after_s,
        required=True,
    )


def voter(g: Group) -> GroupVoter:
    return GroupVoter(g, [sig(n) for n in g.signals])


def good(name: str, value: float, t: float) -> Reading:
    return Reading(name, (0,), value, Quality.GOOD, t)


def bad(name: str, t: float) -> Reading:
    return Reading(name, None, None, Quality.BAD, t, error="timeout")


def vote(v: GroupVoter, values: list[float | None], now: float = 10.0) -> Vote:
    """One update: a float is a fresh GOOD reading at ``now``, None a BAD one."""
    readings = {
        name: (bad(name, now) if x is None else good(name, x, now))
        for name, x in zip(v.group.signals, values, strict=True)
    }
    return v.update(readings, now)


def reasons(vt: Vote) -> dict[str, ExclusionReason]:
    return {e.channel: e.reason for e in vt.excluded}


# --- channel checks -----------------------------------------------------------------------


def test_bad_reading_is_a_comm_exclusion() -> None:
    vt = vote(voter(group(2, 3)), [50.0, None, 50.5])
    assert reasons(vt) == {"c1": ExclusionReason.COMM}
    assert vt.excluded[0].detail == "timeout"
    assert str(vt.excluded[0]) == "c1 comm failure"


def test_missing_reading_is_a_comm_exclusion() -> None:
    v = voter(group(1, 2))
    vt = v.update({"c0": good("c0", 10.0, 5.0)}, 5.0)
    assert reasons(vt) == {"c1": ExclusionReason.COMM}
    assert vt.excluded[0].detail == "no reading"


@pytest.mark.parametrize(
    ("age", "stale"), [(0.0, False), (MAX_AGE, False), (MAX_AGE + 0.001, True), (5.0, True)]
)
def test_stale_reading(age: float, stale: bool) -> None:
    v = voter(group(1, 2))
    now = 100.0
    vt = v.update({"c0": good("c0", 20.0, now - age), "c1": good("c1", 20.0, now)}, now)
    assert ("c0" in reasons(vt)) is stale
    if stale:
        assert reasons(vt)["c0"] is ExclusionReason.STALE


@pytest.mark.parametrize(
    ("value", "out"),
    [
        (LOW, False),
        (HIGH, False),
        (LOW - 0.1, True),
        (HIGH + 0.1, True),
        (math.nan, True),
        (math.inf, True),
        (-math.inf, True),
    ],
)
def test_plausible_range(value: float, out: bool) -> None:
    vt = vote(voter(group(1, 2)), [value, 20.0])
    assert (reasons(vt).get("c0") is ExclusionReason.RANGE) is out


@pytest.mark.parametrize(
    ("step", "dt", "excluded"),
    # allowed: MAX_RATE * dt + DISC / 2 (a change within half the disagreement tolerance
    # is noise, whatever the polling rate)
    [(3.4, 0.1, False), (3.5, 0.1, False), (3.6, 0.1, True), (30.0, 1.0, True),
     (30.0, 2.0, False), (1.4, 0.01, False), (1.8, 0.01, True)],
)
def test_rate_of_change(step: float, dt: float, excluded: bool) -> None:
    v = voter(group(1, 2, max_rate=MAX_RATE))
    vote(v, [50.0, 50.0], now=1.0)
    vt = vote(v, [50.0 + step, 50.0], now=1.0 + dt)
    assert (reasons(vt).get("c0") is ExclusionReason.RATE) is excluded


def test_a_rate_rejected_jump_is_accepted_once_time_explains_it() -> None:
    v = voter(group(1, 2, max_rate=MAX_RATE))
    vote(v, [50.0, 50.0], now=1.0)
    assert "c0" in reasons(vote(v, [80.0, 50.0], now=1.1))
    assert "c0" in reasons(vote(v, [80.0, 50.0], now=2.0))  # 30 over 1 s from 50 @ 1.0
    assert "c0" not in reasons(vote(v, [80.0, 50.0], now=2.6))  # 30 over 1.6 s


def test_the_same_sample_seen_twice_is_not_a_rate_problem() -> None:
    v = voter(group(1, 2))
    vote(v, [50.0, 50.0], now=1.0)
    vt = v.update({"c0": good("c0", 50.0, 1.0), "c1": good("c1", 50.0, 1.05)}, 1.05)
    assert vt.excluded == ()


def _run(v: GroupVoter, series: list[list[float]], dt: float = 0.5, t0: float = 0.0) -> Vote:
    vt = None
    for i, values in enumerate(series):
        vt = vote(v, list(values), now=t0 + dt * i)
    assert vt is not None
    return vt


def test_stuck_channel_while_peers_move_is_excluded() -> None:
    v = voter(group(2, 3))
    steps = int(STUCK_S / 0.5) + 2
    series = [[50.0, 50.0 + 0.1 * i, 50.2 + 0.1 * i] for i in range(steps)]
    vt = _run(v, series)
    assert reasons(vt) == {"c0": ExclusionReason.STUCK}
    assert "c1" in vt.excluded[0].detail and "c2" in vt.excluded[0].detail


def test_frozen_channel_is_not_stuck_before_stuck_after_s() -> None:
    v = voter(group(2, 3))
    steps = int(STUCK_S / 0.5) - 2
    series = [[50.0, 50.0 + 0.1 * i, 50.2 + 0.1 * i] for i in range(steps)]
    assert _run(v, series).excluded == ()


def test_frozen_channels_on_a_steady_plant_are_not_stuck() -> None:
    v = voter(group(2, 3))
    series = [[50.0, 50.1 + 0.01 * (i % 2), 49.9] for i in range(40)]  # peers move < DISC/4
    assert _run(v, series).excluded == ()


def test_one_wandering_peer_does_not_get_quiet_channels_called_stuck() -> None:
    v = voter(group(2, 3))
    series = [[50.0, 50.0, 50.0 + (2.5 if i % 2 else 0.0)] for i in range(40)]
    vt = _run(v, series)
    assert ExclusionReason.STUCK not in reasons(vt).values()
    assert vt.value == 50.0


def test_stuck_check_off_when_not_configured() -> None:
    v = voter(group(2, 3, stuck_after_s=None))
    series = [[50.0, 50.0 + 0.1 * i, 50.2 + 0.1 * i] for i in range(28)]
    assert _run(v, series).excluded == ()


def test_a_stuck_channel_that_moves_again_is_readmitted() -> None:
    v = voter(group(2, 3))
    series = [[50.0, 50.0 + 0.1 * i, 50.2 + 0.1 * i] for i in range(30)]
    assert "c0" in reasons(_run(v, series))
    assert "c0" not in reasons(vote(v, [52.9, 53.0, 53.1], now=0.5 * 30))


@pytest.mark.parametrize(
    ("values", "excluded"),
    [
        ([50.0, 50.5, 51.0], set()),
        ([50.0, 50.5, 54.0], {"c2"}),  # 3.5 from the median 50.5
        ([45.0, 50.0, 50.5], {"c0"}),
        ([50.0, 53.0, 56.0], set()),  # each exactly DISC from the median: kept
    ],
)
def test_disagreement_with_the_median(values: list[float], excluded: set[str]) -> None:
    vt = vote(voter(group(2, 3)), list(values))
    assert {c for c, r in reasons(vt).items() if r is ExclusionReason.DISAGREE} == excluded


def test_no_median_exclusion_with_only_two_channels() -> None:
    vt = vote(voter(group(1, 2)), [50.0, 60.0])
    assert vt.excluded == ()


# --- policies -----------------------------------------------------------------------------

H, L = SafeDirection.HIGH, SafeDirection.LOW


Case = tuple[int, int, int, SafeDirection, list[float | None], float | None, Quality]


@pytest.mark.parametrize(
    "case",
    [
        # 1oo1
        (1, 1, 1, H, [42.0], 42.0, Quality.GOOD),
        (1, 1, 1, H, [None], None, Quality.BAD),
        # 1oo2: agree -> mean; disagree -> safe side; one out -> the other
        (1, 2, 1, H, [50.0, 52.0], 51.0, Quality.GOOD),
        (1, 2, 1, H, [50.0, 60.0], 60.0, Quality.DEGRADED),
        (1, 2, 1, L, [50.0, 60.0], 50.0, Quality.DEGRADED),
        (1, 2, 1, H, [50.0, None], 50.0, Quality.DEGRADED),
        (1, 2, 1, H, [None, None], None, Quality.BAD),
        (1, 2, 2, H, [50.0, None], None, Quality.BAD),  # min_healthy 2
        # 2oo2
        (2, 2, 2, H, [50.0, 52.0], 51.0, Quality.GOOD),
        (2, 2, 2, H, [50.0, 60.0], None, Quality.BAD),
        # 2oo3: median; after one exclusion the safe side of two that agree
        (2, 3, 2, H, [50.0, 51.0, 52.0], 51.0, Quality.GOOD),
        (2, 3, 2, H, [52.0, 50.0, 51.0], 51.0, Quality.GOOD),
        (2, 3, 2, H, [50.0, 51.0, 200.0], 51.0, Quality.DEGRADED),
        (2, 3, 2, L, [50.0, 51.0, 200.0], 50.0, Quality.DEGRADED),
        (2, 3, 2, H, [50.0, 51.0, None], 51.0, Quality.DEGRADED),
        (2, 3, 2, H, [50.0, 55.0, None], None, Quality.BAD),  # two left disagree
        (2, 3, 2, H, [50.0, None, None], None, Quality.BAD),
        (2, 3, 2, H, [48.0, 50.5, 53.0], 50.5, Quality.DEGRADED),  # spread 5 > DISC
        # 2oo4 with an even count left: middle value on the safe side
        (2, 4, 2, H, [50.0, 51.0, 52.0, 52.5], 52.0, Quality.GOOD),
        (2, 4, 2, L, [50.0, 51.0, 52.0, 52.5], 51.0, Quality.GOOD),
        (2, 4, 2, H, [50.0, 51.0, 52.0, None], 51.0, Quality.DEGRADED),
        (3, 4, 3, H, [50.0, 51.0, None, None], None, Quality.BAD),
    ],
)
def test_policy_table(case: Case) -> None:
    """(M, N, min_healthy, safe side, readings, expected value, expected quality)."""
    m, n, min_h, side, values, value, quality = case
    vt = vote(voter(group(m, n, min_healthy=min_h, side=side)), values)
    assert (vt.value, vt.quality) == (value, quality)
    if quality is not Quality.GOOD:
        assert vt.reason


def test_vote_lists_used_and_excluded_channels() -> None:
    vt = vote(voter(group(2, 3)), [50.0, None, 51.0], now=7.0)
    assert vt.used == ("c0", "c2")
    assert [e.channel for e in vt.excluded] == ["c1"]
    assert (vt.group, vt.t) == ("temperature", 7.0)


def test_exclusions_are_counted() -> None:
    v = voter(group(2, 3))
    for i in range(3):
        vote(v, [50.0, None, 900.0], now=float(i))
    assert v.exclusion_counts == {ExclusionReason.COMM: 3, ExclusionReason.RANGE: 3}


@pytest.mark.parametrize(
    "g",
    [
        Group("g", ("c0", "nope"), Voting(1, 2), 1, H, DISC, 1.0, None, None, True),
        Group("g", ("c0", "c1"), Voting(2, 3), 1, H, DISC, 1.0, None, None, True),
        Group("g", ("c0", "c1"), Voting(3, 2), 1, H, DISC, 1.0, None, None, True),
        Group("g", ("c0", "c1"), Voting(1, 2), 0, H, DISC, 1.0, None, None, True),
    ],
)
def test_inconsistent_group_is_refused(g: Group) -> None:
    with pytest.raises(ValueError):
        GroupVoter(g, [sig("c0"), sig("c1")])


# --- properties ---------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
faulty_value = st.one_of(
    st.none(), finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf)
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.floats(min_value=LOW, max_value=HIGH - DISC),
    offset=st.floats(min_value=0.0, max_value=DISC),
    faulty=faulty_value,
    position=st.integers(min_value=0, max_value=2),
    side=st.sampled_from(SafeDirection),
)
def test_one_faulty_channel_of_three_stays_inside_the_good_ones(
    base: float, offset: float, faulty: float | None, position: int, side: SafeDirection
) -> None:
    good_values = [base, min(base + offset, HIGH)]
    values: list[float | None] = list(good_values)
    values.insert(position, faulty)
    vt = vote(voter(group(2, 3, side=side)), values)
    assert vt.value is not None
    assert vt.quality is not Quality.BAD
    assert min(good_values) <= vt.value <= max(good_values)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.01, max_value=0.5),  # good channels' common move
            st.floats(min_value=0.0, max_value=DISC / 2),  # their separation
            faulty_value,
        ),
        min_size=1,
        max_size=40,
    ),
    position=st.integers(min_value=0, max_value=2),
)
def test_one_faulty_channel_of_three_over_time(
    steps: list[tuple[float, float, float | None]], position: int
) -> None:
    """Good channels move every poll (by less than their max rate), the faulty one does
    anything at all: the vote never leaves the range of the two good ones."""
    v = voter(group(2, 3))
    level, t = 50.0, 0.0
    for move, sep, faulty in steps:
        level += move if level < 200 else -move
        t += 0.1
        good_values = [level, level + sep]
        values: list[float | None] = list(good_values)
        values.insert(position, faulty)
        vt = vote(v, values, now=t)
        assert vt.value is not None
        assert min(good_values) <= vt.value <= max(good_values)


@settings(max_examples=300, deadline=None)
@given(
    mn=st.sampled_from([(1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 4)]),
    data=st.data(),
)
def test_a_bad_group_is_never_good(mn: tuple[int, int], data: st.DataObject) -> None:
    m, n = mn
    min_h = data.draw(st.integers(min_value=1, max_value=n))
    values = data.draw(
        st.lists(st.one_of(faulty_value, st.floats(LOW, HIGH)), min_size=n, max_size=n)
    )
    vt = vote(voter(group(m, n, min_healthy=min_h)), values)
    plausible = [x for x in values if x is not None and LOW <= x <= HIGH]
    if len(plausible) < max(min_h, m):
        assert vt.quality is Quality.BAD
    if vt.quality is Quality.BAD:
        assert vt.value is None
    if vt.quality is Quality.GOOD:
        assert len(vt.used) == n and vt.excluded == ()
        assert vt.value is not None
        assert max(plausible) - min(plausible) <= DISC
        assert min(plausible) <= vt.value <= max(plausible)
