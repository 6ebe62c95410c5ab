"""The runtime's telemetry feed: turns what the controller decided into spooled records.

Thin glue between the runtime and :class:`agent.runtime.telemetry_pump.TelemetryPump`: it reads the
wall clock for ``t_ms`` (informative only) and calls the pure builders of
``agent.protocol.telemetry``; every call is a ``submit`` (no I/O on the loop). Without a pump
(telemetry disabled, no twin configured, or the spool could not be set up) every method is a
no-op: telemetry is never a reason for control to fail.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agent.config.agentconfig import AgentConfig
from agent.core.controller import Controller, Decision
from agent.core.recommend import ShadowLine, Verdict
from agent.protocol import telemetry as records
from agent.runtime.telemetry_pump import Send, SendMany, TelemetryPump

log = logging.getLogger(__name__)


def _ms() -> int:
    return time.time_ns() // 1_000_000


class TelemetryFeed:
    """See the module docstring. ``pump`` None: disabled."""

    def __init__(self, pump: TelemetryPump | None, every_n_polls: int = 1) -> None:
        self.pump = pump
        self.every_n_polls = every_n_polls
        self._polls = 0
        self._trips: set[str] = set()

    @classmethod
    async def open(cls, config: AgentConfig, state_dir: Path, send: Send,
                   send_many: SendMany | None = None) -> TelemetryFeed:
        """A feed with a pump on ``<state_dir>/telemetry.sqlite``; disabled if telemetry is
        off in ``config`` or the spool cannot be set up (logged, control unaffected)."""
        if not config.telemetry.enabled:
            return cls(None)
        try:
            pump = await TelemetryPump.open(state_dir, config.spool, config.telemetry, send,
                                           send_many)
        except Exception:  # a spool bug must not keep the plant's guard from running
            log.exception("telemetry disabled: the spool could not be set up")
            return cls(None)
        return cls(pump, config.telemetry.every_n_polls)

    @property
    def enabled(self) -> bool:
        return self.pump is not None

    def _submit(self, record: bytes) -> None:
        if self.pump is not None:
            self.pump.submit(record)

    def decision(self, d: Decision) -> None:
        """Transitions, link changes and expired recommendations of one decision."""
        if self.pump is None:
            return
        ms = _ms()
        for tr in d.transitions:
            self._submit(records.transition_record(tr, ms))
        for ev in d.link_events:
            self._submit(records.link_record(ev, ms))
        for at in d.authority:
            self._submit(records.authority_record(at, ms))
        for rec in d.expired:
            self._submit(records.expired_record(rec, rec.expires, ms))

    def poll(self, c: Controller, now: float) -> None:
        """After a tick: new trips as events, and one poll record every ``every_n_polls``."""
        if self.pump is None:
            return
        ms = _ms()
        names = {h.name for h in c.trips}
        for hit in c.trips:
            if hit.name not in self._trips:
                self._submit(records.trip_record(hit, now, ms))
        self._trips = names
        self._polls += 1
        if self._polls % self.every_n_polls:
            return
        self._submit(records.poll_record(
            t=now, t_ms=ms, tick=self._polls, state=c.state.value,
            mode=c.machine.mode.value, link=c.link.value, readings=c.readings, votes=c.votes,
            trips=c.trips, shadow=c.recommendations.divergences()))

    def verdict(self, v: Verdict, now: float) -> None:
        if not v.accepted:
            self._submit(records.rejected_record(v, now, _ms()))

    def shadow(self, lines: list[ShadowLine]) -> None:
        ms = _ms()
        for line in lines:
            self._submit(records.shadow_record(line, ms))

    def on_connection(self, up: bool, now: float) -> None:
        if self.pump is not None:
            self.pump.on_connection(up, now)

    def on_ack(self, upto: int) -> None:
        if self.pump is not None:
            self.pump.on_ack(upto)

    async def run(self) -> None:
        if self.pump is not None:
            await self.pump.run()

    async def close(self) -> None:
        """Commit what is queued and close the spool (never raises)."""
        if self.pump is not None:
            try:
                await self.pump.close()
            except Exception:
                log.exception("telemetry close failed")
