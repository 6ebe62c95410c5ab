"""One request on the wire and the reply that answers it: the master's transaction (adapter).

:meth:`Exchange.run` sends one request over a transport and scans what comes back with
:mod:`agent.protocol.modbus.adu` until the request's own reply, a bad frame, a lost link or the
deadline. It keeps what a transaction needs to remember across requests (the late-reply
rules of :mod:`agent.io.modbus.session`, which owns the policy around it: retries, counters,
resets):

- TCP: the next transaction id (1..65000, from 1 again after each reconnect) and the ids of
  requests that timed out or were cancelled on this connection; a reply carrying one of
  those is dropped unread (``late_replies``).
- RTU: the *dirty line*: after a timeout (or a cancel) until one more ``timeout_s`` has
  passed, a request whose reply would look the same as the timed-out one's
  (:func:`reply_shape`) waits that window out, discarding what arrives; any other request
  waits for line silence only. The input is flushed before every request.

One request at a time: :meth:`run` and :meth:`quiet_line` hold one lock. Cancelling
:meth:`run` at any await leaves the state as after a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from agent.io.modbus.transport import RtuTransport, TcpTransport
from agent.protocol.modbus import adu
from agent.protocol.modbus.pdu import (
    READ_BITS_FCS,
    READ_REGISTERS_FCS,
    SINGLE_WRITE_FCS,
    ExceptionReply,
    Reply,
    Request,
)

log = logging.getLogger(__name__)

LATE_TIDS_KEPT = 64  # TCP: timed-out transaction ids remembered per connection


@dataclass(frozen=True)
class Timeout:
    """No whole reply before the deadline; ``partial`` bytes of an unfinished frame came."""

    partial: int
    need: int | None

    def truncated(self, timeout_s: float) -> str:
        of = f" of {self.need}" if self.need is not None else ""
        return f"truncated: {self.partial}{of} bytes, then nothing for {timeout_s:g} s"


@dataclass(frozen=True)
class Lost:
    """The link went down while waiting (``why`` says how, and how far the reply got)."""

    why: str


Result = Reply | ExceptionReply | adu.Bad | Timeout | Lost


def reply_shape(req: Request) -> tuple[int, ...]:
    """What tells replies apart on RTU: reads by unit, fc and count; writes by their echo."""
    if req.fc in READ_BITS_FCS or req.fc in READ_REGISTERS_FCS:
        return req.unit_id, req.fc, req.count
    value = req.values if req.fc in SINGLE_WRITE_FCS else ()
    return req.unit_id, req.fc, req.address, req.count, *value


class Exchange:
    """Transactions over ``transport`` with ``timeout_s`` per attempt (see the module)."""

    def __init__(self, transport: TcpTransport | RtuTransport, timeout_s: float) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.late_replies = 0
        self._lock = asyncio.Lock()
        self._tid = 0
        self._late: deque[int] = deque(maxlen=LATE_TIDS_KEPT)
        self._dirty: tuple[float, Request] | None = None  # RTU: (until, timed-out request)

    def reset(self) -> None:
        """A new connection: nothing of the old one's transactions can come on it."""
        self._tid = 0
        self._late.clear()
        self._dirty = None

    async def run(self, req: Request) -> Result:
        """One attempt of ``req``; never raises for what the PLC or the link does."""
        async with self._lock:
            return await self._run(req)

    async def quiet_line(self) -> None:
        """RTU after a bad frame: wait for line silence (at most ``timeout_s``), flush."""
        t = self.transport
        if isinstance(t, RtuTransport):
            async with self._lock:
                await t.settle(asyncio.get_running_loop().time(), self.timeout_s)
                t.discard_input()

    async def _run(self, req: Request) -> Result:
        t = self.transport
        loop = asyncio.get_running_loop()
        tcp = isinstance(t, TcpTransport)
        if tcp:
            self._tid = self._tid % adu.MAX_TID + 1
            tid = self._tid
            frame = adu.tcp_frame(req, tid)
        else:
            assert isinstance(t, RtuTransport)
            await self._clear_line(t, req, loop.time())
            tid = 0
            frame = adu.rtu_frame(req)
        done = False
        try:
            await t.send(frame)
            deadline = loop.time() + self.timeout_s
            buf = t.buffer
            while True:
                scan = adu.scan_tcp(buf, req, tid, self._late) if tcp else adu.scan_rtu(buf, req)
                if isinstance(scan, adu.Answer):
                    del buf[: scan.used]
                    done = True
                    return scan.reply
                if isinstance(scan, adu.Stale):
                    del buf[: scan.used]
                    self._late.remove(scan.tid)
                    self.late_replies += 1
                    log.info("dropped a late reply (transaction %d)", scan.tid)
                    continue
                if isinstance(scan, adu.Bad):
                    done = True
                    return scan
                if t.lost is not None:
                    done = True
                    return Lost(_mid_reply(t.lost, scan))
                if not await t.wait(deadline):
                    return Timeout(scan.have, scan.need)
        finally:
            if not done:  # timed out or cancelled: its reply may still come
                if tcp:
                    self._late.append(tid)
                else:
                    self._dirty = (loop.time() + self.timeout_s, req)

    async def _clear_line(self, t: RtuTransport, req: Request, now: float) -> None:
        """RTU, before sending ``req``: keep late replies out (see the module docstring)."""
        if self._dirty is not None:
            until, old = self._dirty
            if now >= until:
                self._dirty = None
                await t.settle(now, self.timeout_s)
            elif reply_shape(old) == reply_shape(req):
                await t.settle(until, self.timeout_s)
                self._dirty = None
            else:
                await t.settle(now, self.timeout_s)
        t.discard_input()


def _mid_reply(lost: str, scan: adu.NeedMore) -> str:
    if not scan.have:
        return lost
    of = f" of {scan.need}" if scan.need is not None else ""
    return f"{lost} mid-reply ({scan.have}{of} bytes received)"
