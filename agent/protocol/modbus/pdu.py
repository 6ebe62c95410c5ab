"""Modbus requests and the strict check of their replies, at the PDU level (pure; no I/O).

The master's side of the protocol data unit for the eight function codes the agent speaks.
Every number is big-endian; ``bits`` are packed LSB first, the first bit in bit 0 of the first
byte, unused high bits of the last byte zero::

    request                                            reply
    fc 1/2   [ fc ][ address:2 ][ count:2 ]            [ fc ][ n=ceil(count/8):1 ][ bits ... n ]
    fc 3/4   [ fc ][ address:2 ][ count:2 ]            [ fc ][ n=2*count:1 ][ registers ... n ]
    fc 5     [ 05 ][ address:2 ][ FF00 | 0000 ]        echo of the request (5 bytes)
    fc 6     [ 06 ][ address:2 ][ value:2 ]            echo of the request (5 bytes)
    fc 15    [ 0F ][ address:2 ][ count:2 ][ n:1 ][ bits ... n ]    [ 0F ][ address:2 ][ count:2 ]
    fc 16    [ 10 ][ address:2 ][ count:2 ][ n=2*count:1 ][ regs ]  [ 10 ][ address:2 ][ count:2 ]
    any      exception reply: [ fc | 0x80 ][ code:1 ]  (code 1..255; 2 bytes, nothing else)

:func:`check_reply` compares a reply PDU with the request it answers and returns either the
decoded reply (:class:`Bits`, :class:`Registers`, :class:`WriteEcho`, or
:class:`ExceptionReply` for an exception reply to *this* function code) or a
:class:`Malformed` that names what was wrong: a function code that is neither the request's
nor its exception form, a byte count that is not exactly what ``count`` needs (more registers
than asked, 125 for a read of 10, an odd count), a PDU longer or shorter than its byte count
says, a write echo whose address, count or value differs from what was sent. Nothing is
decoded before its length is known to be right, and a :class:`Malformed` is never partially
decoded: the caller gets nothing from it to act on. The padding bits of a bit read are
not checked (they carry no value).

Contract: :func:`check_reply` never raises for any ``bytes``; the request builders raise
``ValueError`` for an address, count or value Modbus cannot carry (a bug of the caller: the
read and write plans stay within the limits).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

READ_BITS_FCS = (1, 2)
READ_REGISTERS_FCS = (3, 4)
SINGLE_WRITE_FCS = (5, 6)
MULTI_WRITE_FCS = (15, 16)
FUNCTION_CODES = (*READ_BITS_FCS, *READ_REGISTERS_FCS, *SINGLE_WRITE_FCS, *MULTI_WRITE_FCS)
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_BITS = 1968
MAX_WRITE_REGISTERS = 123
COIL_ON = 0xFF00
COIL_OFF = 0x0000


@dataclass(frozen=True)
class Request:
    """One request: ``fc`` to ``unit_id`` at ``address``.

    ``count`` is the number of registers or bits read or written (1 for fc 5/6); ``values``
    what is written (registers, or 0/1 for bits), empty for reads. Build with the functions
    below, which check the limits.
    """

    unit_id: int
    fc: int
    address: int
    count: int
    values: tuple[int, ...] = ()

    def pdu(self) -> bytes:
        """The request PDU (function code and data), as drawn in the module docstring."""
        head = bytes((self.fc,)) + self.address.to_bytes(2, "big")
        if self.fc == 5:
            return head + (COIL_ON if self.values[0] else COIL_OFF).to_bytes(2, "big")
        if self.fc == 6:
            return head + self.values[0].to_bytes(2, "big")
        head += self.count.to_bytes(2, "big")
        if self.fc == 15:
            data = pack_bits(bool(v) for v in self.values)
            return head + bytes((len(data),)) + data
        if self.fc == 16:
            data = b"".join(v.to_bytes(2, "big") for v in self.values)
            return head + bytes((len(data),)) + data
        return head

    def describe(self) -> str:
        """``fc 3 unit 1 @100 x2``, for the log."""
        return f"fc {self.fc} unit {self.unit_id} @{self.address} x{self.count}"


@dataclass(frozen=True)
class Bits:
    """Reply to fc 1/2: exactly the ``count`` bits asked for."""

    bits: tuple[bool, ...]


@dataclass(frozen=True)
class Registers:
    """Reply to fc 3/4: exactly the ``count`` registers asked for (0..65535 each)."""

    registers: tuple[int, ...]


@dataclass(frozen=True)
class WriteEcho:
    """Reply to fc 5/6/15/16 whose echo matched the request: the write was acknowledged."""

    address: int
    value: int  # fc 5/6: the value echoed; fc 15/16: the count echoed


@dataclass(frozen=True)
class ExceptionReply:
    """A Modbus exception reply (``fc | 0x80``, one code byte) to the request's function."""

    fc: int
    code: int


@dataclass(frozen=True)
class Malformed:
    """Why a reply does not answer its request. ``length`` marks a PDU whose size disagrees
    with its own contents (the transport may name its framing, e.g. the MBAP length)."""

    reason: str
    length: bool = False


Reply = Bits | Registers | WriteEcho


def _check_unit(unit_id: int) -> None:
    if not 0 <= unit_id <= 255:
        raise ValueError(f"unit id {unit_id} outside 0..255")


