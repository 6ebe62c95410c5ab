"""kill -9 a process in the middle of appending: every batch it reported committed survives.

The child (tests/io/spool_child.py) reports a batch only after ``append`` returned, so a
reported batch was durable at that moment. We kill it at random moments many times, reopen
the spool like the agent would after a restart, and check every reported record.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.io.spool.store import Spool
from agent.model.spool import Overflow

CHILD = Path(__file__).with_name("spool_child.py")
KILLS = 50


def _rows(path: Path) -> dict[int, bytes]:
    conn = sqlite3.connect(str(path))
    try:
        return dict(conn.execute("SELECT seq, payload FROM records WHERE kind = 0").fetchall())
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_kill_9_never_loses_a_reported_batch_nor_reuses_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    rng = random.Random(20261125)
    max_seq_seen = 0  # highest seq any earlier run reported as committed
    max_ack_intent = 0  # highest seq any run was about to ack (deletes may have happened)
    committed: dict[int, bytes] = {}  # every seq ever reported committed -> its payload
    batches_reported = 0
    for run in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), str(run), str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("R "), ready
        next_seq = int(ready.split()[1])
        assert next_seq > max_seq_seen, "a restarted spool would reuse a seq"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        first_of_run: int | None = None
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0] == "C":
                first, last, batch = int(parts[1]), int(parts[2]), int(parts[4])
                assert int(parts[3]) == run
                assert first > max_seq_seen, "seq reused"
                first_of_run = first if first_of_run is None else first_of_run
                for i, seq in enumerate(range(first, last + 1)):
                    committed[seq] = f"{run}:{batch}:{i}".encode()
                max_seq_seen = last
                batches_reported += 1
            elif len(parts) == 2 and parts[0] == "a":
                max_ack_intent = max(max_ack_intent, int(parts[1]))
            elif parts and parts[0] == "F":
                pytest.fail(f"child append failed: {line}")
        if first_of_run is not None:
            assert first_of_run >= next_seq

        # Reopen as the agent does after a restart; then look at the file itself.
        spool = Spool.open(path, max_bytes=64 << 20, max_records=1_000_000, overflow=Overflow.STOP)
        try:
            assert spool.stats().quarantines == 0
            assert spool.next_seq > max_seq_seen
        finally:
            spool.close()
        rows = _rows(path)
        for seq, payload in committed.items():
            if seq <= max_ack_intent:
                continue  # may have been acknowledged and deleted
            assert rows.get(seq) == payload, f"committed seq {seq} lost or changed"
        # Nothing below an ack survives only partially out of order: stored seqs ascend
        # with their payload order inside each batch.
        stored = sorted(s for s in rows if s in committed)
        assert [committed[s] for s in stored] == [rows[s] for s in stored]
    assert batches_reported > KILLS, "the children should have committed many batches"
