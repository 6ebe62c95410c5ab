"""SpoolWriter: batches telemetry records into durable spool appends on a background thread.

The control loop calls ``submit(record)``: a lock, a list append, a notify; no I/O, never
blocks on the disk. The writer thread commits a batch when ``max_batch`` records are queued
or ``flush_interval_s`` has passed since the oldest queued record, so one fsync covers many
records (see ``sim.bench.spool`` for the throughput this buys).

Bounded memory: at most ``queue_max`` records wait; ``submit`` refuses more (returns False,
counted in ``refused``) — never unbounded growth. Refusals are reported as one
NOT_RECORDED event per burst through ``drain_events`` alongside the spool's own events.
A record is durable once ``committed_seq`` has reached its seq; ``flush()`` waits for that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.io.spool.store import Spool
from agent.model.spool import AppendResult, AppendStatus, SpoolEvent, SpoolEventKind

log = logging.getLogger(__name__)


class SpoolWriter:
    """Background batching writer in front of a ``Spool``. Start with ``start()``."""

    def __init__(
        self,
        spool: Spool,
        *,
        flush_interval_s: float = 0.05,
        max_batch: int = 500,
        queue_max: int = 50_000,
        on_commit: Callable[[AppendResult], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_interval_s <= 0 or max_batch < 1 or queue_max < max_batch:
            raise ValueError("flush_interval_s > 0, max_batch >= 1, queue_max >= max_batch")
        self.spool = spool
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.queue_max = queue_max
        self._on_commit = on_commit
        self._wall = wall_clock
        self._cond = threading.Condition()
        self._queue: list[bytes] = []
        self._oldest = 0.0  # monotonic time the oldest queued record arrived
        self._submitted = 0  # records accepted by submit
        self._done = 0  # records handled by the thread (committed, refused by spool or failed)
        self._refused = 0
        self._refused_burst = 0
        self._flushing = False
        self._committed_seq: int | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)

    def start(self) -> SpoolWriter:
        self._thread.start()
        return self

    # ------------------------------------------------------------------ producer side
    def submit(self, record: bytes) -> bool:
        """Queue one record. False if the queue is full or the writer is stopped (counted)."""
        with self._cond:
            if self._stop or len(self._queue) >= self.queue_max:
                self._refused += 1
                self._refused_burst += 1
                return False
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue.append(record)
            self._submitted += 1
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._cond.notify()  # the first record starts the flush interval's timer
            return True

    @property
    def committed_seq(self) -> int | None:
        """Last seq of the last durable batch (None before the first)."""
        return self._committed_seq

    @property
    def refused(self) -> int:
        return self._refused

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far has been handled; False on timeout."""
        with self._cond:
            target = self._submitted
            self._flushing = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def drain_events(self) -> list[SpoolEvent]:
        """The spool's events, including this writer's queue overflows, oldest first."""
        return self.spool.drain_events()

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, stop the thread. Does not close the spool.

        Waits at most ``timeout`` for the thread (one append); submits after close are refused.
        """
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.ident is None:
            self._run()  # never started: commit the queue here, at shutdown
        elif self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread
    def _take(self) -> list[bytes] | None:
        with self._cond:
            while True:
                if self._queue and (
                    self._stop
                    or self._flushing
                    or len(self._queue) >= self.max_batch
                    or time.monotonic() - self._oldest >= self.flush_interval_s
                ):
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    return batch  # leftovers keep the older ``_oldest``: flushed early, safe
                self._flushing = False
                if self._stop:
                    return None
                wait = None
                if self._queue:
                    wait = max(0.0, self.flush_interval_s - (time.monotonic() - self._oldest))
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            now_wall = self._wall()
            try:
                result = self.spool.append(batch, now_wall)
            except Exception:  # a bug (e.g. the spool closed under us): keep the thread alive
                log.exception("spool writer: append of %d records failed", len(batch))
                result = AppendResult(AppendStatus.FAILED, None, None, dropped=len(batch))
            with self._cond:
                if result.durable and result.last_seq is not None:
                    self._committed_seq = result.last_seq
                if self._refused_burst:
                    n, self._refused_burst = self._refused_burst, 0
                    text = f"{n} records not recorded: spool writer queue full"
                    event = SpoolEvent(SpoolEventKind.NOT_RECORDED, now_wall, text, count=n)
                    self.spool.note(event)  # logged, reported, stored with the next batch
                self._done += len(batch)
                self._cond.notify_all()
            if self._on_commit is not None:
                try:
                    self._on_commit(result)
                except Exception:
                    log.exception("spool writer on_commit callback failed")
