"""Reconnect backoff: capped exponential with full jitter."""

from __future__ import annotations

import random

import pytest

from agent.twin.backoff import Backoff

pytestmark = pytest.mark.timeout(10)


def test_cap_doubles_up_to_max_and_delays_stay_under_it() -> None:
    b = Backoff(0.1, 1.0, random.Random(7))
    caps = []
    for _ in range(200):
        cap = b.cap()
        d = b.next_delay()
        assert 0.0 <= d <= cap
        caps.append(cap)
    assert caps[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert set(caps[4:]) == {1.0}


def test_full_jitter_spreads_the_delays() -> None:
    b = Backoff(1.0, 1.0, random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9  # not lock-step


def test_reset_starts_over() -> None:
    b = Backoff(0.5, 30.0, random.Random(3))
    for _ in range(10):
        b.next_delay()
    assert b.cap() == 30.0
    b.reset()
    assert b.cap() == 0.5


def test_many_failures_do_not_overflow() -> None:
    b = Backoff(0.5, 30.0)
    b.attempt = 10_000
    assert b.cap() == 30.0


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_impossible_bounds_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError):
        Backoff(lo, hi)
