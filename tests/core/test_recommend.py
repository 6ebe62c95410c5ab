"""Recommendations (pure): validation table, expiry, shadow divergence, active clamping, and
their lifetime: bound to the session that sent them, dropped when it ends or changes."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.profile.load import load_profile
from agent.core.recommend import DropCause, Reason, Recommendation, Recommendations, validate
from agent.model.messages import Origin, Recommend
from agent.protocol.twin.schema import decode_twin, to_wire

pytestmark = pytest.mark.timeout(30)

PROFILE = load_profile("sim-tank")
OUTPUTS = {o.name: o for o in PROFILE.outputs}  # heater_power 0..100 %/ 20 %/s


ORIGIN = Origin(session=1, epoch=100)  # link session #1, twin epoch 100


def book(max_validity_s: float = 60.0) -> Recommendations:
    """A book with link session #1 (epoch 100) up."""
    b = Recommendations(PROFILE.outputs, max_validity_s)
    b.session_up(ORIGIN)
    return b


def offer(b: Recommendations, rec: tuple[str, str, float, float], now: float,
          origin: Origin = ORIGIN) -> Reason:
    """Offer ``Recommend(*rec)`` arriving at ``now`` from ``origin``; its verdict's reason."""
    return b.offer(Recommend(*rec), now, origin).reason


@pytest.mark.parametrize(
    ("output", "value", "valid_s", "reason"),
    [
        ("heater_power", 40.0, 5.0, Reason.OK),
        ("heater_power", 0.0, 60.0, Reason.OK),  # both limits inclusive
        ("cooling_valve", 100.0, 0.001, Reason.OK),
        ("heater_powr", 40.0, 5.0, Reason.UNKNOWN_OUTPUT),
        ("temp_a", 40.0, 5.0, Reason.UNKNOWN_OUTPUT),  # a signal is never an output
        ("heater_power", 100.1, 5.0, Reason.OUT_OF_LIMITS),
        ("heater_power", -0.1, 5.0, Reason.OUT_OF_LIMITS),
        ("heater_power", math.inf, 5.0, Reason.OUT_OF_LIMITS),
        ("heater_power", math.nan, 5.0, Reason.NOT_A_NUMBER),
        ("heater_power", 40.0, math.nan, Reason.NOT_A_NUMBER),
        ("heater_power", 40.0, 0.0, Reason.EXPIRED),
        ("heater_power", 40.0, -3.0, Reason.EXPIRED),
        ("heater_power", 40.0, 60.01, Reason.TOO_LONG),
        ("heater_power", 40.0, math.inf, Reason.TOO_LONG),
    ],
)
def test_validation_table(output: str, value: float, valid_s: float, reason: Reason) -> None:
    v = validate(OUTPUTS, Recommend("id-1", output, value, valid_s), 10.0, 60.0)
    assert v.reason is reason
    assert v.accepted is (reason is Reason.OK)
    assert (v.recommendation is not None) is v.accepted
    msg = v.to_message()
    assert msg.reason == reason.value and msg.id == "id-1"
    to_wire(msg)  # what goes back to the twin passes the strict encoder
    if v.recommendation is not None:
        assert v.recommendation.expires == 10.0 + valid_s


def test_recommend_message_round_trip_and_strictness() -> None:
    wire = to_wire(Recommend("a" * 64, "heater_power", 12, 5.0))
    assert wire["value"] == 12.0 and isinstance(wire["value"], float)
    assert decode_twin(wire) == Recommend("a" * 64, "heater_power", 12.0, 5.0)
    with pytest.raises(ValueError, match="text length 65"):
        decode_twin({**wire, "id": "a" * 65})
    with pytest.raises(ValueError, match="expected float"):
        decode_twin({**wire, "value": True})


def test_expiry_drops_each_once_and_replacement_wins() -> None:
    b = book()
    offer(b, ("a", "heater_power", 30.0, 1.0), 0.0)
    offer(b, ("b", "heater_power", 35.0, 2.0), 0.5)  # replaces a
    offer(b, ("c", "cooling_valve", 50.0, 1.0), 0.5)
    assert b.expire(1.4) == []
    gone = b.expire(1.5)
    assert [r.id for r in gone] == ["c"]
    assert b.expire(1.6) == []
    assert [r.id for r in b.expire(2.5)] == ["b"]
    assert not b.wanted and b.expired == 2 and b.accepted == 3


