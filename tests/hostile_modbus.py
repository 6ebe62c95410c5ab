"""A hostile Modbus TCP server on raw sockets and a hostile RTU responder on a pty, for the
master's reply checks (issue 10 item 2).

It holds the sim-tank register map's values (temperatures 25.0 degC, pressures 2.0 bar,
outputs at their safe values, PLC watchdog timeout 1000 ms, latch clear) and answers every
request correctly, except that a fault injected with :meth:`HostileServer.inject` bends the
reply to the next matching request(s). It records every request it received, with the
fault it answered with, and counts connections, so tests assert from outside what the
master sent, when it reconnected and that it wrote nothing it should not have.

:class:`HostileRtuResponder` is the same bank as an RTU slave on one end of a socat pty
pair (pyserial), with the RTU faults (bad CRC, wrong unit, wrong function code, a late
reply sent ``late_s`` after its request unless the master asked again first).

Its Modbus code is its own (``struct``, its own CRC), independent of the agent's codec.
Faulted replies to reads carry POISON values where they carry any, so a value taken from a
malformed or late reply is visible as such (a temperature of 200.0 degC, a latched PLC watchdog).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

TEMP_RAW = 250  # 25.0 degC at scale 0.1
PRESSURE = 2.0
POISON = 2000  # 200.0 degC: above the 95 degC trip, and nothing like the bank's values
WATCHDOG_TIMEOUT_MS = 1000


class Fault(enum.Enum):
    NONE = "none"
    WRONG_FC = "wrong function code"
    MORE_REGISTERS = "one register more than asked"
    REGS_125 = "125 registers for a read of 10"
    ODD_BYTE_COUNT = "odd byte count"
    WRONG_TID = "wrong transaction id"
    WRONG_UNIT = "wrong unit id"
    WRONG_PID = "wrong protocol id"
    EXCEPTION_OTHER_FC = "exception reply for another function code"
    TRUNCATED = "truncated reply"
    SPLIT = "valid reply split across segments"
    LATE = "reply late after the timeout"
    RESET_MID_REPLY = "connection reset mid-reply"
    ECHO_ADDRESS = "wrong write echo address"
    ECHO_COUNT = "wrong write echo count"
    ECHO_VALUE = "wrong write echo value"
    BAD_CRC = "bad CRC"


READ_REASONS = {
    Fault.WRONG_FC: "malformed reply: function code 3, expected 4",
    Fault.MORE_REGISTERS: "malformed reply: byte count 22, expected 20 for 10 registers",
    Fault.REGS_125: "malformed reply: byte count 250, expected 20 for 10 registers",
    Fault.ODD_BYTE_COUNT: "malformed reply: byte count 21, expected 20 for 10 registers",
    Fault.WRONG_TID: "malformed reply: transaction id 23131, expected 1",
    Fault.WRONG_UNIT: "malformed reply: unit id 2, expected 1",
    Fault.WRONG_PID: "malformed reply: protocol id 1, expected 0",
    Fault.EXCEPTION_OTHER_FC: "malformed reply: exception reply for function code 3, expected 4",
    Fault.TRUNCATED: "malformed reply: truncated: 14 of 29 bytes, then nothing for 0.1 s",
    Fault.RESET_MID_REPLY: "disconnected: connection reset by the PLC mid-reply",
}
"""The reason each read fault must give for sim-tank's signal read (fc 4 of 10 registers at
0, unit 1, the first request on a connection: transaction id 1; timeout 0.1 s)."""

OTHER_FC = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 15: 16, 16: 15}


def sim_tank_bank() -> dict[tuple[str, int], int]:
    """(table, address) -> raw value, as the sim PLC serves sim-tank."""
    pa = struct.unpack(">HH", struct.pack(">f", PRESSURE))
    bank = {("input", a): 0 for a in range(10)}
    bank.update({("input", 0): TEMP_RAW, ("input", 1): TEMP_RAW, ("input", 2): TEMP_RAW})
    bank.update({("input", 4): pa[0], ("input", 5): pa[1]})  # float32 big: high word first
    bank.update({("input", 8): pa[1], ("input", 9): pa[0]})  # float32 little: low word first
    bank.update({("holding", 100): 0, ("holding", 101): 1000, ("holding", 200): 0,
                 ("holding", 201): WATCHDOG_TIMEOUT_MS, ("discrete", 0): 0, ("coil", 0): 0,
                 ("coil", 1): 0})  # [plc_remote] at local_value
    return bank


TABLES = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding",
          15: "coil", 16: "holding"}


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and how it was answered."""

    conn: int
    t: float
    tid: int
    unit: int
    fc: int
    address: int
    count: int
    values: tuple[int, ...]
    fault: Fault

    @property
    def is_write(self) -> bool:
        return self.fc in (5, 6, 15, 16)


