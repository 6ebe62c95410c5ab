"""Just enough MQTT 5 for a subscriber that only listens: packets to send, packets read.
Sans-IO (bytes in, packets out); the fleet benchmark's simulated agents run a thousand of
these on two cores, where paho-mqtt's per-message cost (~0.4 ms in Python, measured: at
1000 agents x 10 Hz two worker processes fell seconds behind) could not keep up.

Packets (MQTT 5.0, OASIS standard; all integers big-endian, VBI = variable byte integer)::

    fixed header   byte 0: type << 4 | flags;  remaining length: VBI (1..4 bytes)
    CONNECT  0x10  "\\0\\4MQTT" 5 flags(0x02 clean start) keepalive:u16 props:VBI=0
                   client id: u16 length + UTF-8   (no user name: the TLS certificate's CN)
    CONNACK  0x20  ack flags, reason code, properties
    SUBSCRIBE 0x82 packet id:u16 props:VBI=0 then per filter: u16 length + UTF-8, options
                   (the maximum QoS)
    SUBACK   0x90  packet id:u16 props:VBI + properties, one reason code per filter
    PUBLISH  0x3_  flags dup/qos/retain; topic: u16 + UTF-8; packet id:u16 if qos > 0;
                   props:VBI + properties; the payload is the rest
    PINGREQ 0xC0 00, PINGRESP 0xD0 00, DISCONNECT 0xE0 00 (reason 0: normal)

:class:`Reader` raises :class:`MqttError` for a malformed stream (a remaining length over
4 bytes, a packet larger than ``max_packet``); nothing else is checked: the peer is the
real mosquitto under test, and what it sends is counted by the caller.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CONNACK, PUBLISH, SUBACK, PINGRESP, DISCONNECT = 0x2, 0x3, 0x9, 0xD, 0xE
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
MAX_PACKET = 131072


class MqttError(ValueError):
    """The byte stream is not MQTT (or a packet is larger than allowed)."""


class Packet(NamedTuple):
    """One control packet: its type (high nibble), flags (low nibble) and body (a tuple:
    made ten thousand times a second, it must be cheap)."""

    kind: int
    flags: int
    body: bytes


def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _vbi(len(body)) + body


def connect_packet(client_id: str, keepalive_s: int) -> bytes:
    """CONNECT with clean start, no will, no user name (the certificate names us)."""
    return _packet(0x10, b"\x00\x04MQTT\x05\x02" + struct.pack("!H", keepalive_s) + b"\x00"
                   + _text(client_id))


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to each ``(filter, maximum qos)``."""
    return _packet(0x82, struct.pack("!H", packet_id) + b"\x00"
                   + b"".join(_text(f) + bytes([qos]) for f, qos in filters))


def _read_vbi(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after) of a VBI at ``pos``; None if ``data`` ends inside it."""
    value = shift = 0
    for i in range(4):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttError("a variable byte integer longer than 4 bytes")


def suback_codes(body: bytes) -> list[int]:
    """The reason codes of a SUBACK's body (< 0x80: granted QoS)."""
    got = _read_vbi(body, 2)
    if got is None:
        raise MqttError("a SUBACK shorter than its header")
    props_len, pos = got
    return list(body[pos + props_len:])


def publish_parts(packet: Packet) -> tuple[str, bytes]:
    """(topic, payload) of a PUBLISH."""
    body = packet.body
    (n,) = struct.unpack_from("!H", body, 0)
    topic = body[2:2 + n].decode()
    pos = 2 + n + (2 if packet.flags & 0x06 else 0)
    got = _read_vbi(body, pos)
    if got is None:
        raise MqttError("a PUBLISH shorter than its header")
    props_len, pos = got
    return topic, body[pos + props_len:]


class Reader:
    """Bytes in (:meth:`feed`), whole packets out."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    def single_publish(self, data: bytes) -> tuple[str, bytes] | None:
        """(topic, payload) when nothing is buffered and ``data`` is exactly one QoS 0
        PUBLISH (what a fan-out subscriber reads nearly every time); None otherwise, and
        then :meth:`feed` takes ``data``. Nothing is consumed either way."""
        if self._buf or len(data) < 2 or data[0] != 0x30:
            return None
        got = _read_vbi(data, 1)
        if got is None or got[1] + got[0] != len(data):
            return None
        return publish_parts(Packet(PUBLISH, 0, data[got[1]:]))

    def feed(self, data: bytes) -> list[Packet]:
        """Append ``data``; every packet now complete, in order (a partial one waits)."""
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        out: list[Packet] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            got = _read_vbi(buf, pos + 1)
            if got is None:
                break
            length, start = got
            if length > self.max_packet:
                raise MqttError(f"a packet of {length} bytes, more than {self.max_packet}")
            if start + length > end:
                break
            first = buf[pos]
            out.append(Packet(first >> 4, first & 0x0F, bytes(buf[start:start + length])))
            pos = start + length
        self._buf = bytearray(buf[pos:]) if pos < end else bytearray()
        return out
