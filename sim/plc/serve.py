"""Put a ``SimPlc`` on the wire: pymodbus TCP or RTU server, control socket, tick timer.

The servers are ``sim.plc.ordered``'s: each request is answered with its own reply (its own
transaction id), one after another, however slow the ``slow`` fault makes them.

``run`` serves until ``stop`` is set, calling ``on_ready`` once with a one-line description
(``tcp=HOST:PORT`` or ``rtu=DEVICE``, ``units=1,2``, ``control=PATH``) when everything listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios
import time
from collections.abc import Callable
from typing import Any, cast

from pymodbus.server.base import ModbusBaseServer

from agent.model.profile import RtuLink
from sim.plc.control import serve_control
from sim.plc.datastore import PlcDatastore
from sim.plc.ordered import OrderedSerialServer, OrderedTcpServer
from sim.plc.plc import SimPlc

log = logging.getLogger(__name__)

TICK_S = 0.01


def _dropper(server: ModbusBaseServer) -> Callable[[], int]:
    def drop() -> int:
        conns = list(server.active_connections.values())
        for conn in conns:
            conn.close()
        log.info("dropped %d connection(s)", len(conns))
        return len(conns)

    return drop


async def _ticker(plc: SimPlc, period_s: float) -> None:
    while True:
        try:
            plc.tick(time.monotonic())
        except Exception:  # a bug in the model must not stop the PLC answering
            plc.errors += 1
            log.exception("tick failed")
        await asyncio.sleep(period_s)


async def run(
    plc: SimPlc,
    *,
    tcp: tuple[str, int] | None,
    rtu: RtuLink | None,
    control: str | None,
    stop: asyncio.Event,
    on_ready: Callable[[str], None],
) -> None:
    """Serve ``plc`` over exactly one of ``tcp`` / ``rtu`` until ``stop`` is set."""
    if (tcp is None) == (rtu is None):
        raise ValueError("exactly one of tcp or rtu")
    trace = cast(Any, plc.trace_pdu)  # returns None to drop a request; pymodbus handles it
    server: ModbusBaseServer
    if tcp is not None:
        server = OrderedTcpServer(plc.devices(), address=tcp, trace_pdu=trace)
    else:
        assert rtu is not None
        try:  # pymodbus only says "could not start listen" for a device that is not there
            os.close(os.open(rtu.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        except OSError as exc:
            hint = ("a pty pair for trials: socat -d -d pty,raw,echo=0,link=/tmp/plc "
                    "pty,raw,echo=0,link=/tmp/agent" if exc.errno == errno.ENOENT
                    else "add the user to the `dialout` group" if exc.errno == errno.EACCES
                    else "check the device")
            raise OSError(f"serial device {rtu.device}: {exc.strerror}; {hint}") from exc
        server = OrderedSerialServer(
            plc.devices(),
            port=rtu.device,
            baudrate=rtu.baudrate,
            parity=rtu.parity.value,
            stopbits=rtu.stopbits,
            bytesize=rtu.bytesize,
            trace_pdu=trace,
        )
    # pymodbus builds a plain SimCore from the devices; ours applies the address rule with
    # each request's exact count (pymodbus checks bit tables in whole 16-bit words only)
    server.context = PlcDatastore(plc)
    try:
        await server.serve_forever(background=True)
    except termios.error as exc:  # e.g. a kernel whose ptys refuse PARENB (parity E/O)
        assert rtu is not None
        code = exc.args[0] if exc.args else None
        settings = f"{rtu.baudrate} {rtu.bytesize}{rtu.parity.value}{rtu.stopbits}"
        hint = ("some ports (and every Linux pty) cannot do parity: try parity = \"N\" in "
                "the profile's [plc]" if rtu.parity.value != "N" and code == errno.EINVAL
                else "check the device and the profile's [plc] line settings")
        raise OSError(f"serial device {rtu.device} refused {settings} "
                      f"({os.strerror(code) if isinstance(code, int) else exc}); {hint}") from exc
    plc.drop_hook = _dropper(server)
    if tcp is not None:
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        where = f"tcp={tcp[0]}:{port}"
    else:
        assert rtu is not None
        where = f"rtu={rtu.device} {rtu.baudrate} {rtu.bytesize}{rtu.parity.value}{rtu.stopbits}"
    ctl = await serve_control(plc, control) if control else None
    ticker = asyncio.create_task(_ticker(plc, TICK_S))
    units = ",".join(str(u) for u in plc.map.units)
    on_ready(f"{where} units={units}" + (f" control={control}" if control else ""))
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if ctl is not None:
            ctl.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cast(str, control))
        await server.shutdown()  # type: ignore[no-untyped-call]
        plc.log.close()
