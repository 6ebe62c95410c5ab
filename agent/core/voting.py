"""Redundancy voting: one group's readings in, one vote out (sans-IO, stateful).

A :class:`GroupVoter` is built once per :class:`~agent.model.profile.Group` and fed every
poll's readings with the caller's monotonic ``now``. It keeps a short history per channel
(the last accepted sample, how long its value has been frozen, recent samples for the
"peers moved" test) and never reads a clock.

Each update runs in two steps.

1. Channel checks, in this order; the first that fails excludes the channel with an
   :class:`Exclusion` (reason + detail):

   ========  =====================================================================
   COMM      no reading, reading BAD, or no value (the reading's ``error`` is the detail)
   STALE     ``now - reading.t > group.max_age_s``
   RANGE     value outside the signal's plausible range ``[low, high]`` (or not finite)
   RATE      ``|value - previous accepted| > group.max_rate * dt + group.discrepancy / 2``
             (dt between the two samples' ``t``): a change within half the disagreement
             tolerance is noise, never a rate violation, however fast the polling; a
             rejected sample does not become "previous", so a jump is accepted once
             enough time has passed to explain it
   STUCK     the value has been exactly the same for ``group.stuck_after_s`` while more
             than half of the channel's peers *moved*: a peer moved if the span (max -
             min) of its accepted values over the last ``stuck_after_s`` exceeds
             ``group.discrepancy / 4``. (Needing a majority keeps one wandering faulty
             channel from getting good but quiet channels excluded.)
   DISAGREE  with three or more channels left: further than ``group.discrepancy`` from
             their median
   ========  =====================================================================

   A sample is *new* when its ``t`` is later than the channel's last accepted sample; only
   new samples are rate-checked and recorded.

2. The policy, over the channels left (*healthy*), with N = ``voting.n``, M = ``voting.m``:

   * BAD (value None) if fewer than ``group.min_healthy`` are healthy, none is, or fewer
     than M of them mutually agree (all pairwise within ``discrepancy``).
   * Value: three or more healthy -> their median (mid-value select; for an even count the
     middle value on the safe side). Two healthy -> their mean if both of the N=2 channels
     are healthy and agree, else the one on the safe side (max for HIGH, min for LOW).
     One healthy -> its value.
   * GOOD only if all N channels are healthy and mutually agree; otherwise DEGRADED.

   So 1oo1 is its one channel; 1oo2 is the mean when the two agree, the safe-side value
   (DEGRADED) when they disagree or one is out; 2oo3 is the median of three, and after one
   exclusion the safe-side value of the other two if they agree (DEGRADED), BAD if not.

Nothing here raises on bad readings: they are excluded, counted and logged on change.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.model.profile import Group, SafeDirection, Signal
from agent.model.readings import Quality, Reading

log = logging.getLogger(__name__)


class ExclusionReason(enum.Enum):
    """Why a channel was left out of a vote; the value reads after the channel's name."""

    COMM = "comm failure"
    STALE = "stale"
    RANGE = "out of range"
    RATE = "rate of change too high"
    STUCK = "stuck"
    DISAGREE = "disagrees"


@dataclass(frozen=True)
class Exclusion:
    """One channel left out of one vote. ``str()`` gives "temp_a out of range"."""

    channel: str
    reason: ExclusionReason
    detail: str

    def __str__(self) -> str:
        return f"{self.channel} {self.reason.value}"


@dataclass(frozen=True)
class Vote:
    """A group's voted value at ``t``. BAD votes have ``value`` None; ``reason`` says why a
    vote is DEGRADED or BAD (empty when GOOD)."""

    group: str
    value: float | None
    quality: Quality
    used: tuple[str, ...]
    excluded: tuple[Exclusion, ...]
    t: float
    reason: str = ""


@dataclass
class _History:
    """What the voter remembers of one channel (mutable, private)."""

    last_value: float | None = None
    last_t: float | None = None
    frozen_since: float | None = None
    window: deque[tuple[float, float]] = field(default_factory=deque)
    excluded: ExclusionReason | None = None  # as of the last update, for edge logging


