"""Capped exponential backoff with jitter, for every reconnect in the agent (sans-IO).

Nothing here reads a clock: every method takes ``now`` (monotonic seconds). After the n-th
consecutive failure the next attempt is due after a delay drawn uniformly from ``[d/2, d]``
with ``d = min(max_s, min_s * 2**(n-1))``, never below ``min_s`` and never above ``max_s``
("equal jitter": agents restarting together with one PLC or one twin do not retry in
lock-step, and no retry comes sooner than ``min_s``). A success resets it.

Used by the Modbus client (PLC reconnects, and per bus unit by ``UnitGuard``) and by the twin
link (reconnects to the twin).

:class:`UnitGuard` -- dead bus units, per Modbus unit id: ``threshold`` consecutive timeouts
back the unit off (its requests are skipped, not sent) until a :class:`Backoff` delay has
passed; then one probe is let through. An answer of any kind (data or a Modbus exception)
clears it. This keeps one dead RTU slave from costing a full timeout on every poll.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    next_at: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")

    def due(self, now: float) -> bool:
        """True if an attempt may be made at ``now``."""
        return now >= self.next_at

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the delay until the next attempt."""
        self.failures += 1
        cap = min(self.max_s, self.min_s * 2.0 ** min(self.failures - 1, 60))
        delay = max(self.min_s, self.rng.uniform(cap / 2.0, cap))
        self.next_at = now + delay
        return delay

    def succeeded(self) -> None:
        """Record a success: the next failure starts again from ``min_s``."""
        self.failures = 0
        self.next_at = 0.0


@dataclass
class UnitGuard:
    min_s: float
    max_s: float
    threshold: int = 2
    rng: random.Random = field(default_factory=random.Random)
    _timeouts: dict[int, int] = field(default_factory=dict)
    _backoff: dict[int, Backoff] = field(default_factory=dict)

    def available(self, unit_id: int, now: float) -> bool:
        """False while ``unit_id`` is backed off at ``now``."""
        b = self._backoff.get(unit_id)
        return b is None or b.failures == 0 or b.due(now)

    def backed_off(self, unit_id: int) -> bool:
        """True if the unit has crossed the timeout threshold and not answered since."""
        b = self._backoff.get(unit_id)
        return b is not None and b.failures > 0

    def timed_out(self, unit_id: int, now: float) -> None:
        """Record a request to ``unit_id`` that got no answer."""
        n = self._timeouts.get(unit_id, 0) + 1
        self._timeouts[unit_id] = n
        if n >= self.threshold:
            b = self._backoff.setdefault(unit_id, Backoff(self.min_s, self.max_s, self.rng))
            b.failed(now)

    def answered(self, unit_id: int) -> None:
        """Record any answer from ``unit_id`` (data or a Modbus exception reply)."""
        self._timeouts.pop(unit_id, None)
        b = self._backoff.get(unit_id)
        if b is not None:
            b.succeeded()

    def backed_off_units(self) -> tuple[int, ...]:
        """Units currently backed off, sorted."""
        return tuple(sorted(u for u in self._backoff if self.backed_off(u)))
