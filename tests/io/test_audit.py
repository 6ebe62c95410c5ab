"""The audit log: a long scripted run verifies; any edit, delete, reorder or truncation fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.io.audit import AuditKind, AuditLog, format_record

pytestmark = pytest.mark.timeout(30)

N = 300


def scripted(path: Path) -> None:
    kinds = list(AuditKind)
    with AuditLog(path) as log:
        for i in range(N):
            kind = kinds[i % len(kinds)]
            log.append(kind, i=i, cause=f"event {i}", keys=["ap1", "ap2"])


def tamper(path: Path, *sql: str) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_no_update")  # an attacker with file access can do this
    db.execute("DROP TRIGGER audit_no_delete")
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


def problems(path: Path) -> tuple[str, ...]:
    with AuditLog(path) as log:
        result = log.verify()
    assert not result.ok
    return result.problems


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.sqlite"
    scripted(path)
    return path


def test_long_run_verifies_and_survives_reopen(db: Path) -> None:
    with AuditLog(db) as log:
        result = log.verify()
        assert result.ok and result.records == N, result.problems
        log.append(AuditKind.ACK, source="button")
        assert log.verify().ok and log.verify().records == N + 1


def test_triggers_refuse_plain_update_and_delete(db: Path) -> None:
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET body = '{}' WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 3")
    conn.close()


def test_edit_detected(db: Path) -> None:
    tamper(db, "UPDATE audit SET body = replace(body, 'event 17', 'event 71') WHERE seq = 18")
    assert any("record 18" in p and "edited" in p for p in problems(db))


def test_edit_with_recomputed_own_hash_still_breaks_the_chain(db: Path) -> None:
    from agent.io.audit import chain_hash

    conn = sqlite3.connect(db)
    row = conn.execute("SELECT seq, ts_ms, kind, body, prev FROM audit WHERE seq = 40").fetchone()
    conn.close()
    body = row[3].replace("event 39", "event 93")
    digest = chain_hash(row[4], row[0], row[1], row[2], body)
    tamper(db, f"UPDATE audit SET body = '{body}', hash = '{digest}' WHERE seq = 40")
    assert any("record 41" in p for p in problems(db))


def test_delete_detected(db: Path) -> None:
    tamper(db, "DELETE FROM audit WHERE seq = 100")
    found = problems(db)
    assert any("missing" in p for p in found) and any("record 101" in p for p in found)


def test_reorder_detected(db: Path) -> None:
    tamper(db,
           "UPDATE audit SET seq = -1 WHERE seq = 50",
           "UPDATE audit SET seq = 50 WHERE seq = 51",
           "UPDATE audit SET seq = 51 WHERE seq = -1")
    assert any("record 50" in p or "record 51" in p for p in problems(db))


def test_swapped_contents_detected(db: Path) -> None:
    tamper(db,
           "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (60, 61)",
           "UPDATE audit SET ts_ms = (SELECT ts_ms FROM t WHERE seq = 61), "
           "kind = (SELECT kind FROM t WHERE seq = 61), body = (SELECT body FROM t WHERE seq = 61),"
           " prev = (SELECT prev FROM t WHERE seq = 61), hash = (SELECT hash FROM t WHERE seq = 61)"
           " WHERE seq = 60")
    assert problems(db)


def test_truncated_tail_detected_by_the_head_anchor(db: Path) -> None:
    tamper(db, f"DELETE FROM audit WHERE seq > {N - 5}")
    assert any("truncated" in p for p in problems(db))


def test_missing_head_anchor_reported(db: Path) -> None:
    db.with_name(db.name + ".head").unlink()
    assert any("head anchor missing" in p for p in problems(db))


def test_show_is_readable(db: Path) -> None:
    with AuditLog(db) as log:
        lines = [format_record(r) for r in log.records()]
    assert len(lines) == N
    assert "bundle_accepted" in lines[0] and "cause=event 0" in lines[0]
