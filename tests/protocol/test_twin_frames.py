"""Framing of the twin link: split-invariance, caps before buffering, only ProtocolError."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.errors import FrameError, ProtocolError
from agent.protocol.twin.frames import DEFAULT_MAX_FRAME, FrameDecoder, decode_body, encode

pytestmark = pytest.mark.timeout(60)

HDR = struct.Struct(">I")

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)
messages = st.builds(
    lambda t, rest: {**rest, "t": t},
    st.text(min_size=1, max_size=10),
    st.dictionaries(st.text(max_size=8), values, max_size=5),
)


def _frame(body: bytes) -> bytes:
    return HDR.pack(len(body)) + body


@settings(max_examples=60, deadline=None)
@given(st.lists(messages, max_size=6), st.data())
def test_any_split_decodes_the_same(msgs: list[dict[str, Any]], data: st.DataObject) -> None:
    stream = b"".join(encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = FrameDecoder()
    out: list[dict[str, Any]] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += dec.feed(stream[prev:cut])
        prev = cut
    assert out == msgs
    assert dec.buffered == 0


def test_byte_by_byte() -> None:
    msgs = [{"t": "heartbeat", "epoch": 1, "seq": i, "healthy": True} for i in range(3)]
    dec = FrameDecoder()
    out = [m for b in b"".join(map(encode, msgs)) for m in dec.feed(bytes([b]))]
    assert out == msgs


@pytest.mark.parametrize("max_frame", [16, 1000, DEFAULT_MAX_FRAME, 1 << 20])
def test_oversize_length_rejected_at_the_header(max_frame: int) -> None:
    dec = FrameDecoder(max_frame)
    dec.feed(HDR.pack(max_frame + 1)[:3])
    with pytest.raises(ProtocolError, match="over max_frame"):
        dec.feed(HDR.pack(max_frame + 1)[3:])  # only the header: no body needed to refuse
    assert dec.failed
    assert dec.buffered == 0


def test_huge_length_field_never_buffers() -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(b"\xff\xff\xff\xff" + b"\x00" * 100)
    assert dec.buffered == 0


def test_frame_at_the_cap_accepted_and_one_more_byte_refused() -> None:
    big = {"t": "config", "blob": b"x" * 900_000}
    frame = encode(big, max_frame=1 << 20)
    assert FrameDecoder(1 << 20).feed(frame) == [big]
    with pytest.raises(ProtocolError):
        FrameDecoder(DEFAULT_MAX_FRAME).feed(frame)
    body_len = len(frame) - 4
    assert FrameDecoder(body_len).feed(frame) == [big]
    with pytest.raises(ProtocolError):
        FrameDecoder(body_len - 1).feed(frame)


def test_encode_refuses_what_the_peer_would_refuse() -> None:
    with pytest.raises(ProtocolError, match="over max_frame"):
        encode({"t": "x", "blob": b"y" * 100}, max_frame=50)
    with pytest.raises(ProtocolError, match="'t'"):
        encode({"seq": 1})
    with pytest.raises(ProtocolError, match="'t'"):
        encode({"t": ""})


BAD_BODIES = {
    "zero length": b"",
    "bad msgpack": b"\xc1",
    "truncated map": b"\x82\xa1t",
    "trailing bytes": msgpack.packb({"t": "a"}) + b"\x00",
    "not a map": msgpack.packb([1, 2]),
    "no t": msgpack.packb({"seq": 1}),
    "t not a string": msgpack.packb({"t": 5}),
    "empty t": msgpack.packb({"t": ""}),
    "int key": msgpack.packb({"t": "a", 1: 2}),
    "bytes key": msgpack.packb({"t": "a", b"k": 2}, use_bin_type=True),
    "ext type": msgpack.packb({"t": "a", "x": msgpack.ExtType(5, b"abc")}),
    "timestamp": msgpack.packb({"t": "a", "x": msgpack.Timestamp(1, 0)}),
    "invalid utf-8": b"\x81\xa1t\xa2\xff\xfe",
    "array claims 2**31 items": b"\x81\xa1t\xdd\x80\x00\x00\x00",
    "str claims 2**31 bytes": b"\x81\xa1t\xdb\x80\x00\x00\x00abc",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_is_a_protocol_error(body: bytes) -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(_frame(body))
    assert dec.failed
    with pytest.raises(ProtocolError, match="already failed"):
        dec.feed(encode({"t": "a"}))


def test_good_frames_before_a_bad_one_are_not_lost() -> None:
    good = [{"t": "a", "n": 1}, {"t": "b", "n": 2}]
    dec = FrameDecoder()
    with pytest.raises(FrameError) as info:
        dec.feed(encode(good[0]) + encode(good[1]) + _frame(b"\xc1") + encode({"t": "c"}))
    assert info.value.decoded == good


def test_decode_body_limits_follow_the_cap() -> None:
    body = msgpack.packb({"t": "a", "s": "x" * 100})
    assert decode_body(body, max_frame=200)["s"] == "x" * 100
    with pytest.raises(ProtocolError):
        decode_body(body, max_frame=50)


def test_max_frame_must_be_sane() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(0)
    with pytest.raises(ValueError):
        FrameDecoder(1 << 30)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_garbage_raises_nothing_but_protocol_error(chunks: list[bytes]) -> None:
    dec = FrameDecoder(1024)
    for chunk in chunks:
        try:
            for msg in dec.feed(chunk):
                assert isinstance(msg, dict) and isinstance(msg["t"], str)
        except ProtocolError:
            return


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_corrupted_stream_raises_nothing_but_protocol_error(
    msgs: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(encode(m) for m in msgs))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    dec = FrameDecoder(4096)
    try:
        out = dec.feed(bytes(stream))
    except ProtocolError:
        return
    assert all(isinstance(m, dict) and isinstance(m["t"], str) for m in out)
