"""pymodbus servers that answer each request with *its own* reply, in order, however slow.

pymodbus 3.16's ``ServerRequestHandler`` keeps the request being served in one attribute
(``last_pdu``) and reads it again after awaiting the datastore: while a request waits (the
sim PLC's ``slow`` fault sleeps in the device action), the next request on the connection
overwrites it, so the first reply goes out with the *second* request's transaction id (and
two requests in one TCP segment are both answered as the second). A test double that
crosses replies tests crossed replies, not a slow PLC.

Here each decoded request is queued with its own PDU and address, and one task per
connection serves the queue in arrival order, building each reply from its own request::

    data_received -> framer -> PDU --queue--> serve task: datastore (may sleep) -> reply(tid)

so a slow PLC is slow, one request after another, like a real one, and every reply carries
the transaction id and unit id of the request it answers. (pymodbus' ``send`` also empties
the receive buffer, which on a server drops the part of a pipelined request already
received; the handler keeps it.)

Arrival stamps: the handler takes ``time.monotonic()`` first thing in its data-received
callback (``datagram_received``, which pymodbus' TCP ``data_received`` and its serial
transport's reads both go through), once per read, and remembers where each read starts in
the receive buffer. A request is stamped with the read that holds its *first* byte (a
request split over two reads keeps the first one's stamp; two requests in one read share
it). The server's ``trace_pdu`` hook is called with that stamp as a third argument
(:class:`RequestTrace`): ``trace_pdu(False, request, arrived)`` right after the framer
decoded it, ``trace_pdu(True, reply, None)`` before a reply is framed. On RTU, bytes the
framer skips before a frame (line noise) count as the frame's start: the stamp is then at
or before the true first byte.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

log = logging.getLogger(__name__)


class RequestTrace(Protocol):
    """The ordered servers' ``trace_pdu``: pymodbus' hook plus the request's arrival.

    ``arrived`` is ``time.monotonic()`` when the request's first byte reached the server
    (None for replies). Returning None drops a request without a reply, as in pymodbus.
    """

    def __call__(self, sending: bool, pdu: ModbusPDU,
                 arrived: float | None = None) -> ModbusPDU | None: ...


class OrderedRequestHandler(ServerRequestHandler):
    """One client connection: requests served one at a time, each with its own reply, each
    stamped when its first byte arrived (see the module docstring)."""

    def __init__(self, owner: Any, trace_packet: Any, trace_pdu: RequestTrace | None,
                 trace_connect: Any) -> None:
        self._trace_request = trace_pdu
        super().__init__(owner, trace_packet, self._trace,  # type: ignore[no-untyped-call]
                         trace_connect)
        self._queue: asyncio.Queue[tuple[ModbusPDU, tuple[Any, ...] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # (offset in recv_buffer, monotonic time) of each read whose bytes are still in it
        self._reads: list[tuple[int, float]] = []
        self._arrived: float | None = None  # first byte of the request being decoded

    def datagram_received(self, data: bytes, addr: tuple[Any, ...] | None) -> None:
        """Stamp the read, then let pymodbus buffer and decode it (``callback_data``)."""
        now = time.monotonic()
        if not self.recv_buffer:  # pymodbus empties it wholesale (closing, overflow)
            self._reads.clear()
        self._reads.append((len(self.recv_buffer), now))
        super().datagram_received(data, addr)
        if not self.recv_buffer:
            self._reads.clear()

    def send(self, data: bytes, addr: tuple[Any, ...] | None = None) -> None:
        """pymodbus' send, without its emptying of the receive buffer (a client's habit):
        the start of a client's next request, already received, must not be dropped
        because this reply went out."""
        kept = self.recv_buffer
        super().send(data, addr)
        self.recv_buffer = kept

    def _arrival(self, offset: int) -> float | None:
        """When the read holding byte ``offset`` of the receive buffer arrived."""
        i = bisect.bisect_right(self._reads, offset, key=lambda r: r[0]) - 1
        return self._reads[i][1] if i >= 0 else None

    def _consumed(self, used: int) -> None:
        """The first ``used`` bytes left the receive buffer: rebase the reads' offsets."""
        ends: list[int | None] = [start for start, _ in self._reads[1:]]
        ends.append(None)
        self._reads = [(max(0, start - used), t)
                       for (start, t), end in zip(self._reads, ends, strict=True)
                       if end is None or end > used]

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        """pymodbus' two-argument hook, passed on with the arrival of the request."""
        if self._trace_request is None:
            return pdu
        return self._trace_request(sending, pdu, None if sending else self._arrived)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Queue every whole request in ``data`` (pymodbus decodes one per call, and would
        leave a second request of the same segment waiting for more bytes)."""
        total = 0
        while total < len(data):
            self._arrived = self._arrival(total)
            used: int = super().callback_data(data[total:], addr)  # decodes into last_pdu
            pdu, self.last_pdu = self.last_pdu, None
            if pdu is not None:
                self._queue.put_nowait((pdu, addr))
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._serve())
            if not used:
                break
            total += used
        self._arrived = None
        self._consumed(total)
        return total

    def handle_later(self) -> None:
        """pymodbus schedules this per request; the serve task does the work instead."""

    def callback_disconnected(self, exc: Exception | None) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        super().callback_disconnected(exc)

    async def _serve(self) -> None:
        while True:
            pdu, addr = await self._queue.get()
            try:
                await self._answer(pdu, addr)
            except Exception:  # one bad request must not end the connection's service
                log.exception("request fc %d failed", pdu.function_code)

    async def _answer(self, pdu: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        """pymodbus' ``handle_request`` for one queued request (its own PDU throughout)."""
        server = self.server
        if server.broadcast_enable and not pdu.dev_id:
            for dev_id in server.context.device_ids():
                await pdu.datastore_update(server.context, dev_id)
            return
        try:
            response = await pdu.datastore_update(server.context, pdu.dev_id)
        except NoSuchIdException:
            if server.ignore_missing_devices:
                return
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except Exception:
            log.exception("datastore failed on fc %d", pdu.function_code)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _Ordered:
    """Mixin: new connections get an :class:`OrderedRequestHandler`."""

    def callback_new_connection(self) -> OrderedRequestHandler:
        me: Any = self
        return OrderedRequestHandler(me, me.trace_packet, me.trace_pdu, me.trace_connect)


class OrderedTcpServer(_Ordered, ModbusTcpServer):
    """``ModbusTcpServer`` with per-request replies in order (see the module docstring)."""


class OrderedSerialServer(_Ordered, ModbusSerialServer):
    """``ModbusSerialServer`` with per-request replies in order (see the module docstring)."""
