"""The spool's own event records: their msgpack payload and the dropped seq ranges of a GAP.

A spool event (``agent.model.spool.SpoolEvent``) is stored as an EVENT record whose payload
is the map drawn in :func:`event_payload`; the twin reads it like any telemetry body.
"""

from __future__ import annotations

import msgpack

from agent.model.spool import SpoolEvent


def event_payload(event: SpoolEvent) -> bytes:
    """The msgpack map stored for an EVENT record::

    {"type": "spool_event", "event": <kind value>, "text": str,
     "first": int|None, "last": int|None, "count": int, "t_wall": float,
     "ranges": [[first, last], ...]}     # GAP: the exact dropped ranges
    """
    packed: bytes = msgpack.packb(
        {
            "type": "spool_event",
            "event": event.kind.value,
            "text": event.text,
            "first": event.first,
            "last": event.last,
            "count": event.count,
            "t_wall": event.t_wall,
            "ranges": [list(r) for r in event.ranges],
        },
        use_bin_type=True,
    )
    return packed


def event_ranges(payload: bytes) -> list[tuple[int, int]]:
    """The ``ranges`` of a stored GAP event record (``[]`` if it has none or is unreadable)."""
    try:
        data = msgpack.unpackb(payload)
        return [(int(a), int(b)) for a, b in data.get("ranges", [])]
    except (ValueError, TypeError, AttributeError, msgpack.ExtraData, msgpack.FormatError):
        return []


def merge_ranges(ranges: list[tuple[int, int]], cap: int) -> tuple[tuple[int, int], ...]:
    """Sorted union of inclusive seq ranges, at most ``cap`` of them.

    Over the cap, the two ranges with the smallest hole between them are joined (the only
    case where a GAP event may name a few seqs that were in fact delivered).
    """
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    while len(out) > cap:
        i = min(range(len(out) - 1), key=lambda k: out[k + 1][0] - out[k][1])
        out[i : i + 2] = [(out[i][0], out[i + 1][1])]
    return tuple(out)


def ranges_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{a}..{b}" for a, b in ranges)
