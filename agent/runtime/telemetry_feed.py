"""The runtime's telemetry feed: turns what the controller decided into spooled records.

Thin glue between the runtime and :class:`agent.runtime.telemetry_pump.TelemetryPump`: it reads the
wall clock for ``t_ms`` (informative only), calls the pure builders of
``agent.protocol.telemetry``, passes every record through the data-minimisation policy
(:class:`agent.core.minimise.Minimiser`: before the spool, so whatever transport forwards
the spool carries only what the policy lets leave) and ``submit``s it (no I/O on the loop).
Without a pump (telemetry disabled, no twin configured, the spool could not be set up, or a
pseudonym was asked for and its key file cannot be read: telemetry is then never sent under
the real id) every method is a no-op: telemetry is never a reason for control to fail.
``close`` flushes the open aggregation windows (``partial: true``) before the spool closes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agent.config.agentconfig import AgentConfig
from agent.core.controller import Controller, Decision
from agent.core.minimise import PSEUDONYM_KEY_MIN, Minimiser, pseudonym
from agent.core.recommend import ShadowLine, Verdict
from agent.model.policy import DeviceName, TelemetryPolicy
from agent.protocol import telemetry as records
from agent.runtime.telemetry_pump import Send, SendMany, TelemetryPump

log = logging.getLogger(__name__)


def _ms() -> int:
    return time.time_ns() // 1_000_000


def device_name(config: AgentConfig) -> str:
    """What telemetry calls this device: its id, or the pseudonym from the key file.

    Raises ``OSError`` (unreadable file) or ``ValueError`` (a key shorter than
    ``PSEUDONYM_KEY_MIN`` bytes)."""
    policy = config.telemetry.policy
    if policy.device is DeviceName.ID or policy.pseudonym_key is None:
        return config.device_id
    key = policy.pseudonym_key.read_bytes()
    if len(key) < PSEUDONYM_KEY_MIN:
        raise ValueError(f"{policy.pseudonym_key}: a pseudonym key is at least "
                         f"{PSEUDONYM_KEY_MIN} bytes, this one has {len(key)}")
    return pseudonym(key, config.device_id)


class TelemetryFeed:
    """See the module docstring. ``pump`` None: disabled."""

    def __init__(self, pump: TelemetryPump | None, every_n_polls: int = 1,
                 minimiser: Minimiser | None = None) -> None:
        self.pump = pump
        self.every_n_polls = every_n_polls
        self.minimiser = minimiser or Minimiser(TelemetryPolicy(), "twinguard")
        self._polls = 0
        self._trips: set[str] = set()

    @classmethod
    async def open(cls, config: AgentConfig, state_dir: Path, send: Send,
                   send_many: SendMany | None = None) -> TelemetryFeed:
        """A feed with a pump on ``<state_dir>/telemetry.sqlite``; disabled if telemetry is
        off in ``config`` or the spool cannot be set up (logged, control unaffected)."""
        policy = config.telemetry.policy
        off = cls(None, minimiser=Minimiser(policy, ""))  # the policy still shows in status
        if not config.telemetry.enabled:
            return off
        try:
            device = device_name(config)
        except (OSError, ValueError) as exc:
            log.error("telemetry disabled: the pseudonym key cannot be used (%s); nothing is "
                      "sent under the real device id", exc)
            return off
        minimiser = Minimiser(policy, device)
        try:
            pump = await TelemetryPump.open(state_dir, config.spool, config.telemetry, send,
                                           send_many)
        except Exception:  # a spool bug must not keep the plant's guard from running
            log.exception("telemetry disabled: the spool could not be set up")
            return off
        log.info("telemetry policy %s: device named %r, %s", minimiser.header["policy"]["id"],
                 device, ", ".join(f"{n} {policy.rule(n)}" for n in policy.minimised)
                 or "send all")
        return cls(pump, config.telemetry.every_n_polls, minimiser)

    @property
    def enabled(self) -> bool:
        return self.pump is not None

    def _submit(self, record: records.Record) -> None:
        """An event record: redacted, with the header (see ``Minimiser.event``)."""
        if self.pump is not None:
            self.pump.submit(records.pack(self.minimiser.event(record)))

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
        poll = records.poll_record(
            t=now, t_ms=ms, tick=self._polls, state=c.state.value,
            mode=c.machine.mode.value, link=c.link.value, readings=c.readings, votes=c.votes,
            trips=c.trips, shadow=c.recommendations.divergences())
        for rec in self.minimiser.poll(poll, now, ms):
            self.pump.submit(records.pack(rec))

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

    async def close(self, now: float | None = None) -> None:
        """Flush the open aggregation windows, commit what is queued and close the spool
        (never raises). ``now``: the loop's monotonic clock (default ``time.monotonic()``)."""
        if self.pump is not None:
            try:
                t = time.monotonic() if now is None else now
                for rec in self.minimiser.flush(t, _ms()):
                    self.pump.submit(records.pack(rec))
                await self.pump.close()
            except Exception:
                log.exception("telemetry close failed")
