"""The runtime's side of the PLC: every Modbus exchange of the agent goes through here.

``PlantIO`` wraps the ``PlcClient`` with what the runtime needs around it:

- one lock, so a safe-state write decided between ticks waits at most for the one request
  in flight, and the tick's reads, writes and heartbeat never interleave;
- one I/O budget per tick (``timing.io_budget_s``): a slow or dead PLC yields a complete tick
  with BAD readings (and FAILSAFE) instead of a tick that outlasts the native watchdog's
  deadline — that watchdog is for a hung agent, not a slow PLC;
- the PLC's communication watchdog: the heartbeat register changed once per complete tick,
  the configured timeout and the fallback latch read back (every ``WATCHDOG_CHECK_S``, or
  every tick while not verified), a latch cleared only while the outputs are safe and
  heartbeats flow.

Nothing here decides anything about safety; it reports (``watchdog_ok``, readings, what the
PLC acknowledged) and the controller decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from agent.errors import WriteRefused
from agent.modbus.client import PlcClient, WriteResult
from agent.profile.model import Profile
from agent.readings import Quality, Reading

log = logging.getLogger(__name__)

T = TypeVar("T")

WATCHDOG_CHECK_S = 2.0  # how often a verified PLC watchdog is read back again


class PlantIO:
    """The agent's Modbus I/O for one runtime (see the module docstring)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.plc = PlcClient(profile)  # binds to the running loop: build inside it
        self.budget_s = profile.timing.io_budget_s
        self.budget_overruns = 0
        self.watchdog_ok = False
        self._watchdog_checked: float | None = None
        self._hb_value = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.plc.connected

    async def within(self, until: float, coro: Coroutine[Any, Any, T]) -> T | None:
        """``coro``'s result, or None (counted) if the tick's I/O budget ran out first."""
        try:
            async with asyncio.timeout_at(until):
                return await coro
        except TimeoutError:
            self.budget_overruns += 1
            return None

    async def read_signals(self, now: float, until: float) -> tuple[dict[str, Reading], bool]:
        """Every signal (BAD ones say why) and whether the PLC answered at all."""
        if not await self.plc.ensure_connected(now):
            return self._all_bad("PLC disconnected", now), False
        read = await self.within(until, self._locked(self.plc.read_signals()))
        if read is None:
            return self._all_bad(
                f"PLC I/O exceeded the tick budget ({self.budget_s * 1000:.0f} ms)", now), False
        return read, self.plc.connected and _answered(read)

    async def read_outputs(self) -> dict[str, float | None]:
        """What each declared output holds in the PLC now (None where unreadable)."""
        if not self.plc.connected:
            return {o.name: None for o in self.profile.outputs}
        return await self._locked(self.plc.read_outputs())

    async def write(self, values: Mapping[str, float]) -> WriteResult | None:
        """Write declared outputs; None if the PLC is unreachable. A refused write is a bug
        of the caller (the controller only plans declared outputs within limits): logged."""
        if not await self.plc.ensure_connected():
            return None
        try:
            return await self._locked(self.plc.write_outputs(values))
        except WriteRefused:
            log.exception("a refused write was planned (a bug): %s", dict(values))
            return None

    async def heartbeat(self) -> None:
        """Change the PLC watchdog's heartbeat register (end of a complete tick)."""
        self._hb_value = (self._hb_value + 1) & 0xFFFF
        if self.plc.connected:
            await self._locked(self.plc.heartbeat(self._hb_value))

    def watchdog_due(self, now: float) -> bool:
        return (not self.watchdog_ok or self._watchdog_checked is None
                or now - self._watchdog_checked >= WATCHDOG_CHECK_S)

    async def check_watchdog(self, now: float, outputs_safe: bool) -> None:
        """Read the PLC watchdog's configured timeout and latch; clear a latch while the
        outputs are safe and heartbeats flow (the PLC accepts the reset only then)."""
        self._watchdog_checked = now
        if not self.plc.connected:
            return
        wd = self.profile.plc_watchdog
        async with self._lock:
            timeout_ms, latched = await self.plc.read_plc_watchdog()
            ok = timeout_ms == wd.expected_timeout_ms
            if timeout_ms is not None and not ok:
                log.error("PLC communication watchdog timeout is %s ms, profile expects %d ms",
                          timeout_ms, wd.expected_timeout_ms)
            if latched and outputs_safe and wd.reset_address is not None and self._hb_value:
                log.warning("PLC communication watchdog had fallen back; clearing its latch")
                await self.plc.reset_plc_watchdog()
                _, latched = await self.plc.read_plc_watchdog()
        ok = ok and not latched
        if ok != self.watchdog_ok:
            log.info("PLC communication watchdog %s", "verified" if ok else "NOT verified")
        self.watchdog_ok = ok

    async def close(self) -> None:
        await self.plc.close()

    async def _locked(self, coro: Coroutine[Any, Any, T]) -> T:
        async with self._lock:
            return await coro

    def _all_bad(self, why: str, now: float) -> dict[str, Reading]:
        return {s.name: Reading(s.name, None, None, Quality.BAD, now, why)
                for s in self.profile.signals}


def _answered(readings: Mapping[str, Reading]) -> bool:
    """The PLC answered at least one request (a Modbus exception reply is an answer)."""
    return any(r.quality is Quality.GOOD or (r.error or "").startswith("modbus exception")
               for r in readings.values())