class GroupVoter:
    """Votes one redundancy group; see the module docstring for the rules.

    Raises ValueError at construction if the group names a signal not in ``signals`` or its
    voting does not fit its channels (an unvalidated profile: a bug in the caller).
    """

    def __init__(self, group: Group, signals: Iterable[Signal]) -> None:
        by_name = {s.name: s for s in signals}
        missing = [n for n in group.signals if n not in by_name]
        if missing:
            raise ValueError(f"group {group.name}: unknown signals {missing}")
        n = len(group.signals)
        if group.voting.n != n or not 1 <= group.voting.m <= n:
            raise ValueError(f"group {group.name}: voting {group.voting} does not fit {n} channels")
        if not 1 <= group.min_healthy <= n:
            raise ValueError(f"group {group.name}: min_healthy {group.min_healthy} not in 1..{n}")
        self.group = group
        self._signals = {name: by_name[name] for name in group.signals}
        self._history = {name: _History() for name in group.signals}
        self._counts: Counter[ExclusionReason] = Counter()

    @property
    def exclusion_counts(self) -> Mapping[ExclusionReason, int]:
        """How many channel exclusions of each kind this voter has made (one per update)."""
        return dict(self._counts)

    def update(self, readings: Mapping[str, Reading], now: float) -> Vote:
        """Vote the group's channels from ``readings`` (keyed by signal name) at ``now``."""
        g = self.group
        healthy: dict[str, float] = {}
        excluded: list[Exclusion] = []
        for name in g.signals:
            result = self._check(name, readings.get(name), now)
            if isinstance(result, Exclusion):
                excluded.append(result)
            else:
                healthy[name] = result

        if g.stuck_after_s is not None:
            self._trim(now - g.stuck_after_s)
            for name in list(healthy):
                stuck = self._stuck(name, now, g.stuck_after_s)
                if stuck is not None:
                    excluded.append(stuck)
                    del healthy[name]

        if len(healthy) >= 3:
            med = _median(sorted(healthy.values()), g.safe_direction)
            for name, v in list(healthy.items()):
                if abs(v - med) > g.discrepancy:
                    detail = f"{v:g} is {abs(v - med):g} from the median {med:g}"
                    excluded.append(Exclusion(name, ExclusionReason.DISAGREE, detail))
                    del healthy[name]

        self._note(excluded)
        return self._decide(healthy, tuple(excluded), now)

    def _check(self, name: str, r: Reading | None, now: float) -> float | Exclusion:
        g = self.group
        if r is None:
            return Exclusion(name, ExclusionReason.COMM, "no reading")
        if r.quality is Quality.BAD or r.value is None:
            return Exclusion(name, ExclusionReason.COMM, r.error or "no value")
        age = now - r.t
        if age > g.max_age_s:
            return Exclusion(name, ExclusionReason.STALE, f"{age:.3f} s old > {g.max_age_s:g} s")
        v = r.value
        sig = self._signals[name]
        if not (math.isfinite(v) and sig.low <= v <= sig.high):
            return Exclusion(
                name, ExclusionReason.RANGE, f"{v:g} not in [{sig.low:g}, {sig.high:g}]"
            )
        h = self._history[name]
        is_new = h.last_t is None or r.t > h.last_t
        if is_new and g.max_rate is not None and h.last_t is not None and h.last_value is not None:
            dt = r.t - h.last_t
            step = abs(v - h.last_value)
            if step > g.max_rate * dt + g.discrepancy / 2:
                detail = f"{step / dt:g}/s > {g.max_rate:g}/s"
                return Exclusion(name, ExclusionReason.RATE, detail)
        if is_new:
            if h.last_value != v or h.frozen_since is None:
                h.frozen_since = r.t
            h.last_value, h.last_t = v, r.t
            if g.stuck_after_s is not None:
                h.window.append((r.t, v))
        return v

    def _trim(self, since: float) -> None:
        for h in self._history.values():
            while h.window and h.window[0][0] < since:
                h.window.popleft()

    def _stuck(self, name: str, now: float, after_s: float) -> Exclusion | None:
        h = self._history[name]
        if h.frozen_since is None or h.last_t is None or h.last_t - h.frozen_since < after_s:
            return None
        peers = [p for p in self.group.signals if p != name]
        threshold = self.group.discrepancy / 4
        moved = [p for p in peers if _span(self._history[p].window) > threshold]
        if not peers or len(moved) < len(peers) // 2 + 1:
            return None
        frozen = h.last_t - h.frozen_since
        detail = f"{h.last_value:g} for {frozen:.1f} s while {', '.join(moved)} moved"
        return Exclusion(name, ExclusionReason.STUCK, detail)

    def _note(self, excluded: list[Exclusion]) -> None:
        now_out = {e.channel: e for e in excluded}
        for name, h in self._history.items():
            e = now_out.get(name)
            reason = e.reason if e is not None else None
            if e is not None:
                self._counts[e.reason] += 1
            if reason is not h.excluded:
                if e is not None:
                    log.info(
                        "group %s: %s excluded: %s (%s)",
                        self.group.name,
                        name,
                        e.reason.value,
                        e.detail,
                    )
                else:
                    log.info("group %s: %s readmitted", self.group.name, name)
                h.excluded = reason

    def _decide(
        self, healthy: dict[str, float], excluded: tuple[Exclusion, ...], now: float
    ) -> Vote:
        g = self.group
        n = len(g.signals)
        used = tuple(healthy)
        values = sorted(healthy.values())

        def bad(reason: str) -> Vote:
            return Vote(g.name, None, Quality.BAD, used, excluded, now, reason)

        if not values:
            return bad("no healthy channel")
        if len(values) < g.min_healthy:
            return bad(f"{len(values)} healthy of {n}, need {g.min_healthy}")
        agreeing = _largest_agreeing(values, g.discrepancy)
        if agreeing < g.voting.m:
            return bad(f"{agreeing} agreeing of {len(values)} healthy, need {g.voting.m}")

        spread = values[-1] - values[0]
        safe = values[-1] if g.safe_direction is SafeDirection.HIGH else values[0]
        if len(values) >= 3:
            value = _median(values, g.safe_direction)
        elif len(values) == 2:
            value = sum(values) / 2 if n == 2 and spread <= g.discrepancy else safe
        else:
            value = values[0]
        if len(values) == n and spread <= g.discrepancy:
            return Vote(g.name, value, Quality.GOOD, used, excluded, now)
        if len(values) < n:
            reason = f"{len(values)} of {n} channels healthy"
        else:
            reason = f"spread {spread:g} > discrepancy {g.discrepancy:g}"
        return Vote(g.name, value, Quality.DEGRADED, used, excluded, now, reason)


def _median(values: list[float], side: SafeDirection) -> float:
    """Median of sorted ``values``; for an even count the middle value on the safe side."""
    n = len(values)
    if n % 2:
        return values[n // 2]
    return values[n // 2] if side is SafeDirection.HIGH else values[n // 2 - 1]


def _span(window: deque[tuple[float, float]]) -> float:
    if not window:
        return 0.0
    vs = [v for _, v in window]
    return max(vs) - min(vs)


def _largest_agreeing(values: list[float], discrepancy: float) -> int:
    """Size of the largest set of sorted ``values`` all pairwise within ``discrepancy``."""
    best = 0
    lo = 0
    for hi, v in enumerate(values):
        while v - values[lo] > discrepancy:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
