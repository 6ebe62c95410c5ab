"""Twin recommendations (sans-IO): validation, shadow reports, active targets with expiry.

A recommendation (``agent.model.messages.Recommend``) asks for one declared output to hold
``value`` (engineering units) for ``valid_s`` seconds. :class:`Recommendations` judges it
the moment it arrives (first failing rule wins; all but the first are :func:`validate`)::

    not from the current session    -> stale_session (see "Lifetime" below)
    value or valid_s NaN            -> not_a_number
    output not in the profile       -> unknown_output
    value outside [minimum, maximum]-> out_of_limits
    valid_s <= 0                    -> expired
    valid_s > max_validity_s (inf)  -> too_long
    otherwise                       -> ok (accepted; replaces that output's previous one)

and answers with a :class:`Verdict` (sent to the twin as ``recommend_result``). An accepted
recommendation lives until ``received + valid_s`` (the agent's monotonic clock, never the
twin's); :meth:`Recommendations.expire` drops it once, for the caller to log.

Lifetime: recommendations die with the twin session that sent them. Each accepted one is
bound to its :class:`~agent.model.messages.Origin` (the link session it arrived on and the
twin epoch in force there). The caller reports the session's life; every live
recommendation is dropped (:class:`DropCause`, logged once per drop with why, counted in
:attr:`Recommendations.dropped`) when

- the session that sent it ended: heartbeat LOST for any cause (silence, ``healthy:
  false``, ``bye``, the link dropped) -- :meth:`drop`, :meth:`session_down`, :meth:`bye`;
  also when a new link session comes up while some are still live (:meth:`session_up`);
- the twin's epoch changed (:meth:`epoch_seen` with a higher epoch);
- the plant left NORMAL, or the control authority (mode) changed -- :meth:`drop`, called by
  the controller (``agent.core.controller``), which sees those.

A recommendation is rejected ``stale_session`` when it did not arrive on the current link
session (none is up, or it came on an older one), when its epoch is older than the highest
epoch seen on that session, or when its epoch has said ``bye`` (on any session: an epoch a
bye ended never comes back; the highest epoch is forgotten at each new session, so an
absurd one cannot lock the twin out, PROTOCOL.md §4). Recommendations accepted after a drop, on
the current session, live on as usual.

What happens to the live ones depends on the control authority, which the caller decides:

- shadow: nothing is ever written. The caller reads what the PLC holds (only while
  :attr:`Recommendations.wanted` is true, at most once per tick) and calls
  :meth:`Recommendations.shadow`, which logs each new recommendation once as
  "would have written" with its divergence from the PLC and keeps the latest divergence per
  output for status and telemetry.
- active (and only while the caller says writing is allowed): :meth:`Recommendations.targets`
  gives, per live recommendation, the value to write now: clamped by
  ``agent.core.outputs.clamp`` to the output's limits and to ``max_rate * dt`` from the value the
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

from agent.core.outputs import clamp
from agent.model.messages import Origin, Recommend, RecommendResult
from agent.model.profile import Output
from agent.model.text import printable_only

log = logging.getLogger(__name__)

DEFAULT_MAX_DT_S = 1.0
DETAIL_MAX = 128


class Reason(enum.Enum):
    """Why a recommendation was accepted or rejected (the wire's ``reason`` codes)."""

    OK = "ok"
    STALE_SESSION = "stale_session"
    UNKNOWN_OUTPUT = "unknown_output"
    OUT_OF_LIMITS = "out_of_limits"
    NOT_A_NUMBER = "not_a_number"
    EXPIRED = "expired"
    TOO_LONG = "too_long"


LOG_PER_S = 20  # verdict log lines per second at most (the rest are counted)


class DropCause(enum.Enum):
    """Why live recommendations were dropped before their validity ended."""

    HEARTBEAT_LOST = "heartbeat_lost"  # the session that sent them ended (LOST, any cause)
    EPOCH_CHANGED = "epoch_changed"  # the twin's epoch (its session) changed
    LEFT_NORMAL = "left_normal"  # the plant left NORMAL
    MODE_CHANGED = "mode_changed"  # the mode changed (shadow <-> active)
    AUTHORITY_SHED = "authority_shed"  # the twin's authority was shed (REMOTE -> LOCAL)


@dataclass(frozen=True)
class Recommendation:
    """An accepted recommendation, timed by the agent's monotonic clock, bound to where it
    came from (``origin``; None only from :func:`validate` called without one)."""

    id: str
    output: str
    value: float
    valid_s: float
    received: float
    expires: float
    origin: Origin | None = None


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
        detail = printable_only(self.detail)[:DETAIL_MAX] or None
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
             max_validity_s: float, origin: Origin | None = None) -> Verdict:
    """Judge ``msg`` against the declared ``outputs`` (by name); see the module docstring.
    The session rule is not checked here (that is :meth:`Recommendations.offer`)."""

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
    rec = Recommendation(msg.id, msg.output, msg.value, msg.valid_s, now, now + msg.valid_s,
                         origin)
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
        self._session: int | None = None  # the link session UP now
        self._log_window = float("-inf")  # verdict lines: the current one-second window
        self._log_count = self._log_skipped = 0
        self._epoch: int | None = None  # the highest twin epoch seen
        self._ended: int | None = None  # the highest epoch that said bye
        self.accepted = 0
        self.rejected = 0  # including stale
        self.stale = 0  # rejected stale_session
        self.expired = 0
        self.dropped = dict.fromkeys(DropCause, 0)  # recommendations dropped, by cause

    # --- inputs --------------------------------------------------------------------------

    def offer(self, msg: Recommend, now: float, origin: Origin | None) -> Verdict:
        """Judge ``msg``, which arrived from ``origin`` (None: from no link session); an
        accepted one replaces that output's live recommendation."""
        stale = self._stale(origin)
        if stale is not None:
            verdict = Verdict(msg.id, msg.output, Reason.STALE_SESSION, stale)
            self.stale += 1
        else:
            verdict = validate(self.outputs, msg, now, self.max_validity_s, origin)
        if verdict.recommendation is None:
            self.rejected += 1
            if self._may_log(now):
                log.warning("recommendation %s rejected (%s): %s", msg.id,
                            verdict.reason.value, verdict.detail)
            return verdict
        self.accepted += 1
        self._live[msg.output] = verdict.recommendation
        self._unreported.add(msg.output)
        if self._may_log(now):
            log.info("recommendation %s accepted: %s", msg.id, verdict.detail)
        return verdict

    def _may_log(self, now: float) -> bool:
        """At most LOG_PER_S verdict lines a second (a flooding twin must not make the loop
        a logger); the lines left out are counted in the next second's first line."""
        if now - self._log_window >= 1.0:
            if self._log_skipped:
                log.warning("%d recommendation verdict(s) not logged in the last second "
                            "(more than %d/s; all are counted and answered)",
                            self._log_skipped, LOG_PER_S)
            self._log_window, self._log_count, self._log_skipped = now, 0, 0
        self._log_count += 1
        if self._log_count > LOG_PER_S:
            self._log_skipped += 1
            return False
        return True

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

    # --- lifetime (see the module docstring) --------------------------------------------

    def session_up(self, origin: Origin) -> list[Recommendation]:
        """A link session came up: ``origin`` is its number and the epoch of its hello.
        Recommendations may come from it from now on; any still live (from an earlier
        session) are dropped."""
        gone = self.drop(DropCause.HEARTBEAT_LOST,
                         f"a new twin link session #{origin.session} came up")
        self._session = origin.session
        self._epoch = None  # epochs are tracked per connection (PROTOCOL.md §4)
        return gone + self.epoch_seen(origin.epoch)

    def session_down(self, why: str) -> list[Recommendation]:
        """The link session ended (``why``, for the log): every live one is dropped and no
        recommendation is accepted until the next :meth:`session_up`."""
        self._session = None
        return self.drop(DropCause.HEARTBEAT_LOST, why)

    def epoch_seen(self, epoch: int | None) -> list[Recommendation]:
        """The twin epoch the heartbeat monitor (or a hello) now knows; a higher one than
        before is a new twin session: the live recommendations of older epochs are dropped."""
        if epoch is None or (self._epoch is not None and epoch <= self._epoch):
            return []
        old, self._epoch = self._epoch, epoch
        gone = [r for r in self._live.values() if r.origin is None or r.origin.epoch < epoch]
        return self._drop(gone, DropCause.EPOCH_CHANGED,
                          f"the twin's epoch changed from {old} to {epoch}")

    def bye(self, epoch: int) -> list[Recommendation]:
        """The twin said bye for ``epoch``: that session is over (ignored if ``epoch`` is
        older than the highest seen: a stale bye, as the heartbeat monitor judges it)."""
        if self._epoch is not None and epoch < self._epoch:
            return []
        self._ended = epoch if self._ended is None else max(self._ended, epoch)
        gone = self.epoch_seen(epoch)
        return gone + self.drop(DropCause.HEARTBEAT_LOST, f"the twin said bye for epoch {epoch}")

    def drop(self, cause: DropCause, why: str) -> list[Recommendation]:
        """Drop every live recommendation now (logged once with ``why``, counted)."""
        return self._drop(list(self._live.values()), cause, why)

    def _drop(self, gone: list[Recommendation], cause: DropCause,
              why: str) -> list[Recommendation]:
        if not gone:
            return []
        for r in gone:
            del self._live[r.output]
            self._unreported.discard(r.output)
            self._shadow.pop(r.output, None)
        self.dropped[cause] += len(gone)
        log.info("%d recommendation(s) dropped (%s: %s): %s", len(gone), cause.value, why,
                 ", ".join(f"{r.id} {r.output}={r.value:g}" for r in gone))
        return gone

    def _stale(self, origin: Origin | None) -> str | None:
        """Why a recommendation from ``origin`` is not from the current session, or None."""
        if origin is None:
            return "it did not arrive on a twin link session"
        if self._session is None:
            return f"twin link session #{origin.session} has ended"
        if origin.session != self._session:
            return (f"it arrived on twin link session #{origin.session}; the current one is "
                    f"#{self._session}")
        if self._epoch is not None and origin.epoch < self._epoch:
            return f"it is from epoch {origin.epoch}; the twin's current epoch is {self._epoch}"
        if self._ended is not None and origin.epoch == self._ended:
            return f"epoch {origin.epoch} has said bye"
        return None

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
            if not o.same_raw(value, last):  # a float step that rounds to what is held: no
                out[name] = value
        return out

    def live(self) -> dict[str, Recommendation]:
        return dict(self._live)
