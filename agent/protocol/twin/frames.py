"""Sans-IO framing of the twin link: length-prefixed msgpack maps.

One frame on the wire::

    0        1        2        3        4                        4+N
    +--------+--------+--------+--------+--------  ...  ---------+
    |   N: uint32, big-endian (body length) | body: one msgpack map |
    +--------+--------+--------+--------+--------  ...  ---------+

* ``1 <= N <= max_frame`` (default 64 KiB, a parameter: config bundles may need ~1 MiB).
  The length is checked as soon as the 4 header bytes are in, BEFORE any body byte is
  buffered: a peer's length field never drives an allocation.
* The body is exactly one msgpack object (no trailing bytes), decoded with strict limits
  (string/bin/array/map lengths capped by ``max_frame``, no ext types, no timestamps,
  map keys str/bytes only, strings must be valid UTF-8).
* The object must be a map whose keys are all strings and whose ``"t"`` is a non-empty
  string: the message type (see ``agent.model.messages``).

Decoder state (``FrameDecoder``)::

    READY ──feed()── bytes appended to the buffer; every complete frame is decoded
      │               and returned (feed_bodies(): only split off, not decoded); a
      │               partial header or body stays buffered
      └── any violation ──▶ FAILED (ProtocolError raised; every later feed() raises too)

A failed decoder is dead for good: the connection that fed it must be closed. Frames
decoded in the same ``feed()`` call before the bad one are not lost: they travel on the
raised ``FrameError.decoded``.

Nothing here raises anything but ``ProtocolError`` (or its subclass ``FrameError``) for
bad input; any other exception out of ``feed()`` is a bug.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from typing import Any, NoReturn

import msgpack

from agent.model.errors import FrameError, ProtocolError

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 * 1024
ABSOLUTE_MAX_FRAME = 16 * 1024 * 1024  # a configuration above this is a bug, not a policy

Frame = dict[str, Any]


def _check_max_frame(max_frame: int) -> int:
    if isinstance(max_frame, bool) or not isinstance(max_frame, int):
        raise TypeError(f"max_frame must be an int, not {type(max_frame).__name__}")
    if not 1 <= max_frame <= ABSOLUTE_MAX_FRAME:
        raise ValueError(f"max_frame must be in 1..{ABSOLUTE_MAX_FRAME}, got {max_frame}")
    return max_frame


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ProtocolError(f"msgpack ext type {code} is not allowed")


def decode_body(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decode one frame body (without its length header) into a message map.

    Raises ProtocolError if the body is not exactly one msgpack map with string keys and
    a non-empty string ``"t"``.
    """
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            timestamp=0,
            ext_hook=_refuse_ext,
            max_str_len=max_frame,
            max_bin_len=max_frame,
            max_array_len=max_frame,
            max_map_len=max_frame,
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ...)
        raise ProtocolError(f"bad msgpack body: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame body must be a msgpack map, got {type(obj).__name__}")
    for key in obj:
        if not isinstance(key, str):
            raise ProtocolError(f"map keys must be strings, got {type(key).__name__}")
    mtype = obj.get("t")
    if not isinstance(mtype, str) or not mtype:
        raise ProtocolError("field 't' (message type) missing or not a non-empty string")
    return obj


def encode(msg: Mapping[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame (header + msgpack body) carrying ``msg``.

    Raises ProtocolError if ``msg`` has no string ``"t"`` or is larger than ``max_frame``
    (both are bugs of the sender, refused before anything reaches the wire); TypeError if
    a value is not msgpack-serialisable.
    """
    _check_max_frame(max_frame)
    mtype = msg.get("t")
    if not isinstance(mtype, str) or not mtype:
        raise ProtocolError("field 't' (message type) missing or not a non-empty string")
    body: bytes = msgpack.packb(dict(msg), use_bin_type=True, datetime=False)
    if len(body) > max_frame:
        raise ProtocolError(f"message {mtype!r} is {len(body)} bytes, over max_frame {max_frame}")
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: ``feed(bytes) -> list of message maps``. See the module doc.

    :meth:`feed_bodies` is the framing half alone (no msgpack decoding): bodies out, to be
    decoded later with :func:`decode_body` (the twin link routes frames by a cheap look
    at the raw body first; PROTOCOL.md §6.1).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = _check_max_frame(max_frame)
        self._buf = bytearray()  # the start of an incomplete frame (header checked if in)
        self._failed: str | None = None

    @property
    def failed(self) -> bool:
        """True once a violation was seen; the decoder then refuses all input."""
        return self._failed is not None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (never more than 4 + max_frame - 1)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Append ``data``; return every frame completed by it, in order.

        Raises FrameError (a ProtocolError) on the first violation; frames completed
        before it are on the exception's ``decoded``. The decoder is then FAILED.
        """
        try:
            bodies, error = self.feed_bodies(data), None
        except FrameError as exc:
            bodies, error = exc.bodies, exc
        out: list[Frame] = []
        for body in bodies:
            try:
                out.append(decode_body(body, self.max_frame))
            except ProtocolError as exc:
                self._fail(str(exc), out)
        if error is not None:
            raise FrameError(str(error), out)
        return out

    def feed_bodies(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the body of every frame completed by it, undecoded.

        Only the framing is checked (the length, from the 4 header bytes alone, before any
        body byte is buffered). FrameError on a violation, with the complete bodies before
        it on the exception's ``bodies``; the decoder is then FAILED.
        """
        if self._failed is not None:
            raise FrameError(f"decoder already failed: {self._failed}")
        # a partial frame grows in place (amortised: a trickling peer costs linear time);
        # otherwise the chunk itself is split without a copy of it
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        bodies: list[bytes] = []
        pos, end, size, unpack = 0, len(buf), HEADER.size, HEADER.unpack_from
        while end - pos >= size:
            (length,) = unpack(buf, pos)
            if length == 0:
                self._fail("zero-length frame", bodies=bodies)
            if length > self.max_frame:
                self._fail(f"frame length {length} over max_frame {self.max_frame}",
                           bodies=bodies)
            if end - pos - size < length:
                break
            bodies.append(bytes(buf[pos + size : pos + size + length]))
            pos += size + length
        if buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])
        return bodies

    def _fail(self, reason: str, decoded: list[Frame] | None = None,
              bodies: list[bytes] | None = None) -> NoReturn:
        self._failed = reason
        self._buf = bytearray()
        raise FrameError(reason, decoded, bodies)
