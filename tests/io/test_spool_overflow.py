"""Size bound and overflow policies over a long simulated outage, on a real SQLite file.

Invariant for the twin: every seq the spool handed out is either delivered, or inside the
range of a delivered GAP event; under ``stop`` every record refused is counted in a
delivered RESUMED event (or still reported as stopped). The bound holds after every append.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.io.spool.batch import RECORD_OVERHEAD
from agent.io.spool.store import Spool
from agent.model.spool import AppendStatus, Overflow, RecordKind, SpoolEventKind


class Twin:
    """Reads everything after what it already has and acks it, like the real twin."""

    def __init__(self) -> None:
        self.delivered: set[int] = set()
        self.events: list[dict[str, Any]] = []
        self.last = 0

    def sync(self, spool: Spool) -> None:
        while True:
            batch = spool.pending(self.last, 500)
            if not batch:
                return
            for rec in batch:
                self.delivered.add(rec.seq)
                if rec.kind is RecordKind.EVENT:
                    self.events.append(msgpack.unpackb(rec.payload))
            self.last = batch[-1].seq
            spool.ack(self.last)


def _outage(spool: Spool, twin: Twin, rng: random.Random, steps: int) -> tuple[int, int, int]:
    """Append poll-sized batches, twin on- and offline; (first seq, last seq, refused)."""
    online = True
    first_seq = spool.next_seq
    refused = 0
    for step in range(steps):
        if step % 400 == 0:
            online = not online if step else False  # start with an outage
        payloads = [rng.randbytes(rng.randint(10, 200)) for _ in range(rng.randint(1, 30))]
        result = spool.append(payloads, 1000.0 + step)
        assert result.status is not AppendStatus.FAILED
        if result.status is AppendStatus.REJECTED_FULL:
            refused += len(payloads)
        backlog = spool.backlog()
        assert backlog.count <= spool.max_records
        assert backlog.bytes <= spool.max_bytes
        if online:
            twin.sync(spool)
    twin.sync(spool)
    return first_seq, spool.next_seq - 1, refused


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bound", ["records", "bytes"])
def test_drop_oldest_bound_holds_and_every_seq_is_delivered_or_in_a_gap(
    tmp_path: Path, bound: str
) -> None:
    kw = (
        {"max_records": 300, "max_bytes": 1 << 30}
        if bound == "records"
        else {"max_records": 1_000_000, "max_bytes": 40_000}
    )
    path = tmp_path / "s.db"
    spool = Spool.open(path, overflow=Overflow.DROP_OLDEST, **kw)  # type: ignore[arg-type]
    twin = Twin()
    first, last, refused = _outage(spool, twin, random.Random(1), 2000)
    assert refused == 0
    gaps = [tuple(r) for e in twin.events if e["event"] == "gap" for r in e["ranges"]]
    assert gaps, "the outage should have overflowed the spool"
    for e in twin.events:
        if e["event"] == "gap":
            text = ", ".join(f"{a}..{b}" for a, b in e["ranges"])
            assert e["text"] == f"records {text} dropped: spool full"
    in_gap = {s for a, b in gaps for s in range(a, b + 1)}
    missing = [s for s in range(first, last + 1) if s not in twin.delivered and s not in in_gap]
    assert missing == []
    # exact: a gap never names a record the twin received
    assert not in_gap & twin.delivered
    stats = spool.stats()
    assert stats.dropped > 0 and stats.gaps >= len(gaps)
    # the file does not grow without bound either
    size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("s.db"))
    assert size < 8 << 20
    spool.close()


@pytest.mark.timeout(60)
def test_stop_refuses_new_records_counts_them_and_resumes(tmp_path: Path) -> None:
    spool = Spool.open(
        tmp_path / "s.db", max_records=300, max_bytes=1 << 30, overflow=Overflow.STOP
    )
    twin = Twin()
    first, last, refused = _outage(spool, twin, random.Random(2), 2000)
    assert refused > 0
    # no seq was handed out to a refused record: every seq is delivered
    assert [s for s in range(first, last + 1) if s not in twin.delivered] == []
    stopped = [e for e in twin.events if e["event"] == "stopped"]
    resumed = [e for e in twin.events if e["event"] == "resumed"]
    assert stopped and len(resumed) >= len(stopped) - 1
    # every refused record is accounted for in a resume event or still counted as stopped
    still = spool.stats().stopped
    assert sum(e["count"] for e in resumed) <= refused
    if not still:
        assert sum(e["count"] for e in resumed) == refused
    assert spool.stats().not_recorded == refused
    spool.close()


@pytest.mark.timeout(10)
def test_drop_oldest_exact_gap_range(tmp_path: Path) -> None:
    spool = Spool.open(
        tmp_path / "s.db", max_records=20, max_bytes=1 << 30, overflow=Overflow.DROP_OLDEST
    )
    floor = spool.append([], 1.0)  # stores the SEQ_FLOOR event record
    assert floor.status is AppendStatus.STORED
    spool.ack(spool.next_seq - 1)
    spool.drain_events()
    s = spool.next_seq
    assert spool.append([b"r"] * 12, 2.0).status is AppendStatus.STORED  # data limit: 20 - 8
    result = spool.append([b"q"] * 3, 3.0)
    assert result.status is AppendStatus.STORED_WITH_DROP and result.dropped == 3
    (gap,) = spool.drain_events()
    assert gap.kind is SpoolEventKind.GAP
    assert (gap.first, gap.last) == (s, s + 2)
    assert gap.text == f"records {s}..{s + 2} dropped: spool full"
    stored = spool.pending(0, 100)
    assert [r.seq for r in stored] == list(range(s + 3, s + 16))
    assert stored[-1].kind is RecordKind.EVENT
    assert msgpack.unpackb(stored[-1].payload)["text"] == gap.text
    # a later drop that takes the first GAP event with it widens the range back to s
    spool.append([b"p"] * 12, 4.0)
    gaps = [e for e in spool.drain_events() if e.kind is SpoolEventKind.GAP]
    assert (gaps[-1].first, gaps[-1].last) == (s, s + 15)
    assert spool.backlog().bytes == sum(
        len(r.payload) + RECORD_OVERHEAD for r in spool.pending(0, 100)
    )
    spool.close()