def _check_span(address: int, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ValueError(f"count {count} outside 1..{limit}")
    if address < 0 or address + count > 0x10000:
        raise ValueError(f"address {address} x{count} outside 0..65535")


def read(fc: int, unit_id: int, address: int, count: int) -> Request:
    """A read of ``count`` bits (fc 1/2) or registers (fc 3/4) from ``address``."""
    if fc not in READ_BITS_FCS + READ_REGISTERS_FCS:
        raise ValueError(f"function code {fc} is not a read")
    _check_unit(unit_id)
    _check_span(address, count, MAX_READ_BITS if fc in READ_BITS_FCS else MAX_READ_REGISTERS)
    return Request(unit_id, fc, address, count)


def write_coil(unit_id: int, address: int, on: bool) -> Request:
    """fc 5: one coil."""
    _check_unit(unit_id)
    _check_span(address, 1, 1)
    return Request(unit_id, 5, address, 1, (1 if on else 0,))


def write_register(unit_id: int, address: int, value: int) -> Request:
    """fc 6: one holding register."""
    _check_unit(unit_id)
    _check_span(address, 1, 1)
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"register value {value} outside 0..65535")
    return Request(unit_id, 6, address, 1, (value,))


def write_coils(unit_id: int, address: int, bits: tuple[bool, ...]) -> Request:
    """fc 15: several coils from ``address``."""
    _check_unit(unit_id)
    _check_span(address, len(bits), MAX_WRITE_BITS)
    return Request(unit_id, 15, address, len(bits), tuple(1 if b else 0 for b in bits))


def write_registers(unit_id: int, address: int, values: tuple[int, ...]) -> Request:
    """fc 16: several holding registers from ``address``."""
    _check_unit(unit_id)
    _check_span(address, len(values), MAX_WRITE_REGISTERS)
    if any(not 0 <= v <= 0xFFFF for v in values):
        raise ValueError(f"register values {values} outside 0..65535")
    return Request(unit_id, 16, address, len(values), tuple(values))


def pack_bits(bits: Iterable[bool]) -> bytes:
    """Bits packed LSB first (the Modbus order), the last byte padded with zeros."""
    out = bytearray()
    for i, b in enumerate(bits):
        if i % 8 == 0:
            out.append(0)
        if b:
            out[-1] |= 1 << (i % 8)
    return bytes(out)


def expected_byte_count(req: Request) -> int:
    """The byte count a read reply to ``req`` must carry."""
    return (req.count + 7) // 8 if req.fc in READ_BITS_FCS else 2 * req.count


def check_reply(req: Request, pdu: bytes) -> Reply | ExceptionReply | Malformed:
    """The reply ``pdu`` decoded, if it answers ``req`` exactly; otherwise why not.

    Never raises (see the module docstring for every check).
    """
    if not pdu:
        return Malformed("empty PDU (no function code)", length=True)
    fc = pdu[0]
    if fc == req.fc | 0x80:
        if len(pdu) != 2:
            return Malformed(f"exception reply of {len(pdu)} bytes, expected 2", length=True)
        if pdu[1] == 0:
            return Malformed("exception code 0")
        return ExceptionReply(req.fc, pdu[1])
    if fc & 0x80:
        return Malformed(f"exception reply for function code {fc & 0x7F}, expected {req.fc}")
    if fc != req.fc:
        return Malformed(f"function code {fc}, expected {req.fc}")
    if req.fc in READ_BITS_FCS or req.fc in READ_REGISTERS_FCS:
        return _check_read(req, pdu)
    return _check_echo(req, pdu)


@functools.cache
def _registers(count: int) -> struct.Struct:
    """Big-endian unsigned 16-bit registers, ``count`` of them (one C call per reply)."""
    return struct.Struct(f">{count}H")


def _check_read(req: Request, pdu: bytes) -> Reply | Malformed:
    if len(pdu) < 2:
        return Malformed("reply without a byte count", length=True)
    n, want = pdu[1], expected_byte_count(req)
    what = "bits" if req.fc in READ_BITS_FCS else "registers"
    if n != want:
        return Malformed(f"byte count {n}, expected {want} for {req.count} {what}")
    if len(pdu) != 2 + n:
        return Malformed(f"{len(pdu) - 2} data bytes after byte count {n}", length=True)
    data = pdu[2:]
    if req.fc in READ_BITS_FCS:
        return Bits(tuple(bool(data[i >> 3] >> (i & 7) & 1) for i in range(req.count)))
    return Registers(_registers(n // 2).unpack(data))


def _check_echo(req: Request, pdu: bytes) -> WriteEcho | Malformed:
    if len(pdu) != 5:
        return Malformed(f"write reply of {len(pdu)} bytes, expected 5", length=True)
    address = int.from_bytes(pdu[1:3], "big")
    second = int.from_bytes(pdu[3:5], "big")
    if address != req.address:
        return Malformed(f"write echo address {address}, expected {req.address}")
    if req.fc in MULTI_WRITE_FCS:
        if second != req.count:
            return Malformed(f"write echo count {second}, expected {req.count}")
        return WriteEcho(address, second)
    sent = int.from_bytes(req.pdu()[3:5], "big")
    if second != sent:
        return Malformed(f"write echo value 0x{second:04X}, expected 0x{sent:04X}")
    return WriteEcho(address, second)
