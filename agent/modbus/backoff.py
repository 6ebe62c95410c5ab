"""Dead bus units (sans-IO; ``now`` passed in), on top of :class:`agent.backoff.Backoff`.

- :class:`UnitGuard` -- per Modbus unit id: ``threshold`` consecutive timeouts back the unit
  off (its requests are skipped, not sent) until a :class:`Backoff` delay has passed; then
  one probe is let through. An answer of any kind (data or a Modbus exception) clears it.
  This keeps one dead RTU slave from costing a full timeout on every poll.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from agent.backoff import Backoff

__all__ = ["Backoff", "UnitGuard"]


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
