"""The durable telemetry spool: one SQLite file (WAL, synchronous=FULL) in the state directory.

Contract
--------
* ``append(records, now_wall)`` stores one batch in one transaction and gives it consecutive
  seqs. When it returns ``durable`` the batch survives kill -9 and a power cut.
* Seqs are never reused: the next seq is kept in ``meta`` in the same transaction as the
  batch, so it survives acks that delete everything. A new file (first start, lost file,
  quarantined file) starts at, in order of preference: the in-memory next seq (corruption
  found while running), the sidecar reservation ``<name>.seq`` (see ``agent.io.spool.files``),
  else a wall-clock floor (microseconds since the epoch). A SEQ_FLOOR event record explains
  the jump to the twin.
* Records are deleted only by ``ack(upto_seq)`` (cumulative) or by the ``drop_oldest``
  overflow policy, which stores a GAP event record naming the exact dropped range.
* Size bound: at most ``max_records`` rows and ``max_bytes`` accounted bytes (payload +
  ``RECORD_OVERHEAD`` per row). Data may use the bound minus a small reserve kept for the
  spool's own event records, so a gap/stop event always fits. The file itself is capped by
  ``PRAGMA max_page_count`` (``file_limit_bytes``) as a backstop.
* Errors never reach the caller: a corrupt file (SQLITE_CORRUPT/NOTADB, at open or in use) is
  renamed to ``<name>.corrupt-<UTC stamp>`` and a new file started; a full disk
  (SQLITE_FULL/ENOSPC) or an I/O error loses that batch only. Each case is counted in
  ``stats()``, logged, returned in ``AppendResult.status`` and as a ``SpoolEvent`` (drained with
  ``drain_events()``), and stored as an EVENT record once writing works again.
  Calling a method after ``close()`` is a bug and raises RuntimeError; so do invalid bounds
  given to ``open``.

Threads: every method may be called from any thread (not from the control loop: append and
ack each wait for one fsync). Writes share one connection under a lock; ``pending`` reads on
a connection per thread, so the sender reading backlog does not wait for an append's fsync.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agent.io.closing import Closing
from agent.io.spool import batch, files
from agent.io.spool.batch import (
    EVENT_RESERVE_BYTES,
    EVENT_RESERVE_RECORDS,
    RECORD_OVERHEAD,
    SpoolState,
)
from agent.io.spool.files import CACHE_PRAGMA, Failure
from agent.model.spool import (
    AppendResult,
    AppendStatus,
    Backlog,
    Overflow,
    RecordKind,
    SpooledRecord,
    SpoolEvent,
    SpoolEventKind,
    SpoolStats,
)

log = logging.getLogger(__name__)

REOPEN_INTERVAL_S = 5.0  # while no file can be opened, retry at most this often
MAX_UNSTORED_EVENTS = 16


class Spool(Closing):
    """Store-and-forward telemetry spool. Create with ``Spool.open``."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_records: int,
        overflow: Overflow,
        file_limit_bytes: int | None,
    ) -> None:
        if max_records <= 2 * EVENT_RESERVE_RECORDS:
            raise ValueError(f"max_records must be > {2 * EVENT_RESERVE_RECORDS}")
        if max_bytes <= 2 * EVENT_RESERVE_BYTES:
            raise ValueError(f"max_bytes must be > {2 * EVENT_RESERVE_BYTES}")
        self.path = path
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.overflow = overflow
        self._limits = batch.Limits(max_records, max_bytes, overflow)
        self._file_limit = file_limit_bytes if file_limit_bytes else 4 * max_bytes + (8 << 20)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._generation = 0
        self._st = SpoolState()
        self._reserved = 0
        self._events: list[SpoolEvent] = []
        self._unstored: list[SpoolEvent] = []
        self._closed = False
        self._loaded = False  # True once a file's state was read (its next seq is known)
        self._last_open_try = 0.0
        self._n = dict.fromkeys(
            (
                "appended",
                "acked",
                "dropped",
                "not_recorded",
                "gaps",
                "quarantines",
                "disk_full",
                "errors",
                "bad_acks",
            ),
            0,
        )

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        max_bytes: int,
        max_records: int,
        overflow: Overflow,
        file_limit_bytes: int | None = None,
        now_wall: float | None = None,
    ) -> Spool:
        """Open (or create) the spool at ``path``. Never raises for file problems.

        A corrupt file is quarantined and replaced; if no file can be opened at all the
        spool is degraded (appends return FAILED) and retries every ``REOPEN_INTERVAL_S``.
        ValueError for bounds too small to hold the event reserve (a configuration bug).
        """
        spool = cls(
            Path(path),
            max_bytes=max_bytes,
            max_records=max_records,
            overflow=overflow,
            file_limit_bytes=file_limit_bytes,
        )
        with spool._lock:
            spool._open_file(time.time() if now_wall is None else now_wall, carry=None)
        return spool

    def close(self) -> None:
        """Close every connection. Idempotent."""
        with self._lock:
            self._close_conns()
            self._closed = True

    def _close_conns(self) -> None:
        self._generation += 1
        for conn in [self._conn, *self._readers]:
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:  # pragma: no cover - close of a broken file
                    log.warning("spool close: %s", exc)
        self._conn = None
        self._readers = []

    def _open_file(self, now_wall: float, carry: int | None) -> None:
        """Open the file into ``self._conn``/``self._st``; quarantine it once if corrupt."""
        self._last_open_try = now_wall
        for attempt in (1, 2):
            try:
                conn = files.connect(self.path, max_page_count=self._max_pages())
            except (sqlite3.Error, OSError) as exc:
                if not self._open_failed(exc, now_wall, attempt):
                    return
                continue
            try:
                files.quick_check(conn)
                self._conn = conn
                self._load(now_wall, carry)
            except (sqlite3.Error, OSError) as exc:
                conn.close()
                self._conn = None
                if not self._open_failed(exc, now_wall, attempt):
                    return
                continue
            return

    def _open_failed(self, exc: BaseException, now_wall: float, attempt: int) -> bool:
        """Handle an error at open; True to try once more with a fresh file."""
        self._n["errors"] += 1
        if files.classify(exc) is not Failure.CORRUPT or attempt > 1:
            log.error("spool %s cannot be opened, telemetry degraded: %s", self.path, exc)
            return False
        try:
            target = files.quarantine(self.path, now_wall)
        except OSError as qexc:
            log.error("spool %s corrupt and cannot be quarantined: %s", self.path, qexc)
            return False
        self._n["quarantines"] += 1
        self._note(
            SpoolEvent(
                SpoolEventKind.QUARANTINED,
                now_wall,
                f"spool file corrupt at open ({exc}); quarantined as {target.name}; "
                "its unacknowledged records are lost",
            )
        )
        return True

    def _max_pages(self) -> int:
        return max(64, self._file_limit // 4096)

    def _load(self, now_wall: float, carry: int | None) -> None:
        conn = self._conn
        assert conn is not None
        st, fresh = batch.read_state(conn)
        reservation = files.read_reservation(self.path)
        if fresh:
            if carry is not None:
                st.next_seq, why = carry, "continuing the previous file"
            elif reservation is not None:
                st.next_seq, why = reservation, "above the seq reservation"
            else:
                st.next_seq, why = files.time_floor(now_wall), "from the wall-clock floor"
            first_start = carry is None and reservation is None and not self._n["quarantines"]
            self._note(
                SpoolEvent(
                    SpoolEventKind.SEQ_FLOOR,
                    now_wall,
                    f"new spool file; seqs start at {st.next_seq} ({why})",
                    first=st.next_seq,
                ),
                logging.INFO if first_start else logging.WARNING,
            )
        self._st = st
        self._loaded = True
        self._reserved = reservation or 0
        self._reserve(st.next_seq)
        if fresh:
            conn.execute("BEGIN IMMEDIATE")
            batch.write_meta(conn, st)
            conn.execute("COMMIT")

    def _reserve(self, upto: int) -> None:
        """Make sure the sidecar reservation is above ``upto`` before seqs up to it are used."""
        if upto >= self._reserved:
            value = upto + files.SEQ_BLOCK
            if files.write_reservation(self.path, value):
                self._reserved = value

    # ------------------------------------------------------------------ events
    def _note(self, event: SpoolEvent, level: int = logging.WARNING) -> None:
        """Tell the caller now and store the event as a record at the next write."""
        log.log(level, "spool: %s", event.text)
        for queue, cap in ((self._events, 1024), (self._unstored, MAX_UNSTORED_EVENTS)):
            prev = queue[-1] if queue else None
            if (
                prev is not None
                and prev.kind is event.kind
                and event.kind in (SpoolEventKind.DISK_FULL, SpoolEventKind.NOT_RECORDED)
            ):
                total = prev.count + event.count
                reason = event.text.partition(": ")[2] or event.text
                queue[-1] = dataclasses.replace(
                    event, count=total, text=f"{total} records not recorded: {reason}"
                )
            elif len(queue) < cap:
                queue.append(event)

    def note(self, event: SpoolEvent) -> None:
        """Report ``event`` and store it as an EVENT record with the next append.

        For losses that happen before the spool (e.g. the writer's queue was full), so that
        they reach the twin too. At most ``MAX_UNSTORED_EVENTS`` wait; repeated NOT_RECORDED
        or DISK_FULL events are merged into one with the summed count.
        """
        with self._lock:
            self._note(event)

    def drain_events(self) -> list[SpoolEvent]:
        """Events since the last call, oldest first (gaps, stops, quarantines, failures)."""
        with self._lock:
            out, self._events = self._events, []
        return out

    # ------------------------------------------------------------------ append
    def append(self, records: Sequence[bytes], now_wall: float) -> AppendResult:
        """Store ``records`` (opaque bytes) as one durable batch with consecutive seqs.

        Never raises for storage problems: see the module docstring and ``AppendStatus``.
        """
        n = len(records)
        with self._lock:
            self._check_open()
            if self._conn is None and abs(now_wall - self._last_open_try) >= REOPEN_INTERVAL_S:
                self._open_file(now_wall, carry=self._st.next_seq if self._loaded else None)
            if self._conn is None:
                self._lost(n, now_wall, "no spool file could be opened", Failure.OTHER)
                return AppendResult(AppendStatus.FAILED, None, None, dropped=n)
            if n == 0 and not self._unstored:
                return AppendResult(AppendStatus.STORED, None, None)
            try:
                return self._append_txn(self._conn, records, now_wall)
            except (sqlite3.Error, OSError) as exc:
                self._rollback()
                self._failed(exc, n, now_wall)
                return AppendResult(AppendStatus.FAILED, None, None, dropped=n)

    def _append_txn(
        self, conn: sqlite3.Connection, records: Sequence[bytes], now_wall: float
    ) -> AppendResult:
        carried = list(self._unstored)
        conn.execute("BEGIN IMMEDIATE")
        out = batch.write_batch(
            conn, self._st, records, now_wall, limits=self._limits, carried=carried
        )
        self._reserve(out.state.next_seq)  # before the seqs become durable
        conn.execute("COMMIT")
        self._st = out.state
        del self._unstored[: len(carried)]
        self._events.extend(out.events)
        self._n["appended"] += out.appended
        self._n["dropped"] += out.dropped
        self._n["gaps"] += out.gaps
        self._n["not_recorded"] += out.refused
        return out.result

    # ------------------------------------------------------------------ failures
    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("spool rollback failed: %s", exc)

    def _failed(self, exc: BaseException, lost: int, now_wall: float) -> None:
        """A write failed: count it, degrade as ``classify`` says. Never raises."""
        self._n["errors"] += 1
        failure = files.classify(exc)
        if failure is Failure.CORRUPT:
            self._quarantine_running(exc, lost, now_wall)
        else:
            self._lost(lost, now_wall, str(exc), failure)

    def _lost(self, n: int, now_wall: float, why: str, failure: Failure) -> None:
        self._n["not_recorded"] += n
        if failure is Failure.FULL:
            self._n["disk_full"] += 1
            kind = SpoolEventKind.DISK_FULL
        else:
            kind = SpoolEventKind.NOT_RECORDED
        if n:
            self._note(SpoolEvent(kind, now_wall, f"{n} records not recorded: {why}", count=n))

    def _quarantine_running(self, exc: BaseException, lost: int, now_wall: float) -> None:
        old = self._st
        self._close_conns()
        self._n["not_recorded"] += lost
        try:
            target = files.quarantine(self.path, now_wall)
        except OSError as qexc:
            log.error("spool %s corrupt and cannot be quarantined: %s", self.path, qexc)
            self._last_open_try = now_wall
            return
        self._n["quarantines"] += 1
        self._note(
            SpoolEvent(
                SpoolEventKind.QUARANTINED,
                now_wall,
                f"spool file corrupt ({exc}); quarantined as {target.name}; unacknowledged "
                f"records {old.first}..{old.last} ({old.count}) lost; {lost} records of the "
                "failed batch not recorded",
                first=old.first,
                last=old.last,
                count=old.count + lost,
            )
        )
        self._open_file(now_wall, carry=old.next_seq)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"spool {self.path} used after close()")

    # ------------------------------------------------------------------ read / ack
    def _reader(self) -> tuple[int, sqlite3.Connection | None]:
        """This thread's read connection to the current file (reopened after quarantine)."""
        with self._lock:
            self._check_open()
            gen = self._generation
            if self._conn is None:
                return gen, None
            held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
            if held is not None and held[0] == gen:
                return held
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            conn.execute("PRAGMA query_only = 1")
            conn.execute(CACHE_PRAGMA)
            self._readers.append(conn)
            self._local.conn = (gen, conn)
            return gen, conn

    def pending(
        self, after_seq: int, limit: int, upto_seq: int | None = None
    ) -> list[SpooledRecord]:
        """Up to ``limit`` stored records with ``after_seq < seq <= upto_seq``, in seq order.

        Returns [] (error counted, corrupt file quarantined) if the file cannot be read.
        """
        gen, conn = self._reader()
        if conn is None or limit <= 0:
            return []
        upper = upto_seq if upto_seq is not None else (1 << 62)
        try:
            rows = conn.execute(
                "SELECT seq, t_wall, kind, payload FROM records "
                "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after_seq, upper, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            with self._lock:
                self._n["errors"] += 1
                log.error("spool read failed: %s", exc)
                corrupt = files.classify(exc) is Failure.CORRUPT
                if corrupt and self._conn is not None and self._generation == gen:
                    self._quarantine_running(exc, 0, time.time())
            return []
        return [SpooledRecord(s, t, bytes(p), RecordKind(k)) for s, t, k, p in rows]

    def ack(self, upto_seq: int) -> int:
        """Delete every record with seq <= ``upto_seq`` (cumulative ack); the count deleted.

        An ack beyond the last seq handed out is bad input from the peer: refused (returns
        0), counted as ``bad_acks`` and logged, nothing deleted.
        """
        with self._lock:
            self._check_open()
            st = self._st
            if upto_seq >= st.next_seq:
                self._n["bad_acks"] += 1
                log.warning("spool: ack %d beyond last seq %d refused", upto_seq, st.next_seq - 1)
                return 0
            conn = self._conn
            if conn is None or st.first is None or upto_seq < st.first:
                return 0
            try:
                conn.execute("BEGIN IMMEDIATE")
                count, size = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM records "
                    "WHERE seq <= ?",
                    (upto_seq,),
                ).fetchone()
                conn.execute("DELETE FROM records WHERE seq <= ?", (upto_seq,))
                first = conn.execute("SELECT MIN(seq) FROM records").fetchone()[0]
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._rollback()
                self._failed(exc, 0, time.time())
                return 0
            new = dataclasses.replace(
                st,
                count=st.count - count,
                bytes=st.bytes - size - count * RECORD_OVERHEAD,
                first=first,
                last=st.last if first is not None else None,
            )
            self._st = new
            self._n["acked"] += count
            return int(count)

    # ------------------------------------------------------------------ status
    def backlog(self) -> Backlog:
        """Unacknowledged records as last committed (no I/O)."""
        st = self._st
        return Backlog(st.count, st.first, st.last, st.bytes)

    def durability(self) -> dict[str, str]:
        """The journal mode and sync level in force on the write connection (for checks)."""
        with self._lock:
            if self._conn is None:
                return {"journal_mode": "none", "synchronous": "none"}
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        levels = {0: "off", 1: "normal", 2: "full", 3: "extra"}
        return {"journal_mode": str(mode), "synchronous": levels.get(int(sync), str(sync))}

    @property
    def next_seq(self) -> int:
        return self._st.next_seq

    @property
    def degraded(self) -> bool:
        """True while no spool file is open (appends fail and are counted)."""
        return self._conn is None

    def stats(self) -> SpoolStats:
        with self._lock:
            n = dict(self._n)
            st = self._st
        return SpoolStats(
            appended=n["appended"],
            acked=n["acked"],
            dropped=n["dropped"],
            not_recorded=n["not_recorded"],
            gaps=n["gaps"],
            quarantines=n["quarantines"],
            disk_full=n["disk_full"],
            errors=n["errors"],
            bad_acks=n["bad_acks"],
            backlog=Backlog(st.count, st.first, st.last, st.bytes),
            stopped=st.stopped_from is not None,
            next_seq=st.next_seq,
            path=str(self.path),
        )
