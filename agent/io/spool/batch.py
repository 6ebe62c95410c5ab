"""The body of one append transaction: overflow policy, GAP ranges, event rows, meta.

Runs inside a transaction the caller opened (``BEGIN IMMEDIATE``) and commits; it mutates
only a private copy of ``SpoolState`` and returns it, so a failed transaction (rolled back
by the caller) leaves the published state untouched. Raises sqlite3.Error / OSError from the
database unchanged: the caller classifies them.

Accounting: each row costs ``len(payload) + RECORD_OVERHEAD`` bytes. Data may fill the bounds
minus ``EVENT_RESERVE_RECORDS`` / ``EVENT_RESERVE_BYTES``; the spool's own event records use
the reserve, so a STOPPED, RESUMED or GAP event always fits.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from agent.io.spool.events import event_payload, event_ranges, merge_ranges, ranges_text
from agent.model.spool import (
    AppendResult,
    AppendStatus,
    Overflow,
    RecordKind,
    SpoolEvent,
    SpoolEventKind,
)

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 32  # accounted bytes per row on top of the payload (row header, key, index)
EVENT_RESERVE_RECORDS = 8  # rows kept free for the spool's own event records
EVENT_RESERVE_BYTES = 4096
MAX_GAP_RANGES = 64  # ranges one GAP event may carry (see records.merge_ranges)

_Row = tuple[int, float, int, bytes, int | None]


@dataclass
class SpoolState:
    """In-memory mirror of the file. Published objects are never mutated (copy, then swap)."""

    count: int = 0
    bytes: int = 0
    first: int | None = None
    last: int | None = None
    next_seq: int = 1
    stopped_from: int | None = None
    stop_lost: int = 0

    def copy(self) -> SpoolState:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class Limits:
    max_records: int
    max_bytes: int
    overflow: Overflow

    @property
    def data_records(self) -> int:
        return self.max_records - EVENT_RESERVE_RECORDS

    @property
    def data_bytes(self) -> int:
        return self.max_bytes - EVENT_RESERVE_BYTES


@dataclass
class Outcome:
    """What one batch did, to be published by the caller after COMMIT."""

    result: AppendResult
    state: SpoolState
    events: list[SpoolEvent]  # new events for the caller (already stored as records)
    appended: int = 0
    dropped: int = 0
    gaps: int = 0
    refused: int = 0


def write_batch(
    conn: sqlite3.Connection,
    published: SpoolState,
    records: Sequence[bytes],
    now_wall: float,
    *,
    limits: Limits,
    carried: Sequence[SpoolEvent],
) -> Outcome:
    """Insert ``carried`` events, then ``records`` under ``limits``; write meta. No COMMIT."""
    n = len(records)
    size = sum(len(r) for r in records) + n * RECORD_OVERHEAD
    st = published.copy()
    events: list[SpoolEvent] = []
    rows: list[_Row] = [event_row(st, ev) for ev in carried]
    if limits.overflow is Overflow.STOP and n:
        fits = st.count + n <= limits.data_records and st.bytes + size <= limits.data_bytes
        if fits and st.stopped_from is not None:
            ev = SpoolEvent(
                SpoolEventKind.RESUMED,
                now_wall,
                f"recording resumed at seq {st.next_seq}; {st.stop_lost} records not "
                f"recorded since seq {st.stopped_from}",
                first=st.next_seq,
                count=st.stop_lost,
            )
            st.stopped_from, st.stop_lost = None, 0
            rows.append(event_row(st, ev))
            events.append(ev)
        elif not fits:
            if st.stopped_from is None:
                st.stopped_from = st.next_seq
                ev = SpoolEvent(
                    SpoolEventKind.STOPPED,
                    now_wall,
                    f"recording stopped from seq {st.next_seq}: spool full",
                    first=st.next_seq,
                )
                rows.append(event_row(st, ev))
                events.append(ev)
            st.stop_lost += n
            insert(conn, rows)
            write_meta(conn, st)
            result = AppendResult(AppendStatus.REJECTED_FULL, None, None, dropped=n)
            return Outcome(result, st, events, refused=n)
    first = st.next_seq
    for payload in records:
        rows.append((st.next_seq, now_wall, int(RecordKind.DATA), bytes(payload), None))
        st.next_seq += 1
    if n:
        st.count += n
        st.bytes += size
        st.last = st.next_seq - 1
        st.first = first if st.first is None else st.first
    insert(conn, rows)
    outcome = Outcome(AppendResult(AppendStatus.STORED, None, None), st, events, appended=n)
    if limits.overflow is Overflow.DROP_OLDEST and (
        st.count > limits.data_records or st.bytes > limits.data_bytes
    ):
        ev, outcome.dropped = drop_oldest(conn, st, limits, now_wall)
        outcome.gaps = 1
        insert(conn, [event_row(st, ev)])
        events.append(ev)
    write_meta(conn, st)
    status = AppendStatus.STORED_WITH_DROP if outcome.dropped else AppendStatus.STORED
    outcome.result = AppendResult(
        status, first if n else None, first + n - 1 if n else None, outcome.dropped
    )
    return outcome


def drop_oldest(
    conn: sqlite3.Connection, st: SpoolState, limits: Limits, now_wall: float
) -> tuple[SpoolEvent, int]:
    """Delete the oldest rows until data fits; return the GAP event and the rows deleted.

    The dropped rows are a prefix ``first..cut`` of the stored seqs, and every seq in it was
    stored (acks and drops only ever delete prefixes), so that range is exact. A GAP event
    row dropped with them hands its own ranges on to the new event.
    """
    need_r, need_b = st.count - limits.data_records, st.bytes - limits.data_bytes
    freed_r = freed_b = 0
    ranges: list[tuple[int, int]] = []
    first: int | None = None
    cut = 0
    cur = conn.execute(
        "SELECT seq, length(payload), CASE WHEN gap_first IS NULL THEN NULL ELSE payload END"
        " FROM records ORDER BY seq"
    )
    while freed_r < need_r or freed_b < need_b:
        row = cur.fetchone()
        if row is None:
            break
        seq, length, gap_payload = row
        if gap_payload is not None:
            ranges.extend(event_ranges(gap_payload))
        first = seq if first is None else first
        cut = seq
        freed_r += 1
        freed_b += length + RECORD_OVERHEAD
    cur.close()
    assert first is not None, "drop_oldest called on a spool within its bounds"
    ranges.append((first, cut))
    merged = merge_ranges(ranges, MAX_GAP_RANGES)
    conn.execute("DELETE FROM records WHERE seq <= ?", (cut,))
    st.count -= freed_r
    st.bytes -= freed_b
    st.first = conn.execute("SELECT MIN(seq) FROM records").fetchone()[0]
    ev = SpoolEvent(
        SpoolEventKind.GAP,
        now_wall,
        f"records {ranges_text(merged)} dropped: spool full",
        first=merged[0][0],
        last=merged[-1][1],
        count=freed_r,
        ranges=merged,
    )
    log.warning("spool: %s", ev.text)
    return ev, freed_r


def event_row(st: SpoolState, ev: SpoolEvent) -> _Row:
    """The row storing ``ev`` at the next seq (``st`` is advanced)."""
    payload = event_payload(ev)
    gap_first = ev.first if ev.kind is SpoolEventKind.GAP else None  # marks GAP rows
    row = (st.next_seq, ev.t_wall, int(RecordKind.EVENT), payload, gap_first)
    st.first = st.next_seq if st.first is None else st.first
    st.last = st.next_seq
    st.next_seq += 1
    st.count += 1
    st.bytes += len(payload) + RECORD_OVERHEAD
    return row


def insert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    if rows:
        conn.executemany(
            "INSERT INTO records (seq, t_wall, kind, payload, gap_first) VALUES (?,?,?,?,?)",
            rows,
        )


def write_meta(conn: sqlite3.Connection, st: SpoolState) -> None:
    """Persist the next seq and the stop state (same transaction as the rows)."""
    stopped = -1 if st.stopped_from is None else st.stopped_from
    conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("next_seq", st.next_seq), ("stopped_from", stopped), ("stop_lost", st.stop_lost)],
    )


def read_state(conn: sqlite3.Connection) -> tuple[SpoolState, bool]:
    """The state of an opened file, and whether the file is fresh (never written)."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    count, size, first, last = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0), MIN(seq), MAX(seq) FROM records"
    ).fetchone()
    stopped = int(meta.get("stopped_from", -1))
    st = SpoolState(
        count=count,
        bytes=size + count * RECORD_OVERHEAD,
        first=first,
        last=last,
        next_seq=max(int(meta.get("next_seq", 0)), (last or 0) + 1, 1),
        stopped_from=None if stopped < 0 else stopped,
        stop_lost=int(meta.get("stop_lost", 0)),
    )
    return st, "next_seq" not in meta and last is None