def test_shadow_reports_divergence_once_per_recommendation() -> None:
    b = book()
    assert b.live() == {}
    offer(b, ("a", "heater_power", 30.0, 10.0), 0.0)
    assert b.wanted
    lines = b.shadow({"heater_power": 12.5, "cooling_valve": 0.0}, 0.05)
    assert [(ln.id, ln.value, ln.actual, ln.divergence) for ln in lines] == [
        ("a", 30.0, 12.5, 17.5)]
    assert b.shadow({"heater_power": 20.0}, 0.1) == []  # logged once
    assert b.divergences()["heater_power"].divergence == 10.0  # status keeps the latest
    offer(b, ("b", "heater_power", 5.0, 10.0), 0.2)
    lines = b.shadow({"heater_power": None}, 0.25)
    assert lines[0].id == "b" and lines[0].divergence is None


def test_active_targets_rate_limited_from_the_last_written_value() -> None:
    b = book()
    offer(b, ("a", "heater_power", 50.0, 30.0), 0.0)
    last = {"heater_power": 0.0, "cooling_valve": 100.0}
    assert b.targets(0.0, last) == {}  # first call after a pause: dt = 0, no jump
    values = []
    t = 0.0
    for _ in range(60):
        t += 0.05
        out = b.targets(t, last)
        if out:
            last.update(out)
            values.append(out["heater_power"])
    assert values[-1] == 50.0
    steps = [b2 - a for a, b2 in zip([0.0, *values], values, strict=False)]
    assert max(steps) <= 20.0 * 0.05 + 1e-9  # max_rate 20 %/s
    assert len(values) == 50  # 50 % at 1 % per tick, then nothing (equal to last)


def test_pause_resets_dt_and_stall_is_capped() -> None:
    b = book()
    offer(b, ("a", "heater_power", 100.0, 60.0), 0.0)
    b.targets(0.0, {"heater_power": 0.0})
    assert b.targets(30.0, {"heater_power": 0.0}) == {"heater_power": 20.0}  # dt capped 1 s
    b.pause()
    assert b.targets(31.0, {"heater_power": 20.0}) == {}


@given(target=st.floats(0.0, 100.0), last=st.floats(0.0, 100.0), dt=st.floats(0.0, 5.0))
def test_targets_stay_within_limits_and_rate(target: float, last: float, dt: float) -> None:
    b = book()
    offer(b, ("a", "heater_power", target, 60.0), 0.0)
    b.targets(0.0, {"heater_power": last})
    out = b.targets(dt, {"heater_power": last}).get("heater_power", last)
    assert 0.0 <= out <= 100.0
    assert abs(out - last) <= 20.0 * min(dt, 1.0) + 1e-9


# --- lifetime: bound to the session, dropped when it ends or changes ----------------------

End = Callable[[Recommendations], list[Recommendation]]


def two_live() -> Recommendations:
    b = book()
    assert offer(b, ("h", "heater_power", 40.0, 30.0), 0.0) is Reason.OK
    assert offer(b, ("c", "cooling_valve", 20.0, 30.0), 0.0) is Reason.OK
    b.shadow({"heater_power": 0.0, "cooling_valve": 100.0}, 0.05)  # status keeps a line
    return b


@pytest.mark.parametrize(("end", "cause"), [
    (lambda b: b.drop(DropCause.HEARTBEAT_LOST, "no heartbeat for 0.5 s"),
     DropCause.HEARTBEAT_LOST),
    (lambda b: b.session_down("twin link disconnected"), DropCause.HEARTBEAT_LOST),
    (lambda b: b.bye(100), DropCause.HEARTBEAT_LOST),
    (lambda b: b.session_up(Origin(2, 100)), DropCause.HEARTBEAT_LOST),
    (lambda b: b.epoch_seen(101), DropCause.EPOCH_CHANGED),
    (lambda b: b.drop(DropCause.LEFT_NORMAL, "NORMAL -> FAILSAFE"), DropCause.LEFT_NORMAL),
    (lambda b: b.drop(DropCause.MODE_CHANGED, "shadow -> active"), DropCause.MODE_CHANGED),
], ids=["lost", "disconnect", "bye", "new-session", "epoch", "left-normal", "mode"])
def test_every_end_of_a_session_drops_every_live_one_logged_once_and_counted(
        end: End, cause: DropCause, caplog: pytest.LogCaptureFixture) -> None:
    b = two_live()
    caplog.set_level(logging.INFO, logger="agent.core.recommend")
    gone = end(b)
    assert sorted(r.id for r in gone) == ["c", "h"]
    assert b.live() == {} and not b.wanted and b.divergences() == {}
    assert b.targets(1.0, {"heater_power": 0.0}) == {}, "nothing left to write"
    assert b.dropped[cause] == 2 and sum(b.dropped.values()) == 2
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1 and cause.value in lines[0] and "h heater_power=40" in lines[0]
    assert end(b) == [] and sum(b.dropped.values()) == 2, "nothing is dropped twice"


