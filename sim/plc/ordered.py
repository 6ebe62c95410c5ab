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
the transaction id and unit id of the request it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

log = logging.getLogger(__name__)


class OrderedRequestHandler(ServerRequestHandler):
    """One client connection: requests served one at a time, each with its own reply."""

    def __init__(self, owner: Any, *args: Any) -> None:
        super().__init__(owner, *args)  # type: ignore[no-untyped-call]
        self._queue: asyncio.Queue[tuple[ModbusPDU, tuple[Any, ...] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Queue every whole request in ``data`` (pymodbus decodes one per call, and would
        leave a second request of the same segment waiting for more bytes)."""
        total = 0
        while total < len(data):
            used: int = super().callback_data(data[total:], addr)  # decodes into last_pdu
            pdu, self.last_pdu = self.last_pdu, None
            if pdu is not None:
                self._queue.put_nowait((pdu, addr))
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._serve())
            if not used:
                break
            total += used
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
