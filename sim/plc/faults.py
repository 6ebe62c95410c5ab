"""Faults the simulated PLC can be told to show: per signal and PLC-wide. Pure data + math.

Per signal (``SignalFault``), applied to the value a channel would otherwise serve:

    stuck         frozen at the value served when the fault was set
    drift         + value * (now - since)          value in units per second (default 1)
    offset        + value                          units (default 10 % of the range)
    noise         + gauss(0, value)                extra sigma (default 2 % of the range)
    out_of_range  = value, default high + 10 % of the range (beyond the plausible range)
    dropout       reads touching the signal's registers answer exception 4 (device failure)

PLC-wide (``PlcFaults``): slow replies (delay in ms), stop answering (requests are accepted
on the wire and never answered), malformed read replies (each carries a transaction id one
above its request's: a master that checks replies against requests must reject them), drop
connections (a one-shot action, not a state).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class FaultKind(enum.Enum):
    STUCK = "stuck"
    DRIFT = "drift"
    OFFSET = "offset"
    NOISE = "noise"
    OUT_OF_RANGE = "out_of_range"
    DROPOUT = "dropout"


class PlcFaultKind(enum.Enum):
    SLOW = "slow"
    STOP = "stop"
    DROP = "drop"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class SignalFault:
    """One fault on one signal; ``value`` is in the signal's engineering units (see module)."""

    kind: FaultKind
    value: float
    since: float
    frozen: float  # value served when the fault was set (used by STUCK)


@dataclass(frozen=True)
class PlcFaults:
    delay_s: float = 0.0
    stopped: bool = False
    malformed: bool = False


def default_value(kind: FaultKind, low: float, high: float) -> float:
    """The fault's magnitude when the request gives none, from the signal's plausible range."""
    span = high - low
    return {
        FaultKind.STUCK: 0.0,
        FaultKind.DRIFT: 1.0,
        FaultKind.OFFSET: 0.1 * span,
        FaultKind.NOISE: 0.02 * span,
        FaultKind.OUT_OF_RANGE: high + 0.1 * span,
        FaultKind.DROPOUT: 0.0,
    }[kind]


def apply(value: float, fault: SignalFault | None, now: float, rng: random.Random) -> float:
    """The value a faulty channel serves instead of ``value`` (DROPOUT leaves it as is)."""
    if fault is None:
        return value
    match fault.kind:
        case FaultKind.STUCK:
            return fault.frozen
        case FaultKind.DRIFT:
            return value + fault.value * max(0.0, now - fault.since)
        case FaultKind.OFFSET:
            return value + fault.value
        case FaultKind.NOISE:
            return value + rng.gauss(0.0, fault.value)
        case FaultKind.OUT_OF_RANGE:
            return fault.value
        case FaultKind.DROPOUT:
            return value
