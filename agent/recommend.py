"""Twin recommendations (sans-IO): validation, shadow reports, active targets with expiry.

A recommendation (``agent.twin.messages.Recommend``) asks for one declared output to hold
``value`` (engineering units) for ``valid_s`` seconds. :class:`Recommendations` judges it
the moment it arrives (:func:`validate`, first failing rule wins)::

    value or valid_s NaN            -> not_a_number
    output not in the profile       -> unknown_output
    value outside [minimum, maximum]-> out_of_limits
    valid_s <= 0                    -> expired
    valid_s > max_validity_s (inf)  -> too_long
    otherwise                       -> ok (accepted; replaces that output's previous one)

and answers with a :class:`Verdict` (sent to the twin as ``recommend_result``). An accepted
recommendation lives until ``received + valid_s`` (the agent's monotonic clock, never the
twin's); :meth:`Recommendations.expire` drops it once, for the caller to log.

What happens to the live ones depends on the control authority, which the caller decides:

- shadow: nothing is ever written. The caller reads what the PLC holds (only while
  :attr:`Recommendations.wanted` is true, at most once per tick) and calls
  :meth:`Recommendations.shadow`, which logs each new recommendation once as
  "would have written" with its divergence from the PLC and keeps the latest divergence per
  output for status and telemetry.
- active (and only while the caller says writing is allowed): :meth:`Recommendations.targets`
  gives, per live recommendation, the value to write now: clamped by
  ``agent.outputs.clamp`` to the output's limits and to ``max_rate * dt`` from the value the
  agent last wrote, where dt is the time since the previous ``targets`` call (capped at
  ``max_dt_s``; 0 on the first call after :meth:`Recommendations.pause`, so a resumed
  authority never jumps). Values equal to what was last written are left out.

Nothing here raises for bad input from the twin: every bad recommendation is a Verdict.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.outputs import clamp
from agent.profile.model import Output
from agent.twin.messages import Recommend, RecommendResult

log = logging.getLogger(__name__)

DEFAULT_MAX_DT_S = 1.0
DETAIL_MAX = 128


class Reason(enum.Enum):
    """Why a recommendation was accepted or rejected (the wire's ``reason`` codes)."""

    OK = "ok"
    UNKNOWN_OUTPUT = "unknown_output"
    OUT_OF_LIMITS = "out_of_limits"
    NOT_A_NUMBER = "not_a_number"
    EXPIRED = "expired"
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class Recommendation:
    """An accepted recommendation, timed by the agent's monotonic clock."""

    id: str
    output: str
    value: float
    valid_s: float
    received: float
    expires: float


@dataclass(frozen=True)
class Verdict:
    """The answer to one recommendation; ``recommendation`` is set only when accepted."""

    id: str
    output: str
    reason: Reason
    detail: str
    recommendation: Recommendation | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is Reason.OK

    def to_message(self) -> RecommendResult:
        """The ``recommend_result`` for the twin (detail cut to the wire's text limit)."""
        detail = "".join(c for c in self.detail if c.isprintable())[:DETAIL_MAX] or None
        return RecommendResult(self.id, self.accepted, self.reason.value, detail)


@dataclass(frozen=True)
class ShadowLine:
    """What shadow mode would have written, against what the PLC holds."""

    id: str
    output: str
    value: float  # what would have been written (the recommendation)
    actual: float | None  # what the PLC held (None: unreadable)
    divergence: float | None  # value - actual
    t: float


def validate(outputs: Mapping[str, Output], msg: Recommend, now: float,
             max_validity_s: float) -> Verdict:
    """Judge ``msg`` against the declared ``outputs`` (by name); see the module docstring."""

    def no(reason: Reason, detail: str) -> Verdict:
        return Verdict(msg.id, msg.output, reason, detail)

    if math.isnan(msg.value) or math.isnan(msg.valid_s):
        return no(Reason.NOT_A_NUMBER, f"value {msg.value!r}, valid_s {msg.valid_s!r}")
    out = outputs.get(msg.output)
    if out is None:
        return no(Reason.UNKNOWN_OUTPUT, f"{msg.output!r} is not an output of the profile")
    if not out.minimum <= msg.value <= out.maximum:
        return no(Reason.OUT_OF_LIMITS,
                  f"{msg.value:g} outside [{out.minimum:g}, {out.maximum:g}] {out.unit}")
    if msg.valid_s <= 0:
        return no(Reason.EXPIRED, f"valid_s {msg.valid_s:g} is not > 0")
    if msg.valid_s > max_validity_s:
        return no(Reason.TOO_LONG, f"valid_s {msg.valid_s:g} over the maximum {max_validity_s:g}")
    rec = Recommendation(msg.id, msg.output, msg.value, msg.valid_s, now, now + msg.valid_s)
    return Verdict(msg.id, msg.output, Reason.OK, f"{msg.output}={msg.value:g} for "
                   f"{msg.valid_s:g} s", rec)


class Recommendations:
    """The live recommendations of one agent, at most one per output.

    ValueError at construction for a non-positive ``max_validity_s`` or ``max_dt_s``.
    """

    def __init__(self, outputs: Iterable[Output], max_validity_s: float,
                 max_dt_s: float = DEFAULT_MAX_DT_S) -> None:
        if not max_validity_s > 0 or not max_dt_s > 0:
            raise ValueError("max_validity_s and max_dt_s must be > 0")
        self.outputs = {o.name: o for o in outputs}
        self.max_validity_s = max_validity_s
        self.max_dt_s = max_dt_s
        self._live: dict[str, Recommendation] = {}
        self._unreported: set[str] = set()  # outputs whose current one was not shadow-logged
        self._shadow: dict[str, ShadowLine] = {}
        self._last_t: float | None = None
        self.accepted = 0
        self.rejected = 0
        self.expired = 0

    # --- inputs --------------------------------------------------------------------------

    def offer(self, msg: Recommend, now: float) -> Verdict:
        """Validate ``msg``; an accepted one replaces that output's live recommendation."""
        verdict = validate(self.outputs, msg, now, self.max_validity_s)
        if verdict.recommendation is None:
            self.rejected += 1
            log.warning("recommendation %s rejected (%s): %s", msg.id, verdict.reason.value,
                        verdict.detail)
            return verdict
        self.accepted += 1
        self._live[msg.output] = verdict.recommendation
        self._unreported.add(msg.output)
        log.info("recommendation %s accepted: %s", msg.id, verdict.detail)
        return verdict

    def expire(self, now: float) -> list[Recommendation]:
        """Drop the recommendations whose validity ended at or before ``now`` (each once)."""
        gone = [r for r in self._live.values() if r.expires <= now]
        for r in gone:
            del self._live[r.output]
            self._unreported.discard(r.output)
            self._shadow.pop(r.output, None)
            self.expired += 1
            log.info("recommendation %s for %s expired", r.id, r.output)
        return gone

    def clear(self) -> None:
        """Forget every live recommendation (e.g. after a change of authority)."""
        self._live.clear()
        self._unreported.clear()
        self._shadow.clear()

    # --- shadow --------------------------------------------------------------------------

    @property
    def wanted(self) -> bool:
        """True while some recommendation is live: the caller should read the outputs."""
        return bool(self._live)

    def shadow(self, actual: Mapping[str, float | None], now: float) -> list[ShadowLine]:
        """Compare the live recommendations with what the PLC holds; return (and log) the
        lines of recommendations not reported before. Writes nothing, ever."""
        new: list[ShadowLine] = []
        for name, rec in self._live.items():
            held = actual.get(name)
            div = None if held is None else rec.value - held
            line = ShadowLine(rec.id, name, rec.value, held, div, now)
            self._shadow[name] = line
            if name in self._unreported:
                self._unreported.discard(name)
                new.append(line)
                log.info("shadow: would have written %s=%g (PLC holds %s, divergence %s) "
                         "[recommendation %s]", name, rec.value,
                         "?" if held is None else f"{held:g}",
                         "?" if div is None else f"{div:+g}", rec.id)
        return new

    def divergences(self) -> dict[str, ShadowLine]:
        """The latest shadow comparison per output with a live recommendation."""
        return dict(self._shadow)

    # --- active --------------------------------------------------------------------------

    def pause(self) -> None:
        """Writing is not allowed now: the next :meth:`targets` call starts with dt = 0."""
        self._last_t = None

    def targets(self, now: float, last_written: Mapping[str, float]) -> dict[str, float]:
        """Values to write now for the live recommendations (see the module docstring)."""
        dt = 0.0 if self._last_t is None else min(max(now - self._last_t, 0.0), self.max_dt_s)
        self._last_t = now
        out: dict[str, float] = {}
        for name, rec in self._live.items():
            o = self.outputs[name]
            last = last_written.get(name, o.safe_value)
            value = clamp(o, rec.value, last, dt)
            if value != last:
                out[name] = value
        return out

    def live(self) -> dict[str, Recommendation]:
        return dict(self._live)
