"""Recommendations (pure): validation table, expiry, shadow divergence, active clamping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.profile import load_profile
from agent.recommend import Reason, Recommendations, validate
from agent.twin.messages import Recommend, decode_twin, to_wire

pytestmark = pytest.mark.timeout(30)

PROFILE = load_profile("sim-tank")
OUTPUTS = {o.name: o for o in PROFILE.outputs}  # heater_power 0..100 %/ 20 %/s


def book(max_validity_s: float = 60.0) -> Recommendations:
    return Recommendations(PROFILE.outputs, max_validity_s)


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
    b.offer(Recommend("a", "heater_power", 30.0, 1.0), 0.0)
    b.offer(Recommend("b", "heater_power", 35.0, 2.0), 0.5)  # replaces a
    b.offer(Recommend("c", "cooling_valve", 50.0, 1.0), 0.5)
    assert b.expire(1.4) == []
    gone = b.expire(1.5)
    assert [r.id for r in gone] == ["c"]
    assert b.expire(1.6) == []
    assert [r.id for r in b.expire(2.5)] == ["b"]
    assert not b.wanted and b.expired == 2 and b.accepted == 3


def test_shadow_reports_divergence_once_per_recommendation() -> None:
    b = book()
    assert not b.wanted
    b.offer(Recommend("a", "heater_power", 30.0, 10.0), 0.0)
    assert b.wanted
    lines = b.shadow({"heater_power": 12.5, "cooling_valve": 0.0}, 0.05)
    assert [(ln.id, ln.value, ln.actual, ln.divergence) for ln in lines] == [
        ("a", 30.0, 12.5, 17.5)]
    assert b.shadow({"heater_power": 20.0}, 0.1) == []  # logged once
    assert b.divergences()["heater_power"].divergence == 10.0  # status keeps the latest
    b.offer(Recommend("b", "heater_power", 5.0, 10.0), 0.2)
    lines = b.shadow({"heater_power": None}, 0.25)
    assert lines[0].id == "b" and lines[0].divergence is None


def test_active_targets_rate_limited_from_the_last_written_value() -> None:
    b = book()
    b.offer(Recommend("a", "heater_power", 50.0, 30.0), 0.0)
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
    b.offer(Recommend("a", "heater_power", 100.0, 60.0), 0.0)
    b.targets(0.0, {"heater_power": 0.0})
    assert b.targets(30.0, {"heater_power": 0.0}) == {"heater_power": 20.0}  # dt capped 1 s
    b.pause()
    assert b.targets(31.0, {"heater_power": 20.0}) == {}


@given(target=st.floats(0.0, 100.0), last=st.floats(0.0, 100.0), dt=st.floats(0.0, 5.0))
def test_targets_stay_within_limits_and_rate(target: float, last: float, dt: float) -> None:
    b = book()
    b.offer(Recommend("a", "heater_power", target, 60.0), 0.0)
    b.targets(0.0, {"heater_power": last})
    out = b.targets(dt, {"heater_power": last}).get("heater_power", last)
    assert 0.0 <= out <= 100.0
    assert abs(out - last) <= 20.0 * min(dt, 1.0) + 1e-9
