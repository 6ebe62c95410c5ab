"""Store-and-forward telemetry: a durable SQLite spool, a batching writer, a pure forwarder.

    records   plain data: Overflow, SpooledRecord, Backlog, AppendResult, SpoolEvent, ...
    files     SQLite connection/pragmas, error classes, quarantine, seq reservation sidecar
    store     Spool: append / pending / ack / backlog, bounded, never raises on storage faults
    writer    SpoolWriter: background thread batching appends off the control loop
    forwarder Forwarder: sans-IO decision of what to send next (live first, history rate-bound)
"""

from __future__ import annotations

from agent.spool.records import (
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
from agent.spool.store import Spool

__all__ = [
    "AppendResult",
    "AppendStatus",
    "Backlog",
    "Overflow",
    "RecordKind",
    "Spool",
    "SpoolEvent",
    "SpoolEventKind",
    "SpoolStats",
    "SpooledRecord",
]
