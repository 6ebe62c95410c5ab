"""File-level helpers of the spool: connections, error classes, quarantine, the seq sidecar.

The spool lives in one SQLite file ``<name>`` (plus SQLite's ``<name>-wal`` and ``<name>-shm``)
and one tiny sidecar ``<name>.seq`` holding the *seq reservation*: an integer R such that
every seq ever handed out by this spool is < R. It is rewritten atomically (temp file, fsync,
rename, fsync of the directory) when the spool's next seq would pass R, in blocks of
``SEQ_BLOCK``, so it costs one small write per million records. It exists for one case: the
database file is lost or corrupt at open, and the next seq must still be above every seq the
twin may already have seen.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

SEQ_BLOCK = 1_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY,  -- consecutive, never reused (see Spool docstring)
    t_wall    REAL    NOT NULL,     -- epoch seconds of the append
    kind      INTEGER NOT NULL,     -- RecordKind: 0 data, 1 spool event
    payload   BLOB    NOT NULL,     -- opaque msgpack bytes
    gap_first INTEGER               -- GAP events only: first dropped seq of the range
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class Failure(enum.Enum):
    """How a storage error degrades the spool."""

    CORRUPT = "corrupt"  # SQLITE_CORRUPT / SQLITE_NOTADB: quarantine the file
    FULL = "full"  # SQLITE_FULL / ENOSPC / EDQUOT: nothing stored, file kept
    OTHER = "other"  # I/O error, busy, ...: nothing stored, file kept


def classify(exc: BaseException) -> Failure:
    """Map a sqlite3 or OS error to how the spool reacts. Never raises."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            primary = code & 0xFF
            if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                return Failure.CORRUPT
            if primary == sqlite3.SQLITE_FULL:
                return Failure.FULL
        text = str(exc).lower()
        if "malformed" in text or "not a database" in text:
            return Failure.CORRUPT
        if "full" in text:
            return Failure.FULL
        return Failure.OTHER
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Failure.FULL
    return Failure.OTHER


# SQLite's page cache per connection (default 2 MiB, grown as pages are touched): the spool
# is read back in small recent ranges, which the OS page cache serves as well
CACHE_PRAGMA = "PRAGMA cache_size = -256"  # KiB


def connect(path: Path, *, max_page_count: int | None) -> sqlite3.Connection:
    """Open ``path`` with the spool's pragmas (WAL, synchronous=FULL) and schema.

    Raises sqlite3.Error (e.g. NOTADB for a garbage file); the caller classifies it.
    The connection is in autocommit mode: the caller issues BEGIN IMMEDIATE / COMMIT.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode WAL refused: {mode!r}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(CACHE_PRAGMA)
        conn.execute("PRAGMA journal_size_limit = 4194304")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def quick_check(conn: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError if SQLite's quick_check finds the file damaged."""
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if [r[0] for r in rows] != ["ok"]:
        raise sqlite3.DatabaseError("database disk image is malformed: " + str(rows[:3]))


def quarantine(path: Path, now_wall: float) -> Path:
    """Rename ``path`` (and its -wal/-shm) to ``<name>.corrupt-<UTC timestamp>``.

    The WAL must move with the file, or SQLite would replay it into the new spool. Returns
    the new name. Raises OSError if the main file cannot be renamed (the caller degrades).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_wall))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    if path.exists():
        os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            try:
                os.replace(side, target.with_name(target.name + suffix))
            except OSError:
                with contextlib.suppress(OSError):
                    side.unlink()
    log.warning("spool %s quarantined as %s", path, target)
    return target


def seq_path(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def read_reservation(path: Path) -> int | None:
    """The seq reservation R of the sidecar, or None if missing or unreadable."""
    try:
        text = seq_path(path).read_text(encoding="ascii").strip()
        value = int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if value > 0 else None


def write_reservation(path: Path, value: int) -> bool:
    """Atomically and durably store R; False (logged) on failure, never raises."""
    target = seq_path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{value}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        log.warning("spool seq reservation %s not written: %s", target, exc)
        return False
    return True


def time_floor(now_wall: float) -> int:
    """Seq floor from the wall clock: microseconds since the epoch.

    A spool hands out seqs far slower than one per microsecond, so a floor taken later is
    above every seq handed out since an earlier floor, as long as the wall clock does not
    step back (that is why the sidecar reservation is preferred when it is readable).
    """
    return max(1, int(now_wall * 1_000_000))
