"""Fault drills against the running agent: a rehearsal in bounded slices on the agent's loop.

``twinguard drill --scenario NAME`` asks over the status socket; :class:`DrillRunner` plays
the scenario with ``agent.core.rehearsal`` on a copy of the live controller, taken at the
moment of the request, and returns the report. Nothing of the rehearsal reaches the live
controller, the PLC, the LEDs, the twin or the telemetry spool: it only ever calls the copy.

It must not stall the control loop: the rehearsal's generator is advanced for at most
:data:`SLICE_S` of CPU time per turn, then the loop runs whatever is ready (a tick, a
heartbeat, the timer) before the next slice (``await asyncio.sleep(0)``). While a slice
runs, the decision core's loggers are muted: the copy's transitions ("safety NORMAL ->
FAILSAFE") are the rehearsal's, not the plant's, and must not read as such in the agent's
log. One drill at a time: a second request while one runs is refused (``DrillRefused``).

The drill and its result go to the audit log (``AuditKind.DRILL``: scenario, target, who
asked, by SO_PEERCRED as for an ack, the outcome and the counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent.core.controller import Controller
from agent.core.drillreport import DrillReport
from agent.core.rehearsal import Hooks, Rehearsal
from agent.io.audit import AuditKind, transition_record
from agent.io.guard import guard_values
from agent.model.errors import DrillRefused
from agent.model.profile import Output
from agent.protocol.modbus.codec import encode_output

log = logging.getLogger(__name__)

SLICE_S = 0.002  # the longest the rehearsal runs before the loop gets its turn
CORE = "agent.core"

Audit = Callable[..., None]  # (kind, **fields): the runtime's audit append (off the loop)


class _Mute(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def muted_core() -> Iterator[None]:
    """The decision core's loggers drop every record while the block runs (synchronous:
    nothing else of the agent runs meanwhile)."""
    mute = _Mute()
    loggers = [logging.getLogger(CORE)] + [
        lg for name, lg in logging.Logger.manager.loggerDict.items()
        if name.startswith(CORE + ".") and isinstance(lg, logging.Logger)]
    for lg in loggers:
        lg.addFilter(mute)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(mute)


def _raw(output: Output, value: float) -> tuple[int, ...] | bool:
    return encode_output(output, value)


def _audit_kind(old: str, new: str, event: str, cause: str) -> str:
    return transition_record(old, new, event, cause)[0].value


async def play(steps: Iterator[None], slice_s: float = SLICE_S) -> int:
    """Advance ``steps`` to its end, at most ``slice_s`` at a time (wall clock: what the
    loop waits), yielding to the loop between slices; returns how many slices it took."""
    slices = 0
    done = False
    while not done:
        slices += 1
        end = time.perf_counter() + slice_s
        with muted_core():
            done = True
            for _ in steps:
                if time.perf_counter() >= end:
                    done = False
                    break
        if not done:
            await asyncio.sleep(0)
    return slices


class DrillRunner:
    """Rehearses drills for one runtime: ``controller()`` is the live controller (read at
    the request), ``audit(kind, **fields)`` appends to the audit log."""

    def __init__(self, controller: Callable[[], Controller], audit: Audit, *,
                 slice_s: float = SLICE_S) -> None:
        self._controller = controller
        self._audit = audit
        self._slice_s = slice_s
        self._running: str | None = None

    @property
    def running(self) -> str | None:
        """The scenario being rehearsed now (None: none)."""
        return self._running

    async def drill(self, scenario: str, target: str | None, who: str) -> Mapping[str, Any]:
        """Rehearse ``scenario`` (on ``target``) and return the report as a JSON object;
        DrillRefused for an unknown scenario or target, or while another drill runs."""
        if self._running is not None:
            raise DrillRefused(f"a drill is already running ({self._running}); one at a "
                               "time, try again when it has finished")
        self._running = scenario
        try:
            report = await self._rehearse(scenario, target, who)
        finally:
            self._running = None
        return report.to_dict()

    async def _rehearse(self, scenario: str, target: str | None, who: str) -> DrillReport:
        loop = asyncio.get_running_loop()
        live = self._controller()
        started = time.monotonic()
        with muted_core():
            rehearsal = Rehearsal(live, scenario, loop.time(), target=target, hooks=Hooks(
                encode=_raw, audit_kind=_audit_kind,
                hang_values=guard_values(live.profile, live.last_written)))
        slices = await play(rehearsal.run(), self._slice_s)
        report = rehearsal.report
        took = time.monotonic() - started
        log.warning("drill %s by %s rehearsed in the decision core only (%.3f s, %d slices; "
                    "nothing written): %s", scenario, who, took, slices, report.outcome)
        self._audit(AuditKind.DRILL, scenario=scenario, target=target, who=who,
                    outcome=report.outcome, start_state=report.start_state,
                    start_authority=report.start_authority, end_state=report.end_state,
                    end_authority=report.end_authority, steps=len(report.steps),
                    would_write=len(report.writes), simulated_s=report.duration_s,
                    operator=list(report.operator))
        return report
