"""Data minimisation of telemetry records (sans-IO): the policy applied before the spool.

The telemetry feed builds each record as a map (``agent.protocol.telemetry``) and passes it
through a :class:`Minimiser` before the record is packed and spooled; whatever transport
then carries the spool (the TLS twin link, an MQTT fleet link) only ever sees what comes
out of here. Applying the policy *before* the spool means data the policy keeps on the
device is never stored for the twin, and what may leave is spooled like every other record,
so the spool's guarantee holds for it: nothing allowed to leave is lost across link drops
and restarts (an aggregate is a record in the spool, acknowledged and resent like a poll).

Per name (a signal of the poll record's ``signals`` or a group of its ``votes``):

==========  ===========================================================================
send        as read (the default for every name the policy does not list)
drop        left out of every poll record
quantize    ``value`` rounded to the nearest multiple of ``step`` (ties to even), ``raw``
            (the registers, which would give the exact value) sent as nil
aggregate   left out of the poll records; one ``aggregate`` record per window of
            ``window_s`` carries ``min``/``mean``/``max``/``count`` of its values and
            ``bad``, the polls without a value (of the polls that are recorded: every
            ``[telemetry] every_n_polls``-th). Windows are aligned on the agent's
            monotonic clock (``[k*w, (k+1)*w)``); names with the same ``window_s`` share
            one record per window. A window is closed by the first poll at or after its
            end; :meth:`Minimiser.flush` closes the open ones (``partial: true``) when the
            agent stops. An agent that dies without stopping loses the open windows (they
            exist only here, never in the spool): at most one window per width.
==========  ===========================================================================

Free text can carry values ("temp_a 81.2 is 3 from the median ..."), so, conservatively,
for every name that is not ``send``: a vote's ``reason`` and exclusion details of that
group, the exclusion detail of that channel in any group, and every ``cause``/``detail``/
``text`` of a poll's trips or of an event that names it (as a whole word) are replaced by
:data:`WITHHELD`. Names stay (they are the profile's, not the plant's data).

Every record leaves with the header ``device`` (the device id or its pseudonym) and
``policy`` (``TelemetryPolicy.header()``, PROTOCOL.md §7.2.1).

Pure: no I/O, no clock (``now`` is the caller's monotonic seconds, ``t_ms`` its wall clock).
Nothing here raises for a record of the shape ``agent.protocol.telemetry`` builds.
"""

from __future__ import annotations

import decimal
import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.model.policy import Action, TelemetryPolicy

__all__ = ["PSEUDONYM_KEY_MIN", "WITHHELD", "Minimiser", "Series", "pseudonym", "quantize",
           "window_start"]

WITHHELD = "withheld by policy"
PSEUDONYM_KEY_MIN = 32  # bytes of secret
_SECTIONS = ("signals", "votes")
_TEXT_FIELDS = ("cause", "detail", "text", "reason")

Record = dict[str, Any]


def pseudonym(key: bytes, device_id: str) -> str:
    """The stable pseudonym of ``device_id`` under ``key``: ``"p-"`` + 24 hex digits of
    HMAC-SHA256(key, ``"twinguard-pseudonym/1\\n"`` + device_id). Without the key it can
    neither be reversed nor recomputed from a list of device ids; with it, the site can."""
    mac = hmac.new(key, b"twinguard-pseudonym/1\n" + device_id.encode(), hashlib.sha256)
    return "p-" + mac.hexdigest()[:24]


def quantize(value: float, step: float) -> float | None:
    """``value`` rounded to the nearest multiple of ``step`` (ties to even), printed with no
    more decimals than ``step`` has; None if that is not a finite number."""
    k = value / step
    if not math.isfinite(k):
        return None
    exponent = decimal.Decimal(repr(step)).as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    q = round(round(k) * step, digits)
    return q if math.isfinite(q) else None


def window_start(now: float, width: float) -> float:
    """The start of the window of ``width`` seconds that holds ``now``."""
    return math.floor(now / width) * width


@dataclass(frozen=True)
class Series:
    """One name's values within one window."""

    count: int = 0  # polls with a finite value
    bad: int = 0  # polls without one (a BAD reading or vote)
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: object) -> Series:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return replace(self, bad=self.bad + 1)
        v = float(value)
        return Series(self.count + 1, self.bad, self.total + v, min(self.low, v),
                      max(self.high, v))

    def summary(self) -> dict[str, Any]:
        if not self.count:
            return {"min": None, "mean": None, "max": None, "count": 0, "bad": self.bad}
        mean = min(self.high, max(self.low, self.total / self.count))  # rounding stays inside
        return {"min": self.low, "mean": mean, "max": self.high, "count": self.count,
                "bad": self.bad}


