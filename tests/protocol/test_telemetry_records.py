"""Telemetry record bodies (pure) and the sim twin's sink (frontier, duplicates, acks)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.heartbeat import LinkEvent, LinkState
from agent.core.recommend import Reason, ShadowLine, Verdict
from agent.core.safety import EventKind, State, Transition
from agent.core.trips import TripHit
from agent.core.voting import Exclusion, ExclusionReason, Vote
from agent.model.messages import Telemetry
from agent.model.readings import Quality, Reading
from agent.protocol.telemetry import (
    link_record,
    pack,
    poll_record,
    rejected_record,
    transition_record,
    unpack,
)
from agent.protocol.twin.schema import decode_agent, to_wire
from sim.twin.sink import Sink

pytestmark = pytest.mark.timeout(30)


def test_poll_record_carries_signals_votes_state_and_shadow() -> None:
    readings = {"temp_a": Reading("temp_a", (215,), 21.5, Quality.GOOD, 1.0),
                "temp_b": Reading("temp_b", None, None, Quality.BAD, 1.0, "timeout")}
    vote = Vote("temperature", 21.5, Quality.DEGRADED, ("temp_a", "temp_c"),
                (Exclusion("temp_b", ExclusionReason.COMM, "timeout"),), 1.0, "1 excluded")
    body = pack(poll_record(
        t=1.0, t_ms=1_700_000_000_000, tick=7, state="degraded", mode="shadow", link="alive",
        readings=readings, votes={"temperature": vote},
        trips=(TripHit("overtemperature", "temperature", "T 99 > 95"),),
        shadow={"heater_power": ShadowLine("r1", "heater_power", 40.0, 12.5, 27.5, 1.0)}))
    rec = unpack(body)
    assert rec["type"] == "poll" and rec["tick"] == 7 and rec["state"] == "degraded"
    assert rec["signals"]["temp_a"] == {"raw": [215], "value": 21.5, "quality": "good",
                                        "error": None}
    assert rec["signals"]["temp_b"]["error"] == "timeout"
    assert rec["votes"]["temperature"]["excluded"] == [["temp_b", "comm failure", "timeout"]]
    assert rec["trips"] == [["overtemperature", "temperature", "T 99 > 95"]]
    assert rec["shadow"]["heater_power"]["divergence"] == 27.5
    msg = Telemetry(5, 4, 1, False, body)
    assert decode_agent(to_wire(msg)) == msg


def test_event_records() -> None:
    tr = Transition(State.NORMAL, EventKind.TWIN_LOST, State.FAILSAFE, "heartbeat lost", 3.0)
    assert unpack(pack(transition_record(tr, 9))) == {
        "type": "event", "t_ms": 9, "t": 3.0, "event": "transition", "old": "normal",
        "new": "failsafe", "cause": "heartbeat lost", "trigger": "twin_lost"}
    v = Verdict("r9", "heater_power", Reason.OUT_OF_LIMITS, "150 outside [0, 100] %")
    rec = unpack(pack(rejected_record(v, 4.0, 10)))
    assert (rec["event"], rec["reason"], rec["id"]) == ("recommend_rejected", "out_of_limits",
                                                        "r9")
    ev = LinkEvent(LinkState.ALIVE, LinkState.LOST, "no heartbeat for 0.5 s", 5.0)
    assert unpack(pack(link_record(ev, 11)))["new"] == "lost"


def test_sink_chains_live_ahead_of_backlog_and_counts_duplicates() -> None:
    s = Sink()
    s.resume(1, 100)
    # live first (the backlog 101..103 is still to come), with a hole 104 the spool dropped
    assert s.receive(1, 105, 103, historical=False)
    assert s.frontier == 100 and len(s.ahead) == 1
    for seq in (101, 102, 103):
        assert s.receive(1, seq, seq - 1, historical=True)
    assert s.frontier == 105 and not s.ahead
    assert not s.receive(1, 102, 101, historical=True)
    assert s.duplicates == 1
    assert s.ack_due(1) == 105 and s.ack_due(1) is None


@given(n=st.integers(1, 60), split=st.integers(0, 60), dup=st.lists(st.integers(0, 59)))
def test_sink_frontier_reaches_the_end_whatever_the_interleaving(n: int, split: int,
                                                                  dup: list[int]) -> None:
    split = min(split, n)
    s = Sink()
    s.resume(1, 1000)
    live = [(1001 + i, 1000 + i) for i in range(split, n)]
    history = [(1001 + i, 1000 + i) for i in range(split)]
    for seq, prev in live + history:
        s.receive(1, seq, prev, historical=(seq, prev) in history)
    for i in dup:
        if i < n:
            s.receive(2, 1001 + i, 1000 + i, historical=True)
    assert s.frontier == 1000 + n
    assert s.duplicates == sum(1 for i in dup if i < n)
    assert sorted(s.order) == list(range(1001, 1001 + n))
