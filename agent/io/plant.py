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
  heartbeats flow;
- the gate against stale writes: once the native watchdog has fired (``fired``, set by the
  runtime to the guard's latch), or when a decision is older than
  ``timing.watchdog_deadline_s`` at the moment its frame would go out, nothing but the safe
  set reaches the PLC — not a recommendation, not the PLC watchdog's heartbeat. A hang
  between a decision and its write must never let that decision out after the watchdog
  wrote the safe state. Refusals are counted (``stale_refused``) and logged;
- the safe set's confirmation: a safe write is sent urgently (past the unit and reconnect
  backoff) and what the PLC acknowledged is read back (:meth:`PlantIO.read_back`).

Nothing here decides anything about safety; it reports (``watchdog_ok``, readings, what the
PLC acknowledged) and the controller decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from agent.io.modbus.client import PlcClient, WriteResult
from agent.model.errors import WriteRefused
from agent.model.profile import Profile
from agent.model.readings import Quality, Reading
from agent.protocol.modbus.codec import encode_output

log = logging.getLogger(__name__)

T = TypeVar("T")

WATCHDOG_CHECK_S = 2.0  # how often a verified PLC watchdog is read back again
MISMATCH_REMIND_S = 60.0  # a watchdog timeout mismatch is logged again this often


