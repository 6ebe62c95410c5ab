"""Modbus ADUs: the request frames on the wire and the scan of what comes back (pure; no I/O).

Frame layouts (numbers big-endian, except the RTU CRC)::

    Modbus TCP (MBAP)   [ tid:2 ][ pid=0:2 ][ length:2 ][ unit:1 ][ PDU ... ]
                        length = 1 + len(PDU), so 2..254 (a PDU is at most 253 bytes)
    Modbus RTU          [ unit:1 ][ PDU ... ][ crc16:2, low byte first ]
                        CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) over unit + PDU

The PDUs are :mod:`agent.protocol.modbus.pdu`'s. A reply is scanned from the bytes received so far
(:func:`scan_tcp`, :func:`scan_rtu`), which answers one of:

- :class:`NeedMore` -- not a whole frame yet (``need`` is its total size once known);
- :class:`Answer` -- a whole frame that answers the request, decoded (``used`` bytes);
- :class:`Stale` -- TCP only: a whole, well-framed reply to an earlier request that timed
  out (its transaction id is in ``late``); the caller drops its ``used`` bytes unread and
  scans on. RTU has no transaction id: a late reply is kept off the line by waiting for
  silence instead (:mod:`agent.io.modbus.session`);
- :class:`Bad` -- the bytes cannot be the reply: the reason names the first thing that is
  wrong, checked as soon as the bytes that carry it are in (TCP: protocol id, MBAP length,
  transaction id, unit id, then the PDU; RTU: function code, CRC, unit id, then the PDU).

Contract: the scanners never raise for any bytes, and never return an :class:`Answer` that
:func:`agent.protocol.modbus.pdu.check_reply` did not accept for this very request.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from agent.protocol.modbus.pdu import (
    MULTI_WRITE_FCS,
    READ_BITS_FCS,
    READ_REGISTERS_FCS,
    SINGLE_WRITE_FCS,
    ExceptionReply,
    Malformed,
    Reply,
    Request,
    check_reply,
)

MBAP_HEADER = 7  # tid, pid, length, unit
MAX_MBAP_LENGTH = 254
MAX_TID = 65000  # the client's ids are 1..65000; 65535 is the native watchdog's frame
RTU_MIN_REPLY = 5  # unit, fc, one byte, crc (an exception reply)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of ``data`` (sent low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def tcp_frame(req: Request, tid: int) -> bytes:
    """The MBAP frame of ``req`` with transaction id ``tid`` (0..65535)."""
    pdu = req.pdu()
    return (
        tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big")
        + bytes((req.unit_id,)) + pdu
    )  # fmt: skip


def rtu_frame(req: Request) -> bytes:
    """The RTU frame of ``req``: unit, PDU, CRC."""
    body = bytes((req.unit_id,)) + req.pdu()
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True)
class NeedMore:
    have: int
    need: int | None  # the frame's total size, once its header says


@dataclass(frozen=True)
class Answer:
    reply: Reply | ExceptionReply
    used: int


@dataclass(frozen=True)
class Stale:
    tid: int
    used: int


@dataclass(frozen=True)
class Bad:
    reason: str


Scan = NeedMore | Answer | Stale | Bad


def _decoded(
    req: Request, pdu: bytes, used: int, framing: str
) -> Answer | Bad:
    got = check_reply(req, pdu)
    if isinstance(got, Malformed):
        return Bad(f"{framing}: {got.reason}" if got.length and framing else got.reason)
    return Answer(got, used)


def scan_tcp(
    buf: bytes | bytearray, req: Request, tid: int, late: Container[int] = ()
) -> Scan:
    """Scan ``buf`` for the MBAP reply to ``req`` sent with ``tid`` (see the module docstring).

    ``late`` holds the transaction ids of earlier requests that timed out on this connection.
    """
    n = len(buf)
    if n >= 4 and (pid := int.from_bytes(buf[2:4], "big")) != 0:
        return Bad(f"protocol id {pid}, expected 0")
    if n < 6:
        return NeedMore(n, None)
    length = int.from_bytes(buf[4:6], "big")
    if length < 2:
        return Bad(f"MBAP length {length}, too short for a unit id and a function code")
    if length > MAX_MBAP_LENGTH:
        return Bad(f"MBAP length {length}, more than the {MAX_MBAP_LENGTH} a frame can carry")
    total = 6 + length
    got_tid = int.from_bytes(buf[0:2], "big")
    if got_tid != tid and got_tid not in late:
        return Bad(f"transaction id {got_tid}, expected {tid}")
    if n < total:
        return NeedMore(n, total)
    if got_tid != tid:
        return Stale(got_tid, total)
    if (unit := buf[6]) != req.unit_id:
        return Bad(f"unit id {unit}, expected {req.unit_id}")
    return _decoded(req, bytes(buf[MBAP_HEADER:total]), total, f"MBAP length {length}")


def rtu_reply_size(fc: int, byte_count: int | None) -> int | None:
    """Total size of an RTU reply with function code ``fc`` (None: not a reply fc, or the
    byte count is needed and not in yet -- ``byte_count`` None)."""
    if fc & 0x80:
        return RTU_MIN_REPLY
    if fc in READ_BITS_FCS or fc in READ_REGISTERS_FCS:
        return None if byte_count is None else 5 + byte_count
    if fc in SINGLE_WRITE_FCS or fc in MULTI_WRITE_FCS:
        return 8
    return None


def scan_rtu(buf: bytes | bytearray, req: Request) -> Scan:
    """Scan ``buf`` for the RTU reply to ``req`` (see the module docstring)."""
    n = len(buf)
    if n < 2:
        return NeedMore(n, None)
    fc = buf[1]
    if rtu_reply_size(fc, 0) is None:
        return Bad(f"function code {fc}, expected {req.fc}")
    total = rtu_reply_size(fc, buf[2] if n >= 3 else None)
    if total is None or n < total:
        return NeedMore(n, total)
    frame = bytes(buf[:total])
    sent, computed = int.from_bytes(frame[-2:], "little"), crc16(frame[:-2])
    if sent != computed:
        return Bad(f"CRC 0x{sent:04X}, computed 0x{computed:04X}")
    if frame[0] != req.unit_id:
        return Bad(f"unit id {frame[0]}, expected {req.unit_id}")
    return _decoded(req, frame[1:-2], total, "")
