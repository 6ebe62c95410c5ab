"""The twin link's bounded work (sans-IO): the inbox bound and the reply budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.pacing import Inbox, RateBudget
from agent.model.messages import Origin

pytestmark = pytest.mark.timeout(30)

O1 = Origin(1, 7)


def test_inbox_keeps_arrival_order_and_is_full_at_its_frame_bound() -> None:
    box = Inbox(max_frames=3, max_bytes=1000)
    box.put([b"a", b"bb"], 1.0, O1)
    assert len(box) == 2 and not box.full
    box.put([b"c", b"d"], 2.0, Origin(1, 8))  # one read may overshoot by what it held
    assert box.full and len(box) == 4 and box.high_water == 4
    got = [box.take() for _ in range(4)]
    assert [(w.body, w.t, w.origin.epoch) for w in got if w] == [
        (b"a", 1.0, 7), (b"bb", 1.0, 7), (b"c", 2.0, 8), (b"d", 2.0, 8)]
    assert box.take() is None and not box.full


def test_inbox_is_full_at_its_byte_bound_and_clear_counts() -> None:
    box = Inbox(max_frames=100, max_bytes=10)
    box.put([b"x" * 6], 0.0, O1)
    assert not box.full
    box.put([b"y" * 4], 0.0, O1)
    assert box.full
    box.take()
    assert not box.full, "bytes are given back as messages are taken"
    assert box.clear() == 1 and len(box) == 0 and not box.full
    box.put([], 0.0, O1)
    assert len(box) == 0


def test_inbox_refuses_a_nonsense_bound() -> None:
    with pytest.raises(ValueError):
        Inbox(0, 10)
    with pytest.raises(ValueError):
        Inbox(10, 0)


def test_budget_allows_a_burst_then_the_rate() -> None:
    b = RateBudget(rate=10.0)
    assert sum(b.take(0.0) for _ in range(50)) == 10, "starts full: one second's worth"
    assert not b.take(0.05)
    assert b.take(0.1) and not b.take(0.1), "one token per 1/rate"
    assert sum(b.take(100.0) for _ in range(50)) == 10, "never more than the burst"


@given(times=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=300))
def test_budget_never_exceeds_burst_plus_rate_times_elapsed(times: list[float]) -> None:
    times.sort()
    b = RateBudget(rate=5.0, burst=3.0)
    taken = sum(b.take(t) for t in times)
    assert taken <= 3 + 5.0 * (times[-1] - times[0]) + 1e-9


@pytest.mark.parametrize(("rate", "burst"), [(0.0, None), (-1.0, None), (float("inf"), None),
                                             (1.0, 0.0), (float("nan"), 1.0)])
def test_budget_refuses_nonsense(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        RateBudget(rate, burst)