@dataclass
class _Injection:
    fault: Fault
    fc: int | None
    times: int | None  # None: until cleared


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    injections: list[_Injection] = field(default_factory=list)
    connections: int = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except TimeoutError:
            if not data:
                raise
            continue
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS, bit by bit (the agent's is table-driven; this one is the test's own)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class _Bank:
    """The register bank, the injected faults and the record of requests."""

    def __init__(self) -> None:
        self.bank = sim_tank_bank()
        self._state = _State()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def inject(self, fault: Fault, *, fc: int | None = None, times: int | None = 1) -> None:
        """Answer the next ``times`` requests with function code ``fc`` (any if None) with
        ``fault``; ``times=None``: every such request until :meth:`clear`."""
        with self._state.lock:
            self._state.injections.append(_Injection(fault, fc, times))

    def clear(self) -> None:
        with self._state.lock:
            self._state.injections.clear()

    def received(self) -> list[Received]:
        with self._state.lock:
            return list(self._state.received)

    def _start(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _take_fault(self, fc: int) -> Fault:
        with self._state.lock:
            for inj in self._state.injections:
                if inj.fc is None or inj.fc == fc:
                    if inj.times is not None:
                        inj.times -= 1
                        if inj.times <= 0:
                            self._state.injections.remove(inj)
                    return inj.fault
        return Fault.NONE

    def _decode(self, conn: int, tid: int, unit: int, body: bytes) -> Received:
        """The request PDU ``body`` as a record (with the fault it will be answered with)."""
        fc = body[0]
        address, second = struct.unpack(">HH", body[1:5]) if len(body) >= 5 else (0, 0)
        values: tuple[int, ...] = ()
        count = second
        if fc in (5, 6):
            count, values = 1, ((1 if second == 0xFF00 else 0) if fc == 5 else second,)
        elif fc == 15:
            values = tuple((body[6 + i // 8] >> (i % 8)) & 1 for i in range(second))
        elif fc == 16:
            values = struct.unpack(f">{second}H", body[6 : 6 + 2 * second])
        r = Received(conn, time.monotonic(), tid, unit, fc, address, count, values,
                     self._take_fault(fc))
        with self._state.lock:
            self._state.received.append(r)
        return r

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


class HostileServer(_Bank):
    """Modbus TCP (see the module docstring). ``late_s``: how long a LATE reply is held at
    most (it is sent as soon as the next request arrives, before that one's reply)."""

    def __init__(self, *, late_s: float = 1.0) -> None:
        super().__init__()
        self.late_s = late_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._start(self._accept)

    @property
    def connections(self) -> int:
        with self._state.lock:
            return self._state.connections

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._state.lock:
                self._state.connections += 1
                conn = self._state.connections
            self._start(self._serve, sock, conn)

    def _serve(self, sock: socket.socket, conn: int) -> None:
        held: bytes | None = None  # a LATE reply, sent before the next request's reply
        with sock:
            while not self._stop.is_set():
                sock.settimeout(self.late_s if held is not None else 0.1)
                try:
                    head = _recv_exact(sock, 7)
                except TimeoutError:
                    if held is not None:
                        sock.sendall(held)
                        held = None
                    continue
                if head is None:
                    return
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                body = _recv_exact(sock, length - 1) if length > 1 else b""
                if not body:
                    return
                if held is not None:
                    sock.sendall(held)
                    held = None
                r = self._decode(conn, tid, unit, body)
                pdu = reply_pdu(self.bank, r)
                out_tid = tid ^ 0x5A5A if r.fault is Fault.WRONG_TID else tid
                pid = 1 if r.fault is Fault.WRONG_PID else 0
                out_unit = unit + 1 if r.fault is Fault.WRONG_UNIT else unit
                frame = struct.pack(">HHHB", out_tid, pid, len(pdu) + 1, out_unit) + pdu
                if r.fault is Fault.LATE:
                    held = frame
                elif not self._send(sock, r.fault, frame):
                    return

    def _send(self, sock: socket.socket, fault: Fault, frame: bytes) -> bool:
        """Put ``frame`` on the wire as ``fault`` says; False once the connection is gone."""
        try:
            if fault is Fault.TRUNCATED:
                sock.sendall(frame[: len(frame) // 2])
            elif fault is Fault.RESET_MID_REPLY:
                sock.sendall(frame[: len(frame) // 2])
                time.sleep(0.02)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # RST
                return False
            elif fault is Fault.SPLIT:
                for a, b in itertools.pairwise([0, 3, 7, 9, len(frame)]):
                    sock.sendall(frame[a:b])
                    time.sleep(0.02)
            else:
                sock.sendall(frame)
        except OSError:
            return False
        return True


class HostileRtuResponder(_Bank):
    """An RTU slave (unit 1) on serial device ``device`` (see the module docstring).

    ``late_sent`` counts LATE replies that were sent; a LATE reply whose master asked again
    before ``late_s`` passed is dropped instead (``late_void``), as it could no longer test
    what it is for. With ``late_until_next`` a LATE reply is instead held until the next
    request arrives and sent right before that request's own reply.
    """

    def __init__(self, device: str, *, baudrate: int = 19200, parity: str = "N",
                 stopbits: int = 2, late_s: float = 0.13, unit: int = 1) -> None:
        super().__init__()
        import serial

        self.unit = unit
        self.late_s = late_s
        self.late_sent = self.late_void = 0
        self.late_until_next = False
        self._held: bytes | None = None
        self._port = serial.Serial(device, baudrate, parity=parity, stopbits=stopbits,
                                   timeout=0.05)
        self._write_lock = threading.Lock()
        self._requests = 0
        self._start(self._serve)

    def __enter__(self) -> HostileRtuResponder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
        self._port.close()

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            buf += self._port.read(512)
            while len(buf) >= 8:
                fc = buf[1]
                size = 9 + buf[6] if fc in (15, 16) else 8
                if len(buf) < size:
                    break
                frame, buf = buf[:size], buf[size:]
                if crc16(frame[:-2]).to_bytes(2, "little") != frame[-2:]:
                    buf = b""  # lost sync: drop everything
                    break
                if frame[0] == self.unit:
                    self._answer(frame)

    def _answer(self, frame: bytes) -> None:
        self._requests += 1
        r = self._decode(self._requests, 0, frame[0], frame[1:-2])
        pdu = reply_pdu(self.bank, r)
        unit = self.unit + 1 if r.fault is Fault.WRONG_UNIT else self.unit
        body = bytes([unit]) + pdu
        crc = crc16(body) ^ (0xFFFF if r.fault is Fault.BAD_CRC else 0)
        out = body + crc.to_bytes(2, "little")
        if self._held is not None:
            with self._write_lock:
                self._port.write(self._held)
                self.late_sent += 1
            self._held = None
        if r.fault is Fault.LATE and self.late_until_next:
            self._held = out
            return
        if r.fault is not Fault.LATE:
            with self._write_lock:
                self._port.write(out)
            return
        seq = self._requests
        timer = threading.Timer(self.late_s, self._late, args=(seq, out))
        timer.daemon = True
        timer.start()

    def _late(self, seq: int, out: bytes) -> None:
        with self._write_lock:
            if self._requests != seq:  # the master asked again first: nothing left to test
                self.late_void += 1
                return
            self._port.write(out)
            self.late_sent += 1


def reply_pdu(bank: dict[tuple[str, int], int], r: Received) -> bytes:
    """The reply PDU to request ``r`` from ``bank``, bent by ``r.fault``; writes are applied
    whatever the echo says. Faulted read replies carry POISON values."""
    fc, address, count, values, fault = r.fc, r.address, r.count, r.values, r.fault
    table = TABLES.get(fc)
    if table is None:
        return bytes([fc | 0x80, 1])
    if fault is Fault.EXCEPTION_OTHER_FC:
        return bytes([OTHER_FC[fc] | 0x80, 2])
    out_fc = OTHER_FC[fc] if fault is Fault.WRONG_FC else fc
    if fc in (1, 2, 3, 4):
        addrs = range(address, address + count)
        if any((table, a) not in bank for a in addrs):
            return bytes([fc | 0x80, 2])
        poison = fault not in (Fault.NONE, Fault.SPLIT)
        raw = [POISON if poison and fc in (3, 4) else bank[(table, a)] for a in addrs]
        if poison and fc in (1, 2):
            raw = [1] * count
        if fault is Fault.MORE_REGISTERS:
            raw.append(POISON if fc in (3, 4) else 1)
        if fault is Fault.REGS_125:
            raw = [POISON] * (125 if fc in (3, 4) else 1000)
        if fc in (1, 2):
            data = bytearray((len(raw) + 7) // 8)
            for i, b in enumerate(raw):
                if b:
                    data[i // 8] |= 1 << (i % 8)
            if fault is Fault.MORE_REGISTERS:
                data.append(0xFF)
        else:
            data = bytearray(struct.pack(f">{len(raw)}H", *raw))
        if fault is Fault.ODD_BYTE_COUNT:
            data.append(0x07)
        return bytes([out_fc, len(data)]) + bytes(data)
    for i, v in enumerate(values):
        if (table, address + i) in bank:
            bank[(table, address + i)] = v
    echo_address = address + 1 if fault is Fault.ECHO_ADDRESS else address
    if fc in (15, 16):
        second = count + 1 if fault is Fault.ECHO_COUNT else count
    elif fc == 5:
        second = 0xFF00 if bool(values[0]) != (fault is Fault.ECHO_VALUE) else 0
    else:
        second = values[0] ^ (1 if fault is Fault.ECHO_VALUE else 0)
    return struct.pack(">BHH", out_fc, echo_address, second)
