"""Storage faults made for real: garbage in the file, SQLITE_FULL from a page cap.

Telemetry degrades, the control path never sees an exception: the file is quarantined and a
new one started (corruption), or the batch is lost and counted (full), with an event.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgpack
import pytest

from agent.io.spool.store import Spool
from agent.model.spool import AppendStatus, Overflow, RecordKind, SpoolEventKind


def _open(path: Path, **kw: object) -> Spool:
    args: dict[str, object] = {
        "max_bytes": 1 << 30,
        "max_records": 10_000_000,
        "overflow": Overflow.DROP_OLDEST,
    }
    args.update(kw)
    return Spool.open(path, **args)  # type: ignore[arg-type]


def _quarantined(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.parent.iterdir()
        if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def _fill(spool: Spool, batches: int, size: int) -> int:
    last = 0
    for i in range(batches):
        result = spool.append([os.urandom(size) for _ in range(50)], float(i))
        assert result.last_seq is not None
        last = result.last_seq
    return last


@pytest.mark.timeout(20)
@pytest.mark.parametrize("damage", ["whole_file", "pages"])
def test_corrupt_file_at_open_is_quarantined_and_replaced(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "spool.db"
    with _open(path) as spool:
        last = _fill(spool, 20, 200)
    with path.open("r+b") as f:
        if damage == "whole_file":
            f.write(os.urandom(path.stat().st_size))
        else:  # keep the header page, smash the b-tree pages behind it
            f.seek(4096)
            f.write(b"\xa5" * (path.stat().st_size - 4096))
    with _open(path) as spool:
        assert not spool.degraded
        assert len(_quarantined(path)) == 1
        assert spool.stats().quarantines == 1
        kinds = [e.kind for e in spool.drain_events()]
        assert SpoolEventKind.QUARANTINED in kinds
        assert spool.next_seq > last  # from the sidecar reservation: no seq reused
        result = spool.append([b"after"], 99.0)
        assert result.status is AppendStatus.STORED
        stored = spool.pending(0, 10)
        events = [msgpack.unpackb(r.payload)["event"] for r in stored if r.kind is RecordKind.EVENT]
        assert "quarantined" in events and "seq_floor" in events
        assert stored[-1].payload == b"after"


@pytest.mark.timeout(30)
def test_corruption_found_while_running_quarantines_and_carries_the_seq(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = _open(path)
    last = _fill(spool, 400, 500)  # ~10 MB: more than SQLite's page cache
    spool.ack(last - 5000)  # checkpoints have moved most pages into the main file
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(b"\x5a" * (path.stat().st_size - 4096))
    seen: list[object] = []

    def read_in_worker() -> None:  # the sender's thread has its own connection
        seen.append(spool.pending(0, 100_000))

    t = threading.Thread(target=read_in_worker)
    t.start()
    t.join(10)
    assert seen == [[]]  # degraded, not raised
    assert spool.stats().quarantines == 1
    assert len(_quarantined(path)) == 1
    events = spool.drain_events()
    (q,) = [e for e in events if e.kind is SpoolEventKind.QUARANTINED]
    assert q.last == last  # the lost unacked range is named
    result = spool.append([b"next"], 1.0)
    assert result.status is AppendStatus.STORED
    assert result.first_seq is not None and result.first_seq > last
    assert spool.ack(result.last_seq or 0) >= 1
    spool.close()


@pytest.mark.timeout(30)
def test_sqlite_full_degrades_without_raising_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = _open(path, file_limit_bytes=64 * 4096)  # PRAGMA max_page_count = 64
    stored_last = 0
    failed = 0
    for i in range(200):
        result = spool.append([os.urandom(1000) for _ in range(20)], float(i))
        if result.status is AppendStatus.FAILED:
            failed += 1
            assert result.dropped == 20
        else:
            assert result.last_seq is not None
            stored_last = result.last_seq
    assert failed > 0
    stats = spool.stats()
    assert stats.disk_full >= failed and stats.not_recorded == 20 * failed
    events = spool.drain_events()
    full = [e for e in events if e.kind is SpoolEventKind.DISK_FULL]
    assert full and sum(e.count for e in full) == 20 * failed  # merged, not one per failure
    assert len(_quarantined(path)) == 0  # a full disk is not corruption: the file is kept
    # what was stored before the disk filled is intact and can be delivered
    data = [r for r in spool.pending(0, 100_000) if r.kind is RecordKind.DATA]
    assert data and data[-1].seq == stored_last
    # space frees (the twin acks); the next append stores the failure event for the twin
    spool.ack(stored_last)
    after = spool.append([b"ok"], 500.0)
    assert after.status is AppendStatus.STORED
    stored = spool.pending(0, 100)
    full_records = [msgpack.unpackb(r.payload) for r in stored if r.kind is RecordKind.EVENT]
    assert any(e["event"] == "disk_full" and e["count"] >= 20 for e in full_records)
    spool.close()


@pytest.mark.timeout(20)
def test_unopenable_location_degrades_and_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    spool = _open(blocker / "spool.db")
    assert spool.degraded
    result = spool.append([b"a", b"b"], 1.0)
    assert result.status is AppendStatus.FAILED and not result.durable
    assert spool.stats().not_recorded == 2
    assert spool.pending(0, 10) == []
    assert spool.ack(0) == 0
    spool.close()


@pytest.mark.timeout(30)
def test_corruption_found_by_ack_on_the_write_connection(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = _open(path)
    last = _fill(spool, 400, 500)
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(b"\x33" * (path.stat().st_size - 4096))
    deleted = spool.ack(last - 100)  # walks pages the page cache no longer holds
    assert deleted == 0
    assert spool.stats().quarantines == 1 and spool.stats().errors >= 1
    result = spool.append([b"still recording"], 2.0)
    assert result.status is AppendStatus.STORED
    assert result.first_seq is not None and result.first_seq > last
    kinds = [
        msgpack.unpackb(r.payload)["event"]
        for r in spool.pending(0, 10)
        if r.kind is RecordKind.EVENT
    ]
    assert "quarantined" in kinds
    spool.close()
