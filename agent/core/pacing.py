"""Bounded work on the twin link (sans-IO): what waits to be delivered, and the reply budget.

The link (``agent.io.twin.link``) reads a frame stream the twin controls; an authenticated twin,
or a bug in one, must never be able to stall the control loop that shares the event loop
with it (PROTOCOL.md §6.1). Two pieces, no I/O and no clock here (``now`` is passed in):

* :class:`Inbox` -- twin messages read but not delivered yet, in arrival order, each with
  its arrival time and :class:`~agent.model.messages.Origin`. Bounded: :attr:`Inbox.full`
  once it holds ``max_frames`` messages or ``max_bytes`` of frame bodies; the link stops
  reading while it is full (TCP flow control then holds the twin back), so it never holds
  more than the bound plus one read.
* :class:`RateBudget` -- a token bucket: at most ``rate`` takes per second on average,
  bursts of at most ``burst``. The link spends one per reply (``recommend_result``); a
  reply over the budget is dropped and counted, never queued.
"""

from __future__ import annotations

import collections
import math
from typing import NamedTuple

from agent.model.messages import Origin


class Waiting(NamedTuple):
    """One frame waiting for delivery (a tuple: thousands may be made per second)."""

    body: bytes  # the frame body, not decoded yet (``agent.protocol.twin.frames.decode_body``)
    t: float  # monotonic arrival time (when it was read)
    origin: Origin


class Inbox:
    """FIFO of :class:`Waiting` messages with a bound; ValueError for a bound < 1."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("max_frames and max_bytes must be >= 1")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[bytes, float, Origin]] = collections.deque()
        self._bytes = 0
        self.high_water = 0  # the most messages ever waiting at once

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """At or over the bound: read nothing more until :meth:`take` made room."""
        return len(self._items) >= self.max_frames or self._bytes >= self.max_bytes

    def put(self, bodies: list[bytes], t: float, origin: Origin) -> None:
        """Append frames read together (always taken: the caller stops reading while
        :attr:`full`). One call per read: this is the hot path of a flood."""
        if not bodies:
            return
        self._items.extend([(body, t, origin) for body in bodies])
        self._bytes += sum(map(len, bodies))
        self.high_water = max(self.high_water, len(self._items))

    def take(self) -> Waiting | None:
        """The oldest waiting message, or None when empty."""
        if not self._items:
            return None
        item = Waiting(*self._items.popleft())
        self._bytes -= len(item.body)
        return item

    def clear(self) -> int:
        """Discard everything waiting; returns how many."""
        n = len(self._items)
        self._items.clear()
        self._bytes = 0
        return n


class RateBudget:
    """Token bucket: ``rate`` per second, at most ``burst`` (default ``rate``) at once.

    Starts full. ValueError unless both are finite and > 0.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        burst = rate if burst is None else burst
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst > 0):
            raise ValueError(f"need a finite rate and burst > 0, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._t: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at ``now`` (monotonic seconds); False if none is left."""
        if self._t is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._t) * self.rate)
        self._t = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
