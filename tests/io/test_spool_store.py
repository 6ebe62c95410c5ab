"""The spool on a real SQLite file: order, acks, seq continuity, bounds of the API."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgpack
import pytest

from agent.io.spool.files import read_reservation, seq_path
from agent.io.spool.store import Spool
from agent.model.spool import AppendStatus, Overflow, RecordKind, SpoolEventKind


def _open(path: Path, **kw: object) -> Spool:
    args: dict[str, object] = {
        "max_bytes": 1 << 20,
        "max_records": 10_000,
        "overflow": Overflow.DROP_OLDEST,
    }
    args.update(kw)
    return Spool.open(path, **args)  # type: ignore[arg-type]


def _data(spool: Spool, after: int = 0) -> list[tuple[int, bytes]]:
    return [(r.seq, r.payload) for r in spool.pending(after, 100_000) if r.kind is RecordKind.DATA]


@pytest.mark.timeout(10)
def test_append_pending_ack_in_order(tmp_path: Path) -> None:
    with _open(tmp_path / "s.db") as spool:
        first = spool.append([b"a", b"b", b"c"], 1000.0)
        second = spool.append([b"d", b"e"], 1001.0)
        assert first.status is AppendStatus.STORED and first.durable
        assert first.first_seq is not None and second.first_seq is not None
        assert first.last_seq == first.first_seq + 2
        assert second.first_seq == first.last_seq + 1  # consecutive across batches
        assert [p for _, p in _data(spool)] == [b"a", b"b", b"c", b"d", b"e"]
        records = spool.pending(first.first_seq, 2)
        assert [r.payload for r in records] == [b"b", b"c"]
        assert records[0].t_wall == 1000.0
        assert [
            r.payload
            for r in spool.pending(0, 10, upto_seq=first.last_seq)
            if r.kind is RecordKind.DATA
        ] == [b"a", b"b", b"c"]
        assert spool.ack(first.first_seq + 1) >= 2
        assert [p for _, p in _data(spool)] == [b"c", b"d", b"e"]
        backlog = spool.backlog()
        assert backlog.last_seq == second.last_seq
        assert backlog.first_seq is not None and backlog.first_seq <= first.first_seq + 2
        assert spool.ack(second.last_seq or 0) >= 3
        assert spool.backlog().count == 0 and spool.backlog().first_seq is None
        assert spool.backlog().bytes == 0


@pytest.mark.timeout(10)
def test_ack_beyond_last_seq_is_refused_and_counted(tmp_path: Path) -> None:
    with _open(tmp_path / "s.db") as spool:
        result = spool.append([b"x"] * 4, 1.0)
        assert result.last_seq is not None
        assert spool.ack(result.last_seq + 1) == 0
        assert spool.stats().bad_acks == 1
        assert len(_data(spool)) == 4  # nothing deleted by the bad ack


@pytest.mark.timeout(10)
def test_seq_continues_across_reopen_even_after_everything_acked(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with _open(path) as spool:
        last = spool.append([b"x"] * 10, 1.0).last_seq
        assert last is not None
        spool.ack(last)
        assert spool.backlog().count == 0
    with _open(path) as spool:
        assert spool.next_seq == last + 1
        again = spool.append([b"y"], 2.0)
        assert again.first_seq == last + 1
        # the reservation sidecar covers every seq handed out
        reservation = read_reservation(path)
        assert reservation is not None and reservation > spool.next_seq


@pytest.mark.timeout(10)
def test_lost_database_restarts_above_reservation(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with _open(path) as spool:
        last = spool.append([b"x"] * 5, 1.0).last_seq
    assert last is not None
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with _open(path) as spool:
        assert spool.next_seq > last
        kinds = [e.kind for e in spool.drain_events()]
        assert SpoolEventKind.SEQ_FLOOR in kinds
        result = spool.append([b"z"], 2.0)
        assert result.first_seq is not None and result.first_seq > last
        # the floor event is stored ahead of the data, for the twin
        head = spool.pending(0, 1)[0]
        assert head.kind is RecordKind.EVENT
        assert msgpack.unpackb(head.payload)["event"] == "seq_floor"


@pytest.mark.timeout(10)
def test_database_and_sidecar_lost_restarts_from_time_floor(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with _open(path, now_wall=1_700_000_000.0) as spool:
        assert spool.next_seq == 1_700_000_000_000_000
        spool.append([b"x"] * 3, 1.0)
    for p in (path, seq_path(path)):
        p.unlink()
    with _open(path, now_wall=1_700_000_001.0) as spool:
        assert spool.next_seq == 1_700_000_001_000_000


@pytest.mark.timeout(10)
def test_stop_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with _open(path, max_records=20, overflow=Overflow.STOP) as spool:
        assert spool.append([b"x"] * 10, 1.0).status is AppendStatus.STORED  # + floor event
        assert spool.append([b"x"] * 5, 2.0).status is AppendStatus.REJECTED_FULL
        assert spool.stats().stopped
    with _open(path, max_records=20, overflow=Overflow.STOP) as spool:
        assert spool.stats().stopped
        last = spool.backlog().last_seq
        assert last is not None
        spool.ack(last)
        assert spool.append([b"y"], 3.0).status is AppendStatus.STORED
        resumed = [e for e in spool.drain_events() if e.kind is SpoolEventKind.RESUMED]
        assert len(resumed) == 1 and resumed[0].count == 5


@pytest.mark.timeout(20)
def test_pending_from_another_thread_while_appending(tmp_path: Path) -> None:
    with _open(tmp_path / "s.db") as spool:
        errors: list[BaseException] = []
        seen: list[int] = []
        stop = threading.Event()

        def reader() -> None:
            after = 0
            try:
                while not stop.is_set() or spool.pending(after, 1):
                    for rec in spool.pending(after, 50):
                        assert rec.seq > after
                        after = rec.seq
                        if rec.kind is RecordKind.DATA:
                            seen.append(rec.seq)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=reader)
        t.start()
        expected: list[int] = []
        for i in range(200):
            r = spool.append([b"%d" % i] * 5, float(i))
            assert r.first_seq is not None and r.last_seq is not None
            expected.extend(range(r.first_seq, r.last_seq + 1))
        stop.set()
        t.join(10)
        assert not errors
        assert seen == expected


@pytest.mark.timeout(10)
def test_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with _open(path) as spool:
        spool.append([b"x"], 1.0)
        conn = sqlite3.connect(str(path))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


@pytest.mark.timeout(10)
def test_use_after_close_is_a_bug(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.db")
    spool.close()
    spool.close()  # idempotent
    with pytest.raises(RuntimeError):
        spool.append([b"x"], 1.0)


def test_bounds_too_small_for_the_event_reserve_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _open(tmp_path / "s.db", max_records=10)
