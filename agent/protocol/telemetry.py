"""Telemetry records (pure): what the agent tells the twin, as maps packed for the spool.

Each builder returns the record as a map; the feed passes it through the data-minimisation
policy (``agent.core.minimise``, which adds the ``device`` and ``policy`` header, PROTOCOL.md
§7.2.1) and :func:`pack` makes the spooled bytes.

Two record types built here, each one msgpack map (``body`` of a ``telemetry`` message, PROTOCOL.md
section 7.2). Every record carries ``type``, ``t_ms`` (agent wall clock, Unix ms,
informative) and ``t`` (agent monotonic seconds, for ordering within one agent run)::

    {"type": "poll", "t_ms": int, "t": float, "tick": int,
     "state": "normal", "mode": "shadow", "link": "alive",
     "signals": {name: {"raw": [int, ...] | bool | nil, "value": float | nil,
                        "quality": "good" | "bad", "error": str | nil}},
     "votes":   {group: {"value": float | nil, "quality": "good" | "degraded" | "bad",
                         "used": [channel, ...], "reason": str,
                         "excluded": [[channel, reason, detail], ...]}},
     "trips":   [[name, group, cause], ...],
     "shadow":  {output: {"id": str, "value": float, "actual": float | nil,
                          "divergence": float | nil}}}

    {"type": "event", "t_ms": int, "t": float, "event": kind, ...kind's fields}
       transition:         old, new, cause, trigger   (safety state change)
       trip:               name, group, cause         (a trip rule started demanding safety)
       link:               old, new, cause            (twin heartbeat monitor)
       recommend_rejected: id, output, reason, detail
       recommend_expired:  id, output
       shadow:             id, output, value, actual, divergence ("would have written")
       spool:              kind, text, first, last, count (telemetry degraded or gapped)

The minimiser adds ``aggregate`` records (``agent.core.minimise``) and the header; the
spool adds its own EVENT records (``agent.io.spool.events.event_payload``, type
``spool_event``). Nothing here does I/O or reads a clock: times come in as arguments.
A body over ``BODY_MAX`` bytes is a bug of the caller's profile size and is replaced by a
small ``oversize`` event naming the size, with the record's header (never a frame the link
would refuse).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from agent.core.authority import AuthTransition
from agent.core.heartbeat import LinkEvent
from agent.core.recommend import Recommendation, ShadowLine, Verdict
from agent.core.safety import Transition
from agent.core.trips import TripHit
from agent.core.voting import Vote
from agent.model.messages import BODY_MAX
from agent.model.readings import Reading
from agent.model.spool import SpoolEvent

Record = dict[str, Any]


def pack(record: Mapping[str, Any]) -> bytes:
    """msgpack bytes of ``record``; an oversize record becomes an ``oversize`` event."""
    data: bytes = msgpack.packb(dict(record), use_bin_type=True)
    if len(data) > BODY_MAX:
        header = {k: record[k] for k in ("device", "policy") if k in record}
        small: bytes = msgpack.packb(
            {"type": "event", "t_ms": record.get("t_ms", 0), "t": record.get("t", 0.0),
             "event": "oversize", "size": len(data), "of": str(record.get("type")), **header},
            use_bin_type=True)
        return small
    return data


def unpack(body: bytes) -> dict[str, Any]:
    """The map in a record body; ValueError if it is not one (for the twin and tests)."""
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"telemetry body is not msgpack: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("telemetry body is not a map")
    return data


def _reading(r: Reading) -> dict[str, Any]:
    raw: Any = list(r.raw) if isinstance(r.raw, tuple) else r.raw
    return {"raw": raw, "value": r.value, "quality": r.quality.value, "error": r.error}


def _vote(v: Vote) -> dict[str, Any]:
    return {"value": v.value, "quality": v.quality.value, "used": list(v.used),
            "reason": v.reason,
            "excluded": [[e.channel, e.reason.value, e.detail] for e in v.excluded]}


def _shadow(line: ShadowLine) -> dict[str, Any]:
    return {"id": line.id, "value": line.value, "actual": line.actual,
            "divergence": line.divergence}


def poll_record(*, t: float, t_ms: int, tick: int, state: str, mode: str, link: str,
                readings: Mapping[str, Reading], votes: Mapping[str, Vote],
                trips: Iterable[TripHit], shadow: Mapping[str, ShadowLine]) -> Record:
    """One poll's telemetry (see the module docstring)."""
    return {
        "type": "poll", "t_ms": t_ms, "t": t, "tick": tick, "state": state, "mode": mode,
        "link": link,
        "signals": {name: _reading(r) for name, r in readings.items()},
        "votes": {name: _vote(v) for name, v in votes.items()},
        "trips": [[h.name, h.group, h.cause] for h in trips],
        "shadow": {name: _shadow(line) for name, line in shadow.items()},
    }


def _event(name: str, t: float, t_ms: int, /, **fields: Any) -> Record:
    return {"type": "event", "t_ms": t_ms, "t": t, "event": name, **fields}


def transition_record(tr: Transition, t_ms: int) -> Record:
    return _event("transition", tr.t, t_ms, old=tr.old.value, new=tr.new.value,
                  cause=tr.cause, trigger=tr.event.value)


def authority_record(tr: AuthTransition, t_ms: int) -> Record:
    """A twin authority transition (PROTOCOL.md §7.2, ``event: authority``)."""
    return _event("authority", tr.t, t_ms, old=tr.old.value, new=tr.new.value,
                  cause=tr.cause, trigger=tr.event.value)


def trip_record(hit: TripHit, t: float, t_ms: int) -> Record:
    return _event("trip", t, t_ms, name=hit.name, group=hit.group, cause=hit.cause)


def link_record(ev: LinkEvent, t_ms: int) -> Record:
    return _event("link", ev.t, t_ms, old=ev.old.value, new=ev.new.value, cause=ev.cause)


def rejected_record(v: Verdict, t: float, t_ms: int) -> Record:
    return _event("recommend_rejected", t, t_ms, id=v.id, output=v.output,
                  reason=v.reason.value, detail=v.detail)


def expired_record(rec: Recommendation, t: float, t_ms: int) -> Record:
    return _event("recommend_expired", t, t_ms, id=rec.id, output=rec.output)


def shadow_record(line: ShadowLine, t_ms: int) -> Record:
    return _event("shadow", line.t, t_ms, **_shadow(line), output=line.output)


def spool_record(ev: SpoolEvent, t: float, t_ms: int) -> Record:
    return _event("spool", t, t_ms, kind=ev.kind.value, text=ev.text, first=ev.first,
                  last=ev.last, count=ev.count)