class PlantIO:
    """The agent's Modbus I/O for one runtime (see the module docstring)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.plc = PlcClient(profile)  # binds to the running loop: build inside it
        self.budget_s = profile.timing.io_budget_s
        self.budget_overruns = 0
        self.watchdog_ok = False
        self.watchdog_configured = False  # the PLC holds the timeout the profile expects
        self.watchdog_latched = False  # its "fell back" latch, as last read
        self._watchdog_checked: float | None = None
        self._hb_value = 0
        self._lock = asyncio.Lock()
        self.stale_after_s = profile.timing.watchdog_deadline_s
        self.fired: Callable[[], bool] = lambda: False  # the native watchdog's latch
        self.stale_refused = 0
        # the PLC communication watchdog as last read back: (timeout ms, fault latched)
        self.watchdog_read: tuple[int | None, bool | None] = (None, None)
        self._mismatch_since: float | None = None
        self._mismatch_told = 0.0

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
            return self._all_bad(self.plc.session.disconnect_reason(), now), False
        read = await self.within(until, self._locked(self.plc.read_signals()))
        if read is None:
            return self._all_bad(
                f"PLC I/O exceeded the tick budget ({self.budget_s * 1000:.0f} ms)", now), False
        return read, self.plc.connected and _answered(read)

    async def read_outputs(self) -> dict[str, float | None]:
        """What each declared output holds in the PLC now (None where unreadable)."""
        if not self.plc.connected:
            return {o.name: None for o in self.profile.writes}
        return await self._locked(self.plc.read_outputs())

    def stale(self, decided_at: float) -> str | None:
        """Why a decision taken at loop time ``decided_at`` must not reach the PLC now
        (the native watchdog fired, or it is older than the watchdog deadline), or None."""
        if self.fired():
            return "the native watchdog has fired: only the safe set may be written"
        age = asyncio.get_running_loop().time() - decided_at
        if age > self.stale_after_s:
            return (f"decided {age * 1000:.0f} ms ago, over the watchdog deadline "
                    f"({self.stale_after_s * 1000:.0f} ms)")
        return None

    async def write(self, values: Mapping[str, float], *, safe: bool = False,
                    decided_at: float | None = None) -> WriteResult | None:
        """Write declared outputs; None if the PLC is unreachable.

        ``safe``: the values are the safe set: sent past every backoff, never refused as
        stale. Otherwise each frame is refused (its outputs fail with the reason, counted in
        ``stale_refused``) when :meth:`stale` says so for ``decided_at``, asked right before
        that frame would go out. A write refused by the client is a bug of the caller (the
        controller only plans declared outputs within limits): logged."""
        if not safe and not await self.plc.ensure_connected():
            return None
        gate = None if safe or decided_at is None else self._gate(decided_at, "write")
        try:
            async with self._lock:
                result = await self.plc.write_outputs(values, urgent=safe, gate=gate)
        except WriteRefused:
            log.exception("a refused write was planned (a bug): %s", dict(values))
            return None
        if safe and not result.written and not self.plc.connected:
            return None
        return result

    def _gate(self, decided_at: float, what: str) -> Callable[[], str | None]:
        def gate() -> str | None:
            why = self.stale(decided_at)
            if why is not None:
                self.stale_refused += 1
                log.error("%s refused: %s", what, why)
            return why
        return gate

    async def read_back(self, values: Mapping[str, float], names: Iterable[str]) -> set[str]:
        """Of ``names`` (acknowledged writes of ``values``), those the PLC now holds exactly
        (same raw registers or coil); an output that cannot be read is not confirmed."""
        names = [n for n in names if n in values]
        if not names or not self.plc.connected:
            return set()
        actual = await self.read_outputs()
        same: set[str] = set()
        for name in names:
            held = actual.get(name)
            if held is None:
                continue
            output = self.profile.output(name)
            try:
                if encode_output(output, held) == encode_output(output, values[name]):
                    same.add(name)
            except (WriteRefused, ValueError):  # the PLC holds a value outside the limits
                continue
        return same

    async def heartbeat(self, tick_start: float) -> bool:
        """Change the PLC watchdog's heartbeat register (end of a complete tick). Refused
        (False, counted in ``stale_refused``) for a tick that began longer than the watchdog
        deadline ago or after the native watchdog fired: a stalled loop must not tell the
        PLC it is alive."""
        if not self.plc.connected:
            return False
        async with self._lock:
            value = (self._hb_value + 1) & 0xFFFF
            result = await self.plc.heartbeat(
                value, gate=self._gate(tick_start, "PLC watchdog heartbeat of a late tick"))
        if result.ok:
            self._hb_value = value
        return result.ok

    def watchdog_due(self, now: float) -> bool:
        return (not self.watchdog_ok or self._watchdog_checked is None
                or now - self._watchdog_checked >= WATCHDOG_CHECK_S)

    async def check_watchdog(self, now: float, outputs_safe: bool) -> None:
        """Read the PLC watchdog's configured timeout and latch; clear a latch while
        ``outputs_safe`` (the outputs are safe, or the agent is starting: the PLC's fallback
        covered its absence) and heartbeats flow (the PLC accepts the reset only then).
        ``watchdog_ok``: the timeout as configured and no latch; ``watchdog_configured``:
        the timeout as configured; ``watchdog_latched``: the latch as last read."""
        self._watchdog_checked = now
        if not self.plc.connected:
            return
        wd = self.profile.plc_watchdog
        async with self._lock:
            timeout_ms, latched = await self.plc.read_plc_watchdog()
            ok = timeout_ms == wd.expected_timeout_ms
            self.watchdog_read = (timeout_ms, latched)
            if timeout_ms is not None and not ok:
                self._mismatch(now, timeout_ms)
            else:
                self._mismatch_since = None
            if latched and outputs_safe and wd.reset_address is not None and self._hb_value:
                log.warning("PLC communication watchdog had fallen back; clearing its latch")
                await self.plc.reset_plc_watchdog()
                _, latched = await self.plc.read_plc_watchdog()
        self.watchdog_configured = ok
        self.watchdog_latched = bool(latched)
        ok = ok and not latched
        if ok != self.watchdog_ok:
            log.info("PLC communication watchdog %s", "verified" if ok else "NOT verified")
        self.watchdog_ok = ok

    def _mismatch(self, now: float, read_ms: int) -> None:
        """One ERROR that says what to change, then a reminder every MISMATCH_REMIND_S."""
        wd = self.profile.plc_watchdog
        if self._mismatch_since is None:
            self._mismatch_since, self._mismatch_told = now, now
            log.error("PLC communication watchdog timeout mismatch: the PLC holds %d ms "
                      "(holding register %d, unit %d), %s expects %d ms "
                      "(plc_watchdog.expected_timeout_ms). Set the PLC's watchdog timeout to "
                      "%d ms, or, if %d ms is right for this plant, set expected_timeout_ms = "
                      "%d in the profile (it must stay above timing.watchdog_deadline_s). "
                      "Until then the plant is held safe.", read_ms, wd.timeout_address,
                      wd.unit_id, self.profile.source, wd.expected_timeout_ms,
                      wd.expected_timeout_ms, read_ms, read_ms)
        elif now - self._mismatch_told >= MISMATCH_REMIND_S:
            self._mismatch_told = now
            log.warning("PLC communication watchdog timeout still %d ms, expected %d ms (for "
                        "%.0f s; see the error above)", read_ms, wd.expected_timeout_ms,
                        now - self._mismatch_since)

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
