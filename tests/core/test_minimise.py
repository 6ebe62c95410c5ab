"""The data-minimisation core (sans-IO): each rule on a poll record, windows, redaction,
the header, the pseudonym; properties of aggregation and quantisation with hypothesis."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.minimise import WITHHELD, Minimiser, pseudonym, quantize, window_start
from agent.model.policy import Action, DeviceName, Rule, TelemetryPolicy

pytestmark = pytest.mark.timeout(60)

POLICY = TelemetryPolicy({
    "temp_a": Rule(Action.SEND),
    "temp_b": Rule(Action.DROP),
    "temp_c": Rule(Action.QUANTIZE, step=0.5),
    "pressure_a": Rule(Action.AGGREGATE, window_s=10.0),
    "pressure": Rule(Action.AGGREGATE, window_s=10.0),
})


def poll(t: float, value: float | None = 21.3, *, pressure: float | None = 2.0) -> dict[str, Any]:
    """A poll record as ``agent.protocol.telemetry.poll_record`` builds it."""
    def sig(v: float | None, raw: int) -> dict[str, Any]:
        return {"raw": None if v is None else [raw], "value": v,
                "quality": "bad" if v is None else "good", "error": None if v else "timeout"}

    return {
        "type": "poll", "t_ms": int(t * 1000), "t": t, "tick": 1, "state": "normal",
        "mode": "shadow", "link": "alive",
        "signals": {"temp_a": sig(value, 213), "temp_b": sig(value, 214),
                    "temp_c": sig(value, 215), "pressure_a": sig(pressure, 20)},
        "votes": {
            "temperature": {"value": value, "quality": "degraded", "used": ["temp_a", "temp_c"],
                            "reason": "1 excluded",
                            "excluded": [["temp_b", "disagree", "25.1 is 3.8 from the median"],
                                         ["temp_a", "stale", "0.6 s old"]]},
            "pressure": {"value": pressure, "quality": "good", "used": ["pressure_a"],
                         "reason": "spread 0.3 > discrepancy 0.2", "excluded": []}},
        "trips": [["overtemperature", "temperature", "temperature 96.2 > 95"],
                  ["overpressure", "pressure", "pressure 9.1 > 9"]],
        "shadow": {},
    }


def test_send_leaves_a_name_as_read_and_drop_removes_it() -> None:
    (out,) = Minimiser(POLICY, "tank-01").poll(poll(1.0), 1.0, 1000)
    assert out["signals"]["temp_a"] == poll(1.0)["signals"]["temp_a"]
    assert "temp_b" not in out["signals"]
    assert out["votes"]["temperature"]["value"] == 21.3  # the group itself is not listed


def test_quantize_rounds_the_value_and_withholds_raw() -> None:
    (out,) = Minimiser(POLICY, "d").poll(poll(1.0, 21.3), 1.0, 1000)
    assert out["signals"]["temp_c"] == {"raw": None, "value": 21.5, "quality": "good",
                                        "error": None}


def test_text_that_carries_a_minimised_value_is_withheld() -> None:
    (out,) = Minimiser(POLICY, "d").poll(poll(1.0), 1.0, 1000)
    excluded = out["votes"]["temperature"]["excluded"]
    assert excluded == [["temp_b", "disagree", WITHHELD], ["temp_a", "stale", "0.6 s old"]]
    assert out["votes"]["temperature"]["reason"] == "1 excluded"  # the group is sent
    assert out["trips"] == [["overtemperature", "temperature", "temperature 96.2 > 95"],
                            ["overpressure", "pressure", WITHHELD]]
    ev = Minimiser(POLICY, "d").event({"type": "event", "event": "transition",
                                       "cause": "trip overpressure: pressure 9.1 > 9",
                                       "old": "normal"})
    assert ev["cause"] == WITHHELD and ev["old"] == "normal"
    # a whole word only: "pressure_b" is not "pressure"
    ev = Minimiser(POLICY, "d").event({"type": "event", "detail": "pressure_b 3.0 bar"})
    assert ev["detail"] == "pressure_b 3.0 bar"


def test_aggregate_emits_one_record_per_window_when_the_next_one_starts() -> None:
    m = Minimiser(POLICY, "d")
    outs = [m.poll(poll(t, pressure=p), t, int(t * 1000))
            for t, p in ((1.0, 2.0), (4.0, None), (9.5, 4.0), (10.0, 3.0))]
    assert [len(o) for o in outs] == [1, 1, 1, 2]  # the fourth closes [0, 10)
    for o in outs:
        assert "pressure_a" not in o[-1]["signals"] and "pressure" not in o[-1]["votes"]
    agg = outs[3][0]
    assert (agg["type"], agg["start"], agg["end"], agg["partial"]) == ("aggregate", 0.0, 10.0,
                                                                       False)
    assert agg["signals"] == {"pressure_a": {"min": 2.0, "mean": 3.0, "max": 4.0, "count": 2,
                                             "bad": 1}}
    assert agg["votes"]["pressure"]["count"] == 2
    assert (agg["first_ms"], agg["last_ms"]) == (1000, 9500)
    (flushed,) = m.flush(12.5, 12500)  # [10, 20) holds the poll at 10.0
    assert (flushed["start"], flushed["end"], flushed["partial"]) == (10.0, 12.5, True)
    assert flushed["signals"]["pressure_a"]["count"] == 1
    assert m.flush(13.0, 13000) == [] and m.windows_open == 0


def test_windows_of_different_widths_are_records_of_their_own() -> None:
    policy = TelemetryPolicy({"temp_a": Rule(Action.AGGREGATE, window_s=1.0),
                              "temp_b": Rule(Action.AGGREGATE, window_s=5.0)})
    m = Minimiser(policy, "d")
    m.poll(poll(0.5), 0.5, 0)
    out = m.poll(poll(1.5), 1.5, 0)
    assert [(r["type"], r.get("window_s")) for r in out] == [("aggregate", 1.0), ("poll", None)]
    assert list(out[0]["signals"]) == ["temp_a"]
    assert [r["window_s"] for r in m.flush(2.0, 0)] == [1.0, 5.0]


def test_every_record_carries_the_header() -> None:
    policy = TelemetryPolicy({"temp_b": Rule(Action.DROP)}, DeviceName.PSEUDONYM)
    m = Minimiser(policy, "p-abc")
    header = {"device": "p-abc", "policy": {"id": policy.header()["id"], "pseudonym": True,
                                            "rules": {"temp_b": ["drop"]}}}
    (p,) = m.poll(poll(1.0), 1.0, 0)
    assert {k: p[k] for k in header} == header
    assert {k: m.event({"type": "event"})[k] for k in header} == header
    (as_built,) = Minimiser(TelemetryPolicy(), "tank-01").poll(poll(1.0), 1.0, 0)
    assert {k: v for k, v in as_built.items() if k not in header} == poll(1.0)
    default = Minimiser(TelemetryPolicy(), "tank-01").event({"type": "event"})
    assert default["device"] == "tank-01" and default["policy"]["rules"] == {}
    assert default["policy"]["id"] != header["policy"]["id"]


def test_policy_id_depends_on_the_rules_not_their_order() -> None:
    a = TelemetryPolicy({"x": Rule(Action.DROP), "y": Rule(Action.QUANTIZE, step=1.0)})
    b = TelemetryPolicy({"y": Rule(Action.QUANTIZE, step=1.0), "x": Rule(Action.DROP),
                         "z": Rule(Action.SEND)})
    c = TelemetryPolicy({"x": Rule(Action.DROP), "y": Rule(Action.QUANTIZE, step=2.0)})
    assert a.header() == b.header()
    assert a.header()["id"] != c.header()["id"]


def test_pseudonym_is_stable_keyed_and_not_the_id() -> None:
    key, other = b"k" * 32, b"j" * 32
    p = pseudonym(key, "tank-01")
    assert p == pseudonym(key, "tank-01") and p.startswith("p-") and len(p) == 26
    assert "tank" not in p
    assert p != pseudonym(other, "tank-01") and p != pseudonym(key, "tank-02")
    # HMAC-SHA256 of the documented message (RFC 2104 construction, checked by hand)
    import hashlib
    ipad = bytes(b ^ 0x36 for b in key.ljust(64, b"\0"))
    opad = bytes(b ^ 0x5C for b in key.ljust(64, b"\0"))
    inner = hashlib.sha256(ipad + b"twinguard-pseudonym/1\ntank-01").digest()
    assert p == "p-" + hashlib.sha256(opad + inner).hexdigest()[:24]


@pytest.mark.parametrize(("value", "step", "expected"), [
    (0.3, 0.1, 0.3), (0.75, 0.25, 0.75), (0.874, 0.25, 0.75), (-2.5, 1.0, -2.0),
    (21.3, 0.5, 21.5), (1234.0, 100.0, 1200.0), (1e300, 1e-9, None),
])
def test_quantize_table(value: float, step: float, expected: float | None) -> None:
    assert quantize(value, step) == expected


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(value=finite, step=st.sampled_from([0.001, 0.1, 0.25, 0.5, 1.0, 2.0, 10.0]))
def test_quantize_is_the_nearest_multiple(value: float, step: float) -> None:
    q = quantize(value, step)
    assert q is not None
    assert abs(q - value) <= step / 2 + 1e-9 * max(1.0, abs(value))
    assert math.isclose(q / step, round(q / step), abs_tol=1e-6)


samples = st.lists(st.tuples(st.floats(min_value=0, max_value=0.999),
                             st.one_of(st.none(), finite, st.just(math.nan))), max_size=60)


@given(gaps=samples, width=st.sampled_from([0.5, 1.0, 3.0, 60.0]))
def test_aggregate_counts_every_sample_once_and_the_mean_lies_between(
        gaps: list[tuple[float, float | None]], width: float) -> None:
    policy = TelemetryPolicy({"pressure_a": Rule(Action.AGGREGATE, window_s=width)})
    m = Minimiser(policy, "d")
    t, out = 100.0, []
    for gap, value in gaps:
        t += gap
        out += m.poll(poll(t, pressure=value), t, 0)
    out += m.flush(t + 0.001, 0)
    aggs = [r for r in out if r["type"] == "aggregate"]
    assert sum(r["signals"]["pressure_a"]["count"] + r["signals"]["pressure_a"]["bad"]
               for r in aggs) == len(gaps)
    assert sum(r["signals"]["pressure_a"]["count"] for r in aggs) == sum(
        v is not None and math.isfinite(v) for _, v in gaps)
    starts = [r["start"] for r in aggs]
    assert starts == sorted(set(starts))
    for r in aggs:
        s = r["signals"]["pressure_a"]
        assert r["start"] == window_start(r["start"], width)
        if s["count"]:
            assert s["min"] <= s["mean"] <= s["max"]
        else:
            assert s["min"] is s["mean"] is s["max"] is None
    assert all("pressure_a" not in r["signals"] for r in out if r["type"] == "poll")
