"""The PLC's own communication watchdog, as on WAGO/Beckhoff couplers. Pure: ``now`` passed in.

Disabled when the timeout is 0. ARMED by the first heartbeat write. Once armed, if the
heartbeat value has not CHANGED for the timeout, ``check`` reports one trip (the PLC then
applies its fallback outputs) and the fault is LATCHED. Writing the same value again does
not count as a heartbeat. The latch stays until ``reset`` is called while heartbeats are
coming in (the last change is younger than the timeout); writes are accepted while latched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchdogStatus:
    timeout_ms: int
    armed: bool
    latched: bool
    trips: int
    last_change: float | None
    last_value: int | None


class CommWatchdog:
    def __init__(self, timeout_ms: int) -> None:
        if timeout_ms < 0:
            raise ValueError("timeout_ms must be >= 0")
        self.timeout_ms = timeout_ms
        self._armed = False
        self._latched = False
        self._tripped = False  # tripped for the current silence; cleared by a change
        self._trips = 0
        self._last_value: int | None = None
        self._last_change: float | None = None

    @property
    def latched(self) -> bool:
        return self._latched

    def heartbeat(self, value: int, now: float) -> None:
        """A write of ``value`` to the heartbeat register arrived at ``now``."""
        if not self._armed or value != self._last_value:
            self._armed = True
            self._last_value = value
            self._last_change = now
            self._tripped = False

    def check(self, now: float) -> bool:
        """True exactly once per silence longer than the timeout (apply the fallback then)."""
        if self.timeout_ms == 0 or not self._armed or self._tripped:
            return False
        assert self._last_change is not None
        if now - self._last_change >= self.timeout_ms / 1000.0:
            self._tripped = True
            self._latched = True
            self._trips += 1
            return True
        return False

    def reset(self, now: float) -> bool:
        """Clear the latch if heartbeats are coming in; returns whether it is now clear."""
        alive = (
            self._armed
            and not self._tripped
            and self._last_change is not None
            and (self.timeout_ms == 0 or now - self._last_change < self.timeout_ms / 1000.0)
        )
        if alive or self.timeout_ms == 0:
            self._latched = False
        return not self._latched

    def status(self) -> WatchdogStatus:
        return WatchdogStatus(
            self.timeout_ms,
            self._armed,
            self._latched,
            self._trips,
            self._last_change,
            self._last_value,
        )
