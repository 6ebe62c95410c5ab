"""Sans-IO reconnect delays: capped exponential backoff with full jitter.

``delay(n) = uniform(0, min(max_s, min_s * 2**n))`` for the n-th consecutive failure
(n = 0, 1, ...), as in the AWS architecture blog's "full jitter": many agents restarting
together with one twin do not reconnect in lock-step. ``reset()`` after a good session.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay generator. ValueError if ``min_s <= 0`` or ``max_s < min_s``."""

    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not self.min_s > 0:
            raise ValueError(f"backoff min_s must be > 0, got {self.min_s}")
        if not self.max_s >= self.min_s:
            raise ValueError(f"backoff max_s {self.max_s} < min_s {self.min_s}")

    def cap(self) -> float:
        """Upper bound of the next delay."""
        # 2**n grows without bound; stop doubling once past max_s (avoids float overflow).
        exp = min(self.attempt, 64)
        return min(self.max_s, self.min_s * 2.0**exp)

    def next_delay(self) -> float:
        """The next delay in seconds, in [0, cap()]; advances the attempt counter."""
        d = self.rng.uniform(0.0, self.cap())
        self.attempt += 1
        return d

    def reset(self) -> None:
        self.attempt = 0
