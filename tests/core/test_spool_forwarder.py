"""The pure forwarder: live first, history at a bounded rate, resend from the last ack."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.forwarder import Forwarder, Send


def _fw(**kw: float) -> Forwarder:
    args = {"history_rate": 100.0, "history_burst": 20, "window": 50, "max_batch": 10}
    args.update(kw)
    return Forwarder(**args)  # type: ignore[arg-type]


def test_live_goes_before_history_and_history_is_rate_bound() -> None:
    fw = _fw()
    fw.commit(1000)  # an outage left 1000 records
    fw.connect(now=0.0)
    fw.commit(1005)  # live records arrive
    first = fw.next_send(0.0)
    assert first == Send(1001, 1005, historical=False)
    sent = [fw.next_send(0.0), fw.next_send(0.0), fw.next_send(0.0)]
    assert sent == [Send(1, 10, True), Send(11, 20, True), None]  # burst of 20 used up
    fw.commit(1006)
    assert fw.next_send(0.0) == Send(1006, 1006, historical=False)  # live never waits
    assert fw.wait_s(0.0) == pytest.approx(0.01)
    assert fw.next_send(0.05) == Send(21, 25, True)  # 0.05 s * 100/s = 5 tokens


def test_history_window_waits_for_acks() -> None:
    fw = _fw(history_rate=1e6, history_burst=1000, window=30)
    fw.commit(100)
    fw.connect(now=0.0)
    sends = []
    while (s := fw.next_send(1.0)) is not None:
        sends.append(s)
    assert sends[-1].last == 30 and fw.history_in_flight == 30
    assert fw.wait_s(1.0) is None  # blocked on acks, not on time
    assert fw.ack(25)
    assert fw.next_send(1.0) == Send(31, 40, True)


def test_reconnect_resends_from_the_last_ack() -> None:
    fw = _fw()
    fw.connect(now=0.0)
    fw.commit(8)
    assert fw.next_send(0.0) == Send(1, 8, False)
    fw.ack(3)
    fw.disconnect()
    assert fw.next_send(0.1) is None
    fw.commit(12)
    fw.connect(now=1.0)
    assert fw.next_send(1.0) == Send(4, 12, True)


def test_bad_ack_is_refused() -> None:
    fw = _fw()
    fw.commit(5)
    assert not fw.ack(6)
    assert fw.bad_acks == 1 and fw.acked == 0


def test_twin_reporting_less_than_acked_gets_a_resend() -> None:
    fw = _fw()
    fw.connect(now=0.0)
    fw.commit(10)
    fw.next_send(0.0)
    fw.ack(10)
    fw.disconnect()
    fw.connect(now=1.0, resume_after=4)  # the twin lost data
    assert fw.next_send(1.0) == Send(5, 10, True)


@dataclass
class Model:
    """A twin over an at-least-once link: sends in transit are lost on a disconnect."""

    fw: Forwarder
    now: float = 0.0
    committed: int = 0
    in_transit: list[Send] = field(default_factory=list)
    received: set[int] = field(default_factory=set)
    log: list[tuple[int, Send]] = field(default_factory=list)  # (connection no, send)
    connection: int = 0
    hist_start: dict[int, tuple[float, int]] = field(default_factory=dict)

    def prefix(self) -> int:
        n = self.fw.acked
        while n + 1 in self.received:
            n += 1
        return n

    def op(self, kind: str, arg: int) -> None:
        fw = self.fw
        if kind == "commit":
            self.committed += arg
            fw.commit(self.committed)
        elif kind == "tick":
            self.now += arg / 100
            for _ in range(arg):
                s = fw.next_send(self.now)
                if s is None:
                    break
                self.in_transit.append(s)
                self.log.append((self.connection, s))
        elif kind == "deliver":
            for s in self.in_transit:
                self.received.update(range(s.first, s.last + 1))
            self.in_transit.clear()
        elif kind == "ack":
            assert fw.ack(self.prefix())
        elif kind == "drop":
            fw.disconnect()
            self.in_transit.clear()
        elif kind == "connect" and not fw.connected:
            self.connection += 1
            fw.connect(self.now)
            self.hist_start[self.connection] = (self.now, fw.acked)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["commit", "tick", "deliver", "ack", "drop", "connect"]), st.integers(1, 40)
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, rate=st.sampled_from([5.0, 50.0, 1000.0]), window=st.integers(1, 60))
def test_every_committed_record_is_sent_at_least_once_and_in_order(
    ops: list[tuple[str, int]], rate: float, window: int
) -> None:
    fw = Forwarder(history_rate=rate, history_burst=10, window=window, max_batch=7)
    m = Model(fw)
    m.op("connect", 0)
    for kind, arg in ops:
        m.op(kind, arg)
    # the link comes back for good: everything must get through
    m.op("connect", 0)
    for _ in range(3_000):
        if fw.acked == m.committed:
            break
        m.op("tick", 40)
        m.op("deliver", 0)
        m.op("ack", 0)
    assert fw.acked == m.committed
    assert m.received >= set(range(1, m.committed + 1))
    # in order: per connection, history and live each form one ascending contiguous run;
    # all history of a connection lies below its live records
    for conn in {c for c, _ in m.log}:
        sends = [s for c, s in m.log if c == conn]
        hist = [s for s in sends if s.historical]
        live = [s for s in sends if not s.historical]
        for run in (hist, live):
            for a, b in itertools.pairwise(run):
                assert b.first > a.last  # ascending, nothing resent within one connection
        if hist and live:
            assert max(s.last for s in hist) < min(s.first for s in live)
        if hist:
            assert hist[0].first == m.hist_start[conn][1] + 1
        # the rate bound: historical records never exceed burst + rate * elapsed
        t0 = m.hist_start[conn][0]
        total = sum(s.count for s in hist)
        elapsed = max(0.0, m.now - t0)
        assert total <= 10 + rate * elapsed + 1e-6
