"""The audit log: append-only, hash-chained records in SQLite (WAL), verifiable offline.

One table, one row per record::

    seq   INTEGER PRIMARY KEY   1, 2, 3, ... without gaps
    ts_ms INTEGER               wall clock, Unix milliseconds (informative)
    kind  TEXT                  an ``AuditKind`` value
    body  TEXT                  canonical JSON of the record's fields (sorted keys, no spaces)
    prev  TEXT                  hash of record seq-1 (64 zeros for record 1)
    hash  TEXT                  sha256 hex of  prev "\\n" seq "\\n" ts_ms "\\n" kind "\\n" body

``verify()`` recomputes the chain: an edited record no longer matches its hash, a deleted
one leaves a gap in ``seq`` and breaks ``prev``, a reordered one breaks both (``seq`` is in
the hash). Deleting the *tail* leaves a shorter chain that is still consistent, so the head
``(seq, hash)`` is also written (atomically) to a sidecar ``<db>.head`` after every append;
``verify()`` refuses a log shorter than its head or whose record at the head's ``seq`` has
another hash. Someone able to rewrite both files consistently defeats a local check; the
head hash is small enough to ship off the device (status to the twin) where that matters.

SQLite triggers also refuse ``UPDATE`` and ``DELETE`` (defence in depth, not the proof).
Appends use ``synchronous=FULL``: a record is durable when ``append`` returns. Errors of the
database or the file system propagate as ``sqlite3.Error`` / ``OSError`` to the caller, which
logs and counts them (an audit failure never stops the plant's guard).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.io.closing import Closing
from agent.io.configstore import atomic_write

__all__ = ["GENESIS", "AuditKind", "AuditLog", "AuditRecord", "Verification", "format_record",
           "transition_record"]

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.sqlite"  # in the agent's state directory


def audit_path(state_dir: Path) -> Path:
    """The audit log of the agent whose state directory is ``state_dir``."""
    return state_dir / AUDIT_FILE

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class AuditKind(enum.Enum):
    BUNDLE_ACCEPTED = "bundle_accepted"
    BUNDLE_REJECTED = "bundle_rejected"
    CONFIG_CONFIRMED = "config_confirmed"
    CONFIG_REVERTED = "config_reverted"
    MODE_CHANGE = "mode_change"
    FAILSAFE_ENTER = "failsafe_enter"
    FAILSAFE_EXIT = "failsafe_exit"
    TRANSITION = "transition"
    ACK = "ack"
    AUTHORITY = "authority"  # twin authority LOCAL/RETURNING/REMOTE edges
    TWIN_LINK = "twin_link"  # twin link LOST/ALIVE edges (rate-limited by the runtime)
    AGENT_START = "agent_start"
    AGENT_STOP = "agent_stop"
    DRILL = "drill"  # a fault drill rehearsed in the decision core (nothing was written)


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts_ms: int
    kind: str
    body: str  # canonical JSON
    prev: str
    hash: str

    @property
    def fields(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    problems: tuple[str, ...]


def canonical(fields: dict[str, Any]) -> str:
    """Canonical JSON: sorted keys, no spaces, ASCII only (TypeError for non-JSON values)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def chain_hash(prev: str, seq: int, ts_ms: int, kind: str, body: str) -> str:
    text = f"{prev}\n{seq}\n{ts_ms}\n{kind}\n{body}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def format_record(r: AuditRecord) -> str:
    """One readable line: ``seq  time  kind  key=value ...``."""
    when = dt.datetime.fromtimestamp(r.ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    try:
        items = " ".join(f"{k}={v}" for k, v in r.fields.items())
    except ValueError:
        items = r.body
    return f"{r.seq:6d}  {when[:-3]}Z  {r.kind:<17} {items}"


class AuditLog(Closing):
    """Append-only hash-chained log at ``path`` (a SQLite file); head anchor ``path.head``."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one writer at a time is the caller's job (the runtime uses one worker thread)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA cache_size=-128")  # KiB: appends, and reads of the tail
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def append(self, kind: AuditKind | str, **fields: Any) -> AuditRecord:
        """Append one record (``fields`` must be JSON values); returns it, durable."""
        kind_text = kind.value if isinstance(kind, AuditKind) else kind
        body = canonical(fields)
        ts_ms = int(self._clock() * 1000)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")\
                .fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            digest = chain_hash(prev, seq, ts_ms, kind_text, body)
            self._db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                             (seq, ts_ms, kind_text, body, prev, digest))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        atomic_write(self.head_path, f"{seq} {digest}\n".encode("ascii"), mode=0o644)
        log.debug("audit %d %s %s", seq, kind_text, body)
        return AuditRecord(seq, ts_ms, kind_text, body, prev, digest)

    def remove_stale_temps(self) -> int:
        """Remove the head anchor's temporary files a crash left (``<db>.head.*.tmp``); for
        the one writer at start only (a reader must not race a live writer's rename).
        Returns how many were removed."""
        removed = 0
        for stale in self.path.parent.glob(f".{self.head_path.name}.*.tmp"):
            try:
                stale.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        if removed:
            log.warning("audit log: removed %d temporary head file(s) left by a crash", removed)
        return removed

    def versions(self, kind: AuditKind) -> set[int]:
        """The ``version`` field of every record of ``kind`` (records without one skipped)."""
        found: set[int] = set()
        for (body,) in self._db.execute("SELECT body FROM audit WHERE kind = ?", (kind.value,)):
            try:
                version = json.loads(body).get("version")
            except (ValueError, AttributeError):
                continue
            if isinstance(version, int) and not isinstance(version, bool):
                found.add(version)
        return found

    def records(self) -> Iterator[AuditRecord]:
        """Every record in ``seq`` order (as stored: not verified)."""
        cur = self._db.execute("SELECT seq, ts_ms, kind, body, prev, hash FROM audit "
                               "ORDER BY seq")
        for row in cur:
            yield AuditRecord(*row)

    def _head(self) -> tuple[int, str] | str | None:
        try:
            text = self.head_path.read_text(encoding="ascii").split()
        except FileNotFoundError:
            return None
        if len(text) != 2 or not text[0].isdigit():
            return "head anchor is unreadable"
        return int(text[0]), text[1]

    def verify(self) -> Verification:
        """Recompute the whole chain; ``ok`` False lists every problem found."""
        problems: list[str] = []
        prev, expected, count = GENESIS, 1, 0
        hashes: dict[int, str] = {}
        for r in self.records():
            count += 1
            if r.seq != expected:
                problems.append(f"record {expected}..{r.seq - 1} missing (deleted)"
                                if r.seq > expected else f"record {r.seq} out of order")
            if r.prev != prev:
                problems.append(f"record {r.seq}: does not follow the record before it "
                                "(deleted or reordered)")
            if chain_hash(r.prev, r.seq, r.ts_ms, r.kind, r.body) != r.hash:
                problems.append(f"record {r.seq}: content does not match its hash (edited)")
            hashes[r.seq] = r.hash
            prev, expected = r.hash, r.seq + 1
        head = self._head()
        if isinstance(head, str):
            problems.append(head)
        elif head is None:
            if count:
                problems.append("head anchor missing: truncation cannot be ruled out")
        else:
            seq, digest = head
            if seq not in hashes:
                problems.append(f"head anchor names record {seq} but the log ends at "
                                f"{expected - 1} (truncated)")
            elif hashes[seq] != digest:
                problems.append(f"record {seq}: hash differs from the head anchor")
        return Verification(not problems, count, tuple(problems))


def transition_record(old: str, new: str, event: str,
                      cause: str) -> tuple[AuditKind, dict[str, Any]]:
    """The audit record for a safety state transition (states as their enum values):
    entering ``failsafe`` and leaving it are records of their own, with the cause."""
    kind = (AuditKind.FAILSAFE_ENTER if new == "failsafe" and old != "failsafe"
            else AuditKind.FAILSAFE_EXIT if old == "failsafe" and new != "failsafe"
            else AuditKind.TRANSITION)
    return kind, {"old": old, "new": new, "event": event, "cause": cause}
