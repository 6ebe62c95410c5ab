"""What one poll of the PLC yields: a decoded reading per signal, with its quality."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.Enum):
    """Quality of a reading or a vote. A reading is GOOD or BAD; a vote may be DEGRADED."""

    GOOD = "good"
    DEGRADED = "degraded"
    BAD = "bad"


@dataclass(frozen=True)
class Reading:
    """One signal as read at monotonic time ``t``.

    ``raw`` is what came off the wire (registers, or a bit); ``value`` the decoded
    engineering value. A BAD reading has ``value`` None and says why in ``error``
    (timeout, Modbus exception code, disconnected, ...).
    """

    name: str
    raw: tuple[int, ...] | bool | None
    value: float | None
    quality: Quality
    t: float
    error: str | None = None
