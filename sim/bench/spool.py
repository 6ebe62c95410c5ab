"""``python -m sim.bench spool``: durable append and drain throughput of the telemetry spool.

Three measurements on a real SQLite file (WAL, synchronous=FULL; checked, not assumed):

* append: ``Spool.append`` of ``--batch`` records per call (one transaction, one fsync each)
  -> ``append_records_per_s`` and per-batch latency p50/p99/max.
* drain: what the sender does after an outage: ``pending`` ``--drain-chunk`` records, then
  ``ack`` them -> ``drain_records_per_s`` and per-chunk latency.
* writer: the control loop's path: ``SpoolWriter.submit`` one record at a time (no I/O on
  the caller), committed by the writer thread every 50 ms or 500 records
  -> ``writer_records_per_s`` and the caller's ``submit`` latency.

Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.io.spool.store import Spool
from agent.io.spool.writer import SpoolWriter
from agent.model.spool import Overflow
from sim.bench.stats import summary_ms

TARGET_RECORDS_PER_S = 20_000


def _spool(directory: Path, name: str, records: int) -> Spool:
    return Spool.open(
        directory / name,
        max_bytes=1 << 34,
        max_records=max(1_000_000, 2 * records),
        overflow=Overflow.DROP_OLDEST,
    )


def _payloads(n: int, size: int) -> list[bytes]:
    # msgpack-sized records with varied content (random bytes do not compress or dedupe)
    return [os.urandom(size) for _ in range(n)]


def bench_append_drain(
    directory: Path, records: int, batch: int, size: int, chunk: int
) -> dict[str, Any]:
    spool = _spool(directory, "append.db", records)
    try:
        durability = spool.durability()
        batches = [_payloads(min(batch, records - i), size) for i in range(0, records, batch)]
        latencies: list[float] = []
        durable = True
        start = time.perf_counter()
        for payloads in batches:
            t0 = time.perf_counter()
            result = spool.append(payloads, time.time())
            latencies.append(time.perf_counter() - t0)
            durable = durable and result.durable
        append_s = time.perf_counter() - start

        drained = 0
        chunk_lat: list[float] = []
        after = 0
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            pending = spool.pending(after, chunk)
            if not pending:
                break
            after = pending[-1].seq
            spool.ack(after)
            chunk_lat.append(time.perf_counter() - t0)
            drained += len(pending)
        drain_s = time.perf_counter() - start
        return {
            "append_records_per_s": round(records / append_s),
            "append_batch_latency": summary_ms(latencies),
            "drain_records_per_s": round(drained / drain_s) if drain_s > 0 else 0,
            "drain_chunk_latency": summary_ms(chunk_lat),
            "drained": drained,
            "durable": durable and durability == {"journal_mode": "wal", "synchronous": "full"},
            **durability,
        }
    finally:
        spool.close()


def bench_writer(directory: Path, records: int, size: int) -> dict[str, Any]:
    spool = _spool(directory, "writer.db", records)
    writer = SpoolWriter(spool, flush_interval_s=0.05, max_batch=500, queue_max=records)
    payloads = _payloads(records, size)
    submit_lat: list[float] = []
    try:
        writer.start()
        start = time.perf_counter()
        for i, payload in enumerate(payloads):
            if i % 64 == 0:
                t0 = time.perf_counter()
                writer.submit(payload)
                submit_lat.append(time.perf_counter() - t0)
            else:
                writer.submit(payload)
        flushed = writer.flush(timeout=120.0)
        elapsed = time.perf_counter() - start
        lat = summary_ms(submit_lat)
        return {
            "writer_records_per_s": round(records / elapsed),
            "writer_flushed": flushed,
            "writer_refused": writer.refused,
            "submit_p99_us": round(lat["p99_ms"] * 1000.0, 1),
            "submit_max_us": round(lat["max_ms"] * 1000.0, 1),
        }
    finally:
        writer.close()
        spool.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench spool", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50, help="records per append (one poll)")
    parser.add_argument("--payload", type=int, default=120, help="bytes per record")
    parser.add_argument("--drain-chunk", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="directory for the spool files")
    parser.add_argument("--no-writer", action="store_true", help="skip the SpoolWriter run")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch < 1 or args.payload < 1 or args.drain_chunk < 1:
        parser.error("--records, --batch, --payload and --drain-chunk must be >= 1")

    own_dir = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="twinguard-spool-bench-")) if own_dir else args.dir
    directory.mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, Any] = {
            "bench": "spool",
            "records": args.records,
            "batch": args.batch,
            "payload_bytes": args.payload,
            "dir": str(directory),
        }
        result.update(
            bench_append_drain(directory, args.records, args.batch, args.payload, args.drain_chunk)
        )
        if not args.no_writer:
            result.update(bench_writer(directory, args.records, args.payload))
        result["target_records_per_s"] = TARGET_RECORDS_PER_S
        result["meets_target"] = bool(
            result["durable"] and result["append_records_per_s"] >= TARGET_RECORDS_PER_S
        )
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for name in ("append.db", "writer.db"):
                for suffix in ("", "-wal", "-shm", ".seq"):
                    (directory / (name + suffix)).unlink(missing_ok=True)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0 if result["durable"] else 1
