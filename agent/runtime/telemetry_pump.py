"""The telemetry pump: spool -> twin link, off the control loop's critical path (adapter).

    control loop ── submit(bytes) ──▶ SpoolWriter (thread: batches, one fsync per batch)
                                          │ on_commit (thread) ─call_soon_threadsafe─┐
    twin link ── on_connection / on_ack ──────────────────────────────────────────┐  │
                                                                                  ▼  ▼
                       run(): Forwarder.next_send ─▶ Spool.pending (thread) ─▶ link.send

* ``submit`` never does I/O (a lock and a list append); the loop never waits for the disk.
* On each connection the pump first sends ``resume {after}`` (everything up to ``after`` is
  acknowledged or gone), then live records as soon as they are committed and the backlog
  (marked ``historical``) at most ``history_rate`` records/s with at most ``window``
  unacknowledged, in seq order (``agent.core.forwarder``). Each ``telemetry`` message carries
  ``prev``, the seq of the record before it in the spool, so the twin can ack a contiguous
  prefix across seqs the spool dropped. Delivery is at-least-once: after a reconnect everything
  after the last ack is sent again.
* An ``ack {upto}`` deletes records up to ``upto`` (in a thread). An ack beyond the last
  committed seq is refused and counted (``bad_acks``).
* Storage faults never reach the caller: the spool degrades (quarantine, disk full) and reports
  events, which the pump logs and counts (``events``); control is never touched. A bug in the
  pump's own task is logged by the runtime's task wrapper and telemetry stops; nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from agent.config.agentconfig import SpoolConfig, TelemetryConfig
from agent.core.forwarder import Forwarder
from agent.io.spool.store import Spool
from agent.io.spool.writer import SpoolWriter
from agent.model.messages import BODY_MAX, AgentMessage, Resume, Telemetry
from agent.model.spool import AppendResult, AppendStatus, SpoolEvent

log = logging.getLogger(__name__)

SPOOL_FILE = "telemetry.sqlite"
MAX_BATCH = 100  # records per forwarder range (one spool read)
HISTORY_BURST = 50
FLUSH_INTERVAL_S = 0.5  # the writer thread commits at most this often (or per 500 records):
# each commit wakes the writer thread and the pump, and reads the batch back once
ACK_INTERVAL_S = 1.0  # acknowledged rows are deleted at most this often (acks are cumulative)

Send = Callable[[AgentMessage], Awaitable[bool]]
SendMany = Callable[[Sequence[AgentMessage]], Awaitable[bool]]


@dataclass
class PumpStats:
    submitted: int = 0
    refused: int = 0  # submit() refused (writer queue full or closed)
    sent: int = 0
    sent_historical: int = 0
    acks: int = 0
    bad_acks: int = 0
    resumes: int = 0
    events: list[str] = field(default_factory=list)  # spool events (last 20)


class TelemetryPump:
    """See the module docstring. Build with :meth:`open` inside the running loop."""

    def __init__(self, spool: Spool, telemetry: TelemetryConfig, send: Send,
                 *, flush_interval_s: float = FLUSH_INTERVAL_S,
                 send_many: SendMany | None = None) -> None:
        self.spool = spool
        self.stats = PumpStats()
        self._send = send
        self._send_many_fn = send_many
        self._loop = asyncio.get_running_loop()
        backlog = spool.backlog()
        last = spool.next_seq - 1
        acked = backlog.first_seq - 1 if backlog.first_seq is not None else last
        self.fw = Forwarder(history_rate=telemetry.history_rate,
                            history_burst=min(HISTORY_BURST, telemetry.window),
                            window=telemetry.window, max_batch=MAX_BATCH, acked=acked)
        self.fw.commit(last)
        self._wake = asyncio.Event()
        self._up = False
        self._resume_needed = False
        self._ack_to = 0
        self._acked_at = -ACK_INTERVAL_S  # loop time of the last spool.ack (a commit)
        self._gen = 0  # connection generation: a range read for an older one is not sent
        self.writer = SpoolWriter(spool, flush_interval_s=flush_interval_s,
                                  on_commit=self._on_commit_thread).start()

    @classmethod
    async def open(cls, state_dir: Path, spool_cfg: SpoolConfig, telemetry: TelemetryConfig,
                   send: Send, send_many: SendMany | None = None) -> TelemetryPump:
        """Open ``<state_dir>/telemetry.sqlite`` (in a thread) and start the writer thread.
        ``send_many`` sends a range in one write (default: ``send`` one by one)."""
        spool = await asyncio.to_thread(
            Spool.open, state_dir / SPOOL_FILE, max_bytes=spool_cfg.max_bytes,
            max_records=spool_cfg.max_records, overflow=spool_cfg.overflow)
        return cls(spool, telemetry, send, send_many=send_many)

    # --- called on the loop (no I/O) ------------------------------------------------------

    def submit(self, record: bytes) -> bool:
        """Queue one record for the spool; False (counted) if refused."""
        ok = self.writer.submit(record)
        if ok:
            self.stats.submitted += 1
        else:
            self.stats.refused += 1
        return ok

    def on_connection(self, up: bool, now: float) -> None:
        self._up = up
        self._gen += 1
        if up:
            self._resume_needed = True
        else:
            self.fw.disconnect()
        self._wake.set()

    def on_ack(self, upto: int) -> None:
        """An ack from the twin: the pump is woken only if it was blocked on the window (the
        deletion of acknowledged rows waits for its next turn anyway: at most one per
        ACK_INTERVAL_S), not once per ack."""
        fw = self.fw
        blocked = fw.history_left > 0 and fw.window - fw.history_in_flight <= 0
        if not fw.ack(upto):
            self.stats.bad_acks += 1
            log.warning("telemetry: ack %d beyond the last committed seq %d refused", upto,
                        self.fw.committed)
            return
        self.stats.acks += 1
        self._ack_to = max(self._ack_to, upto)
        if blocked:
            self._wake.set()

    # --- writer thread -------------------------------------------------------------------

    def _on_commit_thread(self, result: AppendResult) -> None:
        last = self.spool.next_seq - 1  # includes the spool's own event rows of the batch
        events = self.spool.drain_events()
        if result.status is not AppendStatus.FAILED or events:
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                self._loop.call_soon_threadsafe(self._committed, last, events)

    def _committed(self, last: int, events: list[SpoolEvent]) -> None:
        self.fw.commit(last)
        for ev in events:
            self.stats.events = [*self.stats.events[-19:], f"{ev.kind.value}: {ev.text}"]
        self._wake.set()

    # --- the pump task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Send until cancelled. Never raises for link or storage faults."""
        while True:
            # acks are cumulative: delete acknowledged rows at most once per ACK_INTERVAL_S,
            # one commit for many acks (an unacknowledged row is only ever sent again)
            ack_wait = self._acked_at + ACK_INTERVAL_S - self._loop.time()
            if self._ack_to and ack_wait <= 0:
                upto, self._ack_to = self._ack_to, 0
                self._acked_at = self._loop.time()
                await asyncio.to_thread(self.spool.ack, upto)
            if self._up and self._resume_needed:
                self._resume_needed = False
                self.fw.connect(self._loop.time())
                if await self._send(Resume(self.fw.acked)):
                    self.stats.resumes += 1
                else:
                    self.fw.disconnect()
            sent = await self._send_some()
            if sent:
                await asyncio.sleep(0)  # let the loop breathe between ranges
                continue
            wait = self.fw.wait_s(self._loop.time())
            if self._ack_to:
                wait = max(0.0, min(wait if wait is not None else 1.0, ack_wait))
            self._wake.clear()
            if self._up and self._resume_needed:
                continue
            # a timeout scope, not wait_for(): Python 3.11's wait_for() drops a cancel that
            # comes as the wake-up does, and the pump would then never end (seen in tests)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if wait is not None else 1.0):
                    await self._wake.wait()

    async def _send_some(self) -> bool:
        s = self.fw.next_send(self._loop.time())
        if s is None:
            return False
        gen = self._gen
        records = await asyncio.to_thread(self.spool.pending, s.first - 1, s.count, s.last)
        if gen != self._gen:
            return False  # the connection changed: the new one resumes from its ack
        prev = s.first - 1
        msgs: list[AgentMessage] = []
        for rec in records:
            body = rec.payload
            if not 0 < len(body) <= BODY_MAX:
                body = msgpack.packb({"type": "event", "event": "oversize", "size": len(body)})
            msgs.append(Telemetry(rec.seq, prev, int(rec.t_wall * 1000), s.historical, body))
            prev = rec.seq
        if not msgs:
            return True
        # the range in one write (one TLS record): per-message writes cost a syscall each
        if not await self._send_many(msgs):
            self.fw.disconnect()  # resent from the last ack on the next connection
            return False
        self.stats.sent += len(msgs)
        self.stats.sent_historical += len(msgs) * s.historical
        return True

    async def _send_many(self, msgs: Sequence[AgentMessage]) -> bool:
        if self._send_many_fn is not None:
            return await self._send_many_fn(msgs)
        for msg in msgs:
            if not await self._send(msg):
                return False
        return True

    async def close(self) -> None:
        """Commit what is queued (in a thread), stop the writer, close the spool."""
        await asyncio.to_thread(self.writer.close)
        self.spool.close()

    def summary(self) -> dict[str, object]:
        b = self.spool.backlog()
        return {"backlog": b.count, "acked": self.fw.acked, "committed": self.fw.committed,
                "sent": self.stats.sent, "refused": self.stats.refused,
                "degraded": self.spool.degraded, "t": time.time()}
