"""Plain data of the telemetry spool: policies, spooled records, results and events.

Nothing here does I/O. The agent configuration (``agent.config.agentconfig``: the overflow
policy), the SQLite store and the batching writer (``agent.io.spool``), the pure forwarder
(``agent.core.forwarder``) and the status snapshot share these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Overflow(enum.Enum):
    """What the spool does when a batch would push it past its size bound.

    ``DROP_OLDEST``: delete the oldest unacknowledged records and store one ``GAP`` event
    record naming the exact dropped seq range ("records 1201..1500 dropped: spool full").
    ``STOP``: store nothing new (those records get no seq), store one ``STOPPED`` event record
    saying from which seq recording stopped, and one ``RESUMED`` event record (with the count
    of records not recorded) once a batch fits again.
    """

    DROP_OLDEST = "drop_oldest"
    STOP = "stop"


class RecordKind(enum.IntEnum):
    """What a spooled row holds. Stored as an integer in the ``kind`` column."""

    DATA = 0  # opaque msgpack bytes made by the caller
    EVENT = 1  # a msgpack map made by the spool itself (see ``event_payload``)


@dataclass(frozen=True)
class SpooledRecord:
    """One record read back from the spool, in seq order."""

    seq: int
    t_wall: float  # wall-clock time (epoch seconds) the record's batch was appended
    payload: bytes
    kind: RecordKind = RecordKind.DATA


@dataclass(frozen=True)
class Backlog:
    """What is waiting for an acknowledgement. ``first_seq``/``last_seq`` are None when empty.

    ``bytes`` is the spool's accounting size: payload length plus ``RECORD_OVERHEAD`` per row.
    """

    count: int
    first_seq: int | None
    last_seq: int | None
    bytes: int


class AppendStatus(enum.Enum):
    STORED = "stored"  # every record stored, durably
    STORED_WITH_DROP = "stored_with_drop"  # stored; older records dropped (drop_oldest)
    REJECTED_FULL = "rejected_full"  # policy stop: the spool is full, nothing stored
    FAILED = "failed"  # disk full / corrupt / I/O error: nothing stored, telemetry degraded


@dataclass(frozen=True)
class AppendResult:
    """Outcome of one ``append``. ``first_seq..last_seq`` are the seqs given to the batch.

    Both are None when nothing was stored. ``durable`` is True only when the batch's
    transaction committed with ``synchronous=FULL`` (it survives kill -9 and power loss).
    """

    status: AppendStatus
    first_seq: int | None
    last_seq: int | None
    dropped: int = 0  # records deleted (drop_oldest) or not recorded (stop / failure)

    @property
    def durable(self) -> bool:
        return self.status in (AppendStatus.STORED, AppendStatus.STORED_WITH_DROP)


class SpoolEventKind(enum.Enum):
    GAP = "gap"  # records first..last dropped: spool full
    STOPPED = "stopped"  # recording stopped from seq first (policy stop)
    RESUMED = "resumed"  # recording resumed at seq first; ``count`` records not recorded
    NOT_RECORDED = "not_recorded"  # ``count`` records lost to a disk/database failure
    QUARANTINED = "quarantined"  # a corrupt file was renamed aside; new spool started
    DISK_FULL = "disk_full"  # SQLITE_FULL / ENOSPC: telemetry degraded
    SEQ_FLOOR = "seq_floor"  # new file: seqs restart at ``first`` (above all seqs handed out)


@dataclass(frozen=True)
class SpoolEvent:
    """Something the caller must hear about (and the twin, when stored as an EVENT record)."""

    kind: SpoolEventKind
    t_wall: float
    text: str
    first: int | None = None
    last: int | None = None
    count: int = 0
    ranges: tuple[tuple[int, int], ...] = ()  # GAP only: exact dropped seq ranges, sorted


@dataclass(frozen=True)
class SpoolStats:
    """Counters since open. Errors are counted here; methods never raise them."""

    appended: int
    acked: int
    dropped: int  # deleted unacked by drop_oldest
    not_recorded: int  # refused (stop) or lost to failures before getting a seq
    gaps: int
    quarantines: int
    disk_full: int
    errors: int
    bad_acks: int  # acks beyond the last seq handed out, refused
    backlog: Backlog
    stopped: bool
    next_seq: int
    path: str