@dataclass(frozen=True)
class Window:
    """An open aggregation window: ``[start, start + width)`` on the agent's clock."""

    width: float
    start: float
    first_ms: int
    last_ms: int
    series: Mapping[tuple[str, str], Series] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.width


class Minimiser:
    """Applies one :class:`TelemetryPolicy` to the records of one agent run."""

    def __init__(self, policy: TelemetryPolicy, device: str) -> None:
        self.policy = policy
        self.device = device
        self._header = policy.header()
        hidden = policy.minimised
        self._hidden = frozenset(hidden)
        self._mention = (re.compile(r"(?<![\w])(?:" + "|".join(map(re.escape, hidden))
                                    + r")(?![\w])") if hidden else None)
        self._windows: dict[float, Window] = {}

    @property
    def header(self) -> dict[str, Any]:
        return {"device": self.device, "policy": self._header}

    @property
    def windows_open(self) -> int:
        return len(self._windows)

    # --- records --------------------------------------------------------------------------

    def event(self, record: Mapping[str, Any]) -> Record:
        """An event record with its text fields redacted and the header added."""
        out = {k: self._text(v) if k in _TEXT_FIELDS else v for k, v in record.items()}
        out.update(self.header)
        return out

    def poll(self, record: Mapping[str, Any], now: float, t_ms: int) -> list[Record]:
        """The records to spool for one poll record: the aggregates of the windows that
        ``now`` closed, then the poll record itself, minimised."""
        if not self._hidden:  # nothing to minimise: the record as built, with the header
            return [{**record, **self.header}]
        out = self._close(lambda w: w.end <= now, now, t_ms, partial=False)
        poll: Record = dict(record)
        for section in _SECTIONS:
            entries = record.get(section)
            if not isinstance(entries, Mapping):
                continue
            kept: Record = {}
            for name, entry in entries.items():
                rule = self.policy.rule(name)
                if rule.action is Action.DROP:
                    continue
                if rule.action is Action.AGGREGATE:
                    assert rule.window_s is not None
                    self._sample(rule.window_s, (section, name), entry, now, t_ms)
                    continue
                kept[name] = self._entry(section, name, entry, rule.step)
            poll[section] = kept
        trips = record.get("trips")
        if isinstance(trips, list):
            poll["trips"] = [[*t[:-1], self._text(t[-1])] if isinstance(t, list) and t else t
                             for t in trips]
        poll.update(self.header)
        out.append(poll)
        return out

    def flush(self, now: float, t_ms: int) -> list[Record]:
        """The aggregates of every open window (``partial: true``), at shutdown."""
        return self._close(lambda w: True, now, t_ms, partial=True)

    # --- internals ------------------------------------------------------------------------

    def _text(self, value: object) -> object:
        if isinstance(value, str) and self._mention is not None and self._mention.search(value):
            return WITHHELD
        return value

    def _entry(self, section: str, name: str, entry: object, step: float | None) -> object:
        if not isinstance(entry, Mapping):
            return entry
        e = dict(entry)
        if step is not None:
            value = e.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                e["value"] = quantize(float(value), step)
            if "raw" in e:
                e["raw"] = None
        if section == "votes":
            hidden_group = name in self._hidden
            if hidden_group and e.get("reason"):
                e["reason"] = WITHHELD
            excluded = e.get("excluded")
            if isinstance(excluded, list):
                e["excluded"] = [
                    [x[0], x[1], WITHHELD] if isinstance(x, list) and len(x) == 3
                    and (hidden_group or x[0] in self._hidden) else x
                    for x in excluded]
        return e

    def _sample(self, width: float, key: tuple[str, str], entry: object, now: float,
                t_ms: int) -> None:
        value = entry.get("value") if isinstance(entry, Mapping) else None
        w = self._windows.get(width)
        if w is None:
            w = Window(width, window_start(now, width), t_ms, t_ms)
        series = {**w.series, key: w.series.get(key, Series()).add(value)}
        self._windows[width] = replace(w, last_ms=t_ms, series=series)

    def _close(self, due: Callable[[Window], bool], now: float, t_ms: int, *,
               partial: bool) -> list[Record]:
        out: list[Record] = []
        for width in sorted(self._windows):
            w = self._windows[width]
            if not due(w):
                continue
            del self._windows[width]
            out.append(self._aggregate(w, now, t_ms, partial))
        return out

    def _aggregate(self, w: Window, now: float, t_ms: int, partial: bool) -> Record:
        rec: Record = {"type": "aggregate", "t_ms": t_ms, "t": now, "window_s": w.width,
                       "start": w.start, "end": min(w.end, now) if partial else w.end,
                       "partial": partial, "first_ms": w.first_ms, "last_ms": w.last_ms}
        for section in _SECTIONS:
            rec[section] = {name: s.summary() for (sec, name), s in sorted(w.series.items())
                            if sec == section}
        rec.update(self.header)
        return rec

