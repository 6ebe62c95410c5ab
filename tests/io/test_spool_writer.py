"""SpoolWriter: the control loop only queues; a background thread commits batches durably."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import msgpack
import pytest

from agent.io.spool.store import Spool
from agent.io.spool.writer import SpoolWriter
from agent.model.spool import AppendResult, Overflow, RecordKind, SpoolEventKind
from sim.bench import spool as bench


def _open(path: Path) -> Spool:
    return Spool.open(path, max_bytes=1 << 30, max_records=1_000_000, overflow=Overflow.DROP_OLDEST)


@pytest.mark.timeout(20)
def test_submitted_records_are_committed_in_order(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.db")
    results: list[AppendResult] = []
    writer = SpoolWriter(
        spool, flush_interval_s=0.01, max_batch=37, on_commit=results.append
    ).start()

    def loop() -> None:  # stands in for the control loop: many small submits
        for i in range(2000):
            assert writer.submit(b"%d" % i)

    t = threading.Thread(target=loop)
    t.start()
    t.join(10)
    assert writer.flush(timeout=10)
    data = [r for r in spool.pending(0, 10_000) if r.kind is RecordKind.DATA]
    assert [r.payload for r in data] == [b"%d" % i for i in range(2000)]
    assert writer.committed_seq == data[-1].seq
    assert len(results) >= 2000 // 37  # batched, not one commit per record
    assert all(r.durable for r in results)
    assert max(len(range(r.first_seq or 0, (r.last_seq or 0) + 1)) for r in results) <= 37
    writer.close()
    spool.close()


@pytest.mark.timeout(20)
def test_full_queue_refuses_counts_and_records_the_loss(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.db")
    writer = SpoolWriter(spool, flush_interval_s=0.01, max_batch=10, queue_max=10)
    # the writer thread is not running yet: the queue fills
    accepted = [writer.submit(b"r%d" % i) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert writer.refused == 5
    writer.start()
    assert writer.flush(timeout=10)
    writer.submit(b"later")
    assert writer.flush(timeout=10)
    events = writer.drain_events()
    lost = [e for e in events if e.kind is SpoolEventKind.NOT_RECORDED]
    assert lost and lost[0].count == 5
    stored = [
        msgpack.unpackb(r.payload) for r in spool.pending(0, 100) if r.kind is RecordKind.EVENT
    ]
    assert any(e["event"] == "not_recorded" and e["count"] == 5 for e in stored)
    writer.close()
    spool.close()


@pytest.mark.timeout(20)
def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.db")
    writer = SpoolWriter(spool, flush_interval_s=60.0, max_batch=1000).start()
    for i in range(5):
        writer.submit(b"%d" % i)
    writer.close()
    assert not writer.submit(b"after close")
    data = [r.payload for r in spool.pending(0, 100) if r.kind is RecordKind.DATA]
    assert data == [b"0", b"1", b"2", b"3", b"4"]
    spool.close()


@pytest.mark.timeout(60)
def test_benchmark_reports_durable_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--json", "--records", "3000", "--batch", "25", "--dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["durable"] is True
    assert out["journal_mode"] == "wal" and out["synchronous"] == "full"
    assert out["drained"] >= 3000
    for key in ("append_records_per_s", "drain_records_per_s", "writer_records_per_s"):
        assert out[key] > 0
    for key in ("p50_ms", "p99_ms"):
        assert out["append_batch_latency"][key] >= 0
    assert not list(tmp_path.iterdir())  # its files are cleaned up


@pytest.mark.timeout(20)
def test_close_of_a_never_started_writer_still_commits(tmp_path: Path) -> None:
    spool = _open(tmp_path / "s.db")
    writer = SpoolWriter(spool)
    writer.submit(b"only")
    writer.close()
    assert [r.payload for r in spool.pending(0, 10) if r.kind is RecordKind.DATA] == [b"only"]
    assert writer.committed_seq == spool.backlog().last_seq
    spool.close()
