"""Reconnect backoff (agent.core.backoff): capped exponential with equal jitter, sans-IO."""

from __future__ import annotations

import random

import pytest

from agent.core.backoff import Backoff

pytestmark = pytest.mark.timeout(10)


def test_delays_double_up_to_max_within_half_to_full() -> None:
    b = Backoff(0.1, 1.0, random.Random(7))
    now = 0.0
    for n, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]):
        d = b.failed(now)
        assert max(0.1, cap / 2) <= d <= cap, (n, d)
        assert not b.due(now + d - 1e-6) and b.due(now + d)
        now += d


def test_jitter_spreads_the_delays() -> None:
    b = Backoff(0.5, 1.0, random.Random(1))
    for _ in range(5):
        b.failed(0.0)
    delays = [b.failed(0.0) for _ in range(200)]
    assert min(delays) < 0.6 and max(delays) > 0.9  # not lock-step


def test_success_starts_over() -> None:
    b = Backoff(0.5, 30.0, random.Random(3))
    for _ in range(10):
        b.failed(0.0)
    b.succeeded()
    assert b.due(0.0)
    assert b.failed(0.0) == 0.5  # the first delay after a success is min_s


def test_many_failures_do_not_overflow() -> None:
    b = Backoff(0.5, 30.0)
    b.failures = 10_000
    assert b.failed(0.0) <= 30.0


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_impossible_bounds_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError):
        Backoff(lo, hi)
