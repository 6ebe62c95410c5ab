"""Byte pipes to the PLC for the Modbus master: TCP and RTU, on asyncio (thin adapters).

Both keep what arrives in :attr:`Transport.buffer` (the session scans and consumes it) and
wake one waiter per :meth:`Transport.wait`; neither knows anything about Modbus frames.

- :class:`TcpTransport` -- an asyncio protocol on one TCP connection (TCP_NODELAY). EOF or a
  reset marks it lost (:attr:`Transport.lost` says how, e.g. "connection reset by the PLC").
- :class:`RtuTransport` -- a pyserial port opened exclusively (``flock``; the native guard's
  second handle takes no lock), its non-blocking fd watched with ``loop.add_reader``; writes
  go straight to the fd. pyserial's ``rs485_mode`` can be handed in and is applied on open.
  The line settings are read back after opening: a port that silently kept other ones
  (a pty drops even parity) is refused like one that said EINVAL.
  :meth:`RtuTransport.discard_input` flushes the kernel's input queue and the buffer;
  :meth:`RtuTransport.settle` waits for line silence.

Opening raises :class:`ConnectFailed` whose message says what to do, never a traceback's
worth of library text: :func:`tcp_connect_error` and :func:`serial_open_error` turn DNS
failures, refused connections, connect timeouts, missing devices, permissions, busy ports and
line settings the port refuses (termios EINVAL) into one line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import termios
from typing import Any

import serial

from agent.model.errors import ConnectFailed
from agent.model.profile import Parity, RtuLink

RTU_QUIET_FLOOR_S = 0.02  # USB serial adapters deliver bytes in bursts up to ~16 ms apart


def tcp_connect_error(host: str, port: int, exc: BaseException, timeout_s: float) -> str:
    """One line for a failed TCP connect to ``host:port``."""
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve host {host!r} ({exc.strerror or exc}) — check the profile's "
                "plc.host / --tcp")
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {timeout_s:g} s (connect timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}: nothing listens on port {port} there"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{where} unreachable ({exc.strerror}): check the network and plc.host"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {exc or type(exc).__name__}"


def line_settings(link: RtuLink) -> str:
    """``19200 8E1``."""
    return f"{link.baudrate} {link.bytesize}{link.parity.value}{link.stopbits}"


def serial_open_error(link: RtuLink, exc: BaseException) -> str:
    """One line for a serial port that cannot be opened or configured."""
    dev = link.device
    code = getattr(exc, "errno", None)
    if isinstance(exc, termios.error):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code == errno.ENOENT:
        return f"no such device: {dev} — check the profile's plc.device / --rtu"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied on {dev}: add the user to the dialout group"
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
        return f"{dev} is busy: another process holds it open exclusively"
    if code == errno.ENOTTY:
        return f"{dev} is not a serial port"
    if code == errno.EINVAL or isinstance(exc, termios.error | ValueError):
        if link.parity is not Parity.NONE:
            return (f"{dev}: {line_settings(link)} refused: some ports (and every pty) cannot "
                    'do parity; try parity = "N"')
        return f"{dev}: line settings {line_settings(link)} refused by the port"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot open {dev}: {text}"


def _settings_took(fd: int, link: RtuLink) -> bool:
    """Whether the port holds the parity, stop bits and character size asked for."""
    try:
        cflag = termios.tcgetattr(fd)[2]
    except termios.error:
        return False
    parity = {Parity.NONE: 0, Parity.EVEN: termios.PARENB,
              Parity.ODD: termios.PARENB | termios.PARODD}[link.parity]
    size = {5: termios.CS5, 6: termios.CS6, 7: termios.CS7, 8: termios.CS8}.get(link.bytesize)
    return (cflag & (termios.PARENB | termios.PARODD) == parity
            and bool(cflag & termios.CSTOPB) == (link.stopbits == 2)
            and cflag & termios.CSIZE == size)


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class Transport:
    """What both transports share: the receive buffer and one waiter."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.lost: str | None = None  # why the link went down under us (None while up)
        self._waiter: asyncio.Future[bool] | None = None

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    async def open(self, timeout_s: float) -> None:
        """Open the link (ConnectFailed if it cannot be)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the link (idempotent)."""
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        """Put ``data`` on the wire (a lost link is seen by the next :meth:`wait`)."""
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    async def wait(self, deadline: float) -> bool:
        """Until bytes arrive or the link is lost (True), or the loop's clock passes
        ``deadline`` (False)."""
        if self.lost is not None:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiter = fut
        timer = loop.call_at(deadline, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            self._waiter = None


class _TcpProtocol(asyncio.Protocol):
    """Feeds its owner until the owner closes it (then a late callback of this connection
    must not touch the next one's state)."""

    def __init__(self, owner: TcpTransport) -> None:
        self.owner: TcpTransport | None = owner

    def data_received(self, data: bytes) -> None:
        if self.owner is not None:
            self.owner._feed(data)

    def eof_received(self) -> bool:
        if self.owner is not None:
            self.owner._lose("connection closed by the PLC")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        owner, self.owner = self.owner, None
        if owner is None:
            return
        if isinstance(exc, ConnectionResetError):
            owner._lose("connection reset by the PLC")
        elif exc is not None:
            owner._lose(f"connection lost: {exc}")
        else:
            owner._lose("connection closed")


class TcpTransport(Transport):
    """One Modbus TCP connection (see the module docstring)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port
        self._transport: asyncio.Transport | None = None
        self._protocol: _TcpProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self.lost is None

    async def open(self, timeout_s: float) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                transport, protocol = await loop.create_connection(
                    lambda: _TcpProtocol(self), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(tcp_connect_error(self.host, self.port, exc, timeout_s)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer.clear()
        self.lost = None
        self._transport, self._protocol = transport, protocol

    def close(self) -> None:
        t, self._transport = self._transport, None
        if self._protocol is not None:
            self._protocol.owner = None
            self._protocol = None
        if t is not None:
            t.abort()  # nothing of ours is worth flushing to a peer we stopped trusting
        self.buffer.clear()

    async def send(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)


class RtuTransport(Transport):
    """One serial port (see the module docstring). ``rs485`` is a pyserial
    ``serial.rs485.RS485Settings`` applied on open (None: the port's own mode)."""

    def __init__(self, link: RtuLink, rs485: Any = None) -> None:
        super().__init__()
        self.link = link
        self.rs485 = rs485
        self._port: Any = None
        self._fd = -1
        bits = 1 + link.bytesize + (0 if link.parity is Parity.NONE else 1) + link.stopbits
        char_s = bits / link.baudrate
        # the 3.5-character frame gap (fixed 1.75 ms above 19200 baud), with a floor for USB
        self.quiet_s = max(RTU_QUIET_FLOOR_S, 3.5 * char_s if link.baudrate <= 19200 else 0.00175)

    @property
    def is_open(self) -> bool:
        return self._port is not None and self.lost is None

    async def open(self, timeout_s: float) -> None:
        self.close()
        link = self.link
        port = serial.Serial()
        try:
            port.port = link.device
            port.baudrate = link.baudrate
            port.bytesize = link.bytesize
            port.parity = link.parity.value
            port.stopbits = link.stopbits
            port.timeout = 0
            port.write_timeout = 0
            port.exclusive = True
            if self.rs485 is not None:
                port.rs485_mode = self.rs485
            port.open()
        except (OSError, termios.error, ValueError, serial.SerialException) as exc:
            with contextlib.suppress(Exception):
                port.close()
            raise ConnectFailed(serial_open_error(link, exc)) from exc
        if not _settings_took(port.fd, link):  # some ports (ptys) drop PARENB without EINVAL
            with contextlib.suppress(Exception):
                port.close()
            raise ConnectFailed(serial_open_error(link, termios.error(errno.EINVAL, "ignored")))
        self._port = port
        self._fd = port.fd
        self.buffer.clear()
        self.lost = None
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._stop_reading()
            self._lose(f"serial read failed: {exc.strerror or exc}")
            return
        if not data:
            self._stop_reading()
            self._lose("serial device closed")
            return
        self._feed(data)

    def _stop_reading(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            self._stop_reading()
            with contextlib.suppress(Exception):
                port.close()
        self._fd = -1
        self.buffer.clear()

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.is_open:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._lose(f"serial write failed: {exc.strerror or exc}")
                return
            view = view[n:]
            if view:
                await asyncio.sleep(0.001)  # the kernel's queue is full: rare, tiny frames

    def discard_input(self) -> None:
        """Drop every byte received and not yet read (the kernel's queue and ours)."""
        if self._port is not None:
            with contextlib.suppress(Exception):
                termios.tcflush(self._fd, termios.TCIFLUSH)
        self.buffer.clear()

    async def settle(self, until: float, limit_s: float) -> bool:
        """Discard input until the loop's clock is past ``until`` and the line has been
        silent for :attr:`quiet_s`; False if it never went quiet within ``limit_s`` more
        (or the link was lost)."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        give_up = max(until, last) + limit_s
        while True:
            self.buffer.clear()
            wake = max(until, last + self.quiet_s)
            if wake > give_up or self.lost is not None:
                return False
            if not await self.wait(wake):
                return self.lost is None
            last = loop.time()