def test_the_same_or_an_older_epoch_changes_nothing() -> None:
    b = two_live()
    assert b.epoch_seen(100) == [] and b.epoch_seen(99) == [] and b.epoch_seen(None) == []
    assert b.bye(99) == [], "a stale bye is ignored, as the heartbeat monitor does"
    assert len(b.live()) == 2


Setup = Callable[[Recommendations], object]


@pytest.mark.parametrize(("setup", "origin", "why"), [
    (lambda b: None, None, "did not arrive on a twin link session"),
    (lambda b: b.session_down("twin link disconnected"), ORIGIN, "has ended"),
    (lambda b: b.session_up(Origin(2, 100)), ORIGIN, "the current one is #2"),
    (lambda b: b.epoch_seen(101), ORIGIN, "the twin's current epoch is 101"),
    (lambda b: b.bye(100), ORIGIN, "epoch 100 has said bye"),
    # an epoch a bye ended stays ended on a later connection (PROTOCOL.md §4)
    (lambda b: (b.bye(100), b.session_up(Origin(2, 100))), Origin(2, 100),
     "epoch 100 has said bye"),
], ids=["no-origin", "ended", "other-session", "old-epoch", "said-bye", "bye-then-reconnect"])
def test_a_recommendation_not_from_the_current_session_is_rejected(
        setup: Setup, origin: Origin | None, why: str) -> None:
    b = book()
    setup(b)
    v = b.offer(Recommend("x", "heater_power", 40.0, 30.0), 1.0, origin)
    assert v.reason is Reason.STALE_SESSION and not v.accepted and v.recommendation is None
    assert why in v.detail
    assert b.live() == {} and b.rejected == 1 and b.stale == 1 and b.accepted == 0
    assert to_wire(v.to_message())["reason"] == "stale_session"  # a code of the wire's list


def test_a_new_connection_forgets_the_highest_epoch() -> None:
    """A twin whose epoch went back (or that once sent 2**64-1) is not locked out: the
    highest epoch is tracked per connection (PROTOCOL.md §4)."""
    b = book()
    b.session_up(Origin(1, 2**64 - 1))
    b.session_up(Origin(2, 90))
    v = b.offer(Recommend("x", "heater_power", 40.0, 30.0), 1.0, Origin(2, 90))
    assert v.accepted, v.detail


def test_stale_session_is_judged_before_the_value() -> None:
    b = book()
    b.session_down("gone")
    v = b.offer(Recommend("x", "nonsense", math.nan, -1.0), 1.0, ORIGIN)
    assert v.reason is Reason.STALE_SESSION


def test_the_current_session_goes_on_after_a_drop_and_binds_its_recommendations() -> None:
    b = two_live()
    b.drop(DropCause.HEARTBEAT_LOST, "no heartbeat for 0.5 s")  # the connection stayed up
    assert offer(b, ("h2", "heater_power", 10.0, 30.0), 2.0) is Reason.OK
    assert b.live()["heater_power"].origin == ORIGIN
    # a new session with a higher epoch: its hello's epoch is the current one at once
    b.session_down("twin link disconnected")
    b.session_up(Origin(2, 101))
    assert offer(b, ("old", "heater_power", 10.0, 30.0), 3.0) is Reason.STALE_SESSION
    assert offer(b, ("new", "heater_power", 10.0, 30.0), 3.0, Origin(2, 101)) is Reason.OK
    # the epoch raised within the connection (a heartbeat of epoch 102 read in between):
    # what was read before it is stale, what after it is not
    assert [r.id for r in b.epoch_seen(102)] == ["new"]
    assert offer(b, ("mid", "heater_power", 1.0, 30.0), 4.0, Origin(2, 101)) is \
        Reason.STALE_SESSION
    assert offer(b, ("late", "heater_power", 1.0, 30.0), 4.0, Origin(2, 102)) is Reason.OK


def test_a_flood_of_verdicts_is_logged_at_most_twenty_a_second(
        caplog: pytest.LogCaptureFixture) -> None:
    b = book()
    b.session_up(ORIGIN)
    with caplog.at_level(logging.INFO, logger="agent.core.recommend"):
        for i in range(500):  # 500 bad ones in half a second
            b.offer(Recommend(f"r{i}", "heater_power", 1e9, 30.0), i * 0.001, ORIGIN)
        b.offer(Recommend("late", "heater_power", 1e9, 30.0), 1.5, ORIGIN)
    lines = [r.getMessage() for r in caplog.records]
    assert b.rejected == 501, "every one is counted"
    assert sum("rejected" in m for m in lines) == 20 + 1
    assert "480 recommendation verdict(s) not logged in the last second" in " ".join(lines)
