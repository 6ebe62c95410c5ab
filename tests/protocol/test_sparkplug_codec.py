"""The Sparkplug B payload codec against bytes derived by hand from the protobuf wire format.

The expected bytes are written out here (or built by this file's own few-line wire writer,
``_w``), never produced by the encoder under test. Wire format: a field is a varint key
``(field_number << 3) | wire_type`` (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit)
and its value; varints are little-endian groups of 7 bits, high bit set on all but the
last. The payloads come from the specification's examples (6_Payloads), which it gives
as JSON.
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.internal import api_implementation
from hypothesis import given
from hypothesis import strategies as st

from agent.model.errors import ProtocolError, SparkplugError
from agent.protocol.sparkplug import (
    DataType,
    Metric,
    Payload,
    Property,
    decode_payload,
    encode_payload,
)
from agent.protocol.sparkplug.codec import from_wire_int
from agent.protocol.sparkplug.metrics import Value

pytestmark = pytest.mark.timeout(60)

# 1486144502122 in 7-bit groups, low first: 0x6a|0x80, 0x72|0x80, ... (the spec's stamps)
TS = bytes.fromhex("eaf2f5a8a02b")  # varint 1486144502122
TS_METRIC = bytes.fromhex("a2828395862b")  # varint 1479123452194


# --- this file's own wire writer (independent of protobuf) ------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _w(field: int, value: int | bytes | str, wire: int | None = None) -> bytes:
    """One field: an int as a varint, bytes/str length-delimited (``wire`` overrides)."""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return _varint(field << 3 | 2) + _varint(len(value)) + value
    return _varint(field << 3 | (wire or 0)) + _varint(value)


def _metric(*fields: bytes) -> bytes:
    return _w(2, b"".join(fields))  # Payload.metrics = 2


def test_the_wire_writer_matches_the_protobuf_documentation() -> None:
    # protobuf.dev "Encoding": 150 is 96 01; field 1 = 150 is 08 96 01
    assert _varint(150) == b"\x96\x01" and _w(1, 150) == b"\x08\x96\x01"
    assert _varint(1486144502122) == TS and _varint(1479123452194) == TS_METRIC


# --- the specification's examples ---------------------------------------------------------

# 6_Payloads, "Payload Metric Naming Convention": a simple payload with values
SIMPLE = (
    b"\x08" + TS                                   # timestamp = 1486144502122
    + b"\x12\x1c"                                  # metrics, 28 bytes:
    + b"\x0a\x09My Metric"                         #   name
    + b"\x10\x01"                                  #   alias = 1
    + b"\x18" + TS_METRIC                          #   timestamp = 1479123452194
    + b"\x20\x0c"                                  #   datatype = 12 (String)
    + b"\x7a\x04Test"                              #   string_value (15 << 3 | 2 = 0x7a)
    + b"\x18\x02"                                  # seq = 2
)
SIMPLE_PAYLOAD = Payload(
    timestamp_ms=1486144502122, seq=2,
    metrics=(Metric("My Metric", 1, DataType.String, "Test", timestamp_ms=1479123452194),),
)

# 6_Payloads, "NDEATH": the bdSeq metric, UInt64 0, no seq
NDEATH = (
    b"\x08" + TS
    + b"\x12\x12"                                  # metrics, 18 bytes:
    + b"\x0a\x05bdSeq"
    + b"\x18" + TS
    + b"\x20\x08"                                  #   datatype = 8 (UInt64)
    + b"\x58\x00"                                  #   long_value (11 << 3 | 0 = 0x58) = 0
)
NDEATH_PAYLOAD = Payload(
    timestamp_ms=1486144502122, seq=None,
    metrics=(Metric("bdSeq", None, DataType.UInt64, 0, timestamp_ms=1486144502122),),
)

# 6_Payloads, "NBIRTH": the Supply Voltage metric, Float 12.1 (0x4141999A little-endian)
FLOAT_METRIC = (
    b"\x08" + TS
    + b"\x12\x1e"                                  # metrics, 30 bytes:
    + b"\x0a\x0eSupply Voltage"
    + b"\x18" + TS
    + b"\x20\x09"                                  #   datatype = 9 (Float)
    + b"\x65\x9a\x99\x41\x41"                      #   float_value (12 << 3 | 5 = 0x65)
    + b"\x18\x00"                                  # seq = 0
)


@pytest.mark.parametrize(("wire", "payload"), [(SIMPLE, SIMPLE_PAYLOAD),
                                               (NDEATH, NDEATH_PAYLOAD)],
                         ids=["simple", "ndeath"])
def test_the_spec_examples_encode_to_the_hand_derived_bytes(wire: bytes,
                                                            payload: Payload) -> None:
    assert encode_payload(payload) == wire
    assert decode_payload(wire) == payload


def test_a_float_travels_as_32_bits() -> None:
    payload = decode_payload(FLOAT_METRIC)
    voltage = payload.metric("Supply Voltage")
    assert voltage.datatype is DataType.Float
    assert voltage.value == struct.unpack("<f", struct.pack("<f", 12.1))[0] != 12.1
    assert encode_payload(payload) == FLOAT_METRIC
    metric = Metric("Supply Voltage", None, DataType.Float, 12.1, timestamp_ms=1486144502122)
    assert encode_payload(Payload(1486144502122, 0, (metric,))) == FLOAT_METRIC


def test_properties_travel_as_keys_and_values() -> None:
    metric = Metric("signals/t", 7, DataType.Double, 21.5, timestamp_ms=5,
                    properties=(Property("engUnit", DataType.String, "C"),
                                Property("engHigh", DataType.Double, 120.0)))
    properties = _w(9, _w(1, "engUnit") + _w(1, "engHigh")
                    + _w(2, _w(1, 12) + _w(8, "C"))
                    + _w(2, _w(1, 10) + b"\x31" + struct.pack("<d", 120.0)))
    wire = (_w(1, 9) + _metric(_w(1, "signals/t") + _w(2, 7) + _w(3, 5) + _w(4, 10)
                               + properties + b"\x69" + struct.pack("<d", 21.5))
            + _w(3, 4))
    payload = Payload(9, 4, (metric,))
    assert encode_payload(payload) == wire
    assert decode_payload(wire) == payload


# Payloads another implementation made (Go protobuf over the spec's schema): the static
# vectors of united-manufacturing-hub/benthos-umh, sparkplug_plugin/test_vectors.go
# (Apache-2.0): NBIRTH_V1, NDATA_V1, NDEATH_V1, base64 there, hex here.
OTHER_IMPLEMENTATION = {
    "nbirth": ("08d2e283b9fa32120d0a056264536571100120085858121c0a144e6f646520436f6e74726f6c2f"
               "526562697274681002200b7000121a0a0b54656d70657261747572651064200a6900000000008035"
               "401800"),
    "ndata": "08d2e283b9fa32120d1064200a6900000000008036401801",
    "ndeath": "08d2e283b9fa32120d0a0562645365711000200858001800",
}


def test_another_implementations_payloads_decode_and_encode_to_the_same_bytes() -> None:
    birth, data, death = (bytes.fromhex(OTHER_IMPLEMENTATION[k])
                          for k in ("nbirth", "ndata", "ndeath"))
    decoded = decode_payload(birth)
    assert (decoded.timestamp_ms, decoded.seq) == (1750855643474, 0)
    assert [(m.name, m.alias, m.datatype, m.value) for m in decoded.metrics] == [
        ("bdSeq", 1, DataType.UInt64, 88), ("Node Control/Rebirth", 2, DataType.Boolean, False),
        ("Temperature", 100, DataType.Double, 21.5)]
    assert decode_payload(data).metrics == (Metric(None, 100, DataType.Double, 22.5),)
    assert decode_payload(death).metric("bdSeq").value == 0
    for wire in (birth, data, death):
        assert encode_payload(decode_payload(wire)) == wire


# --- the signed-int rule -----------------------------------------------------------------
# 6_Payloads "Datatype Details": Int8/Int16/Int32 are signed, "Google Protocol Buffer Type:
# uint32"; Int64 signed in uint64. The spec does not spell the conversion out (its issue
# #453, tahu issue #71); the reference Python encoder (tahu python/core/sparkplug_b.py)
# adds 2**8 / 2**16 / 2**32 / 2**64 to a negative value: two's complement of the type's own
# width. tahu's Java encoder sign-extends to 32 bits instead (Int8 -1 = 0xFFFFFFFF), which
# the decoder accepts too.

@pytest.mark.parametrize(
    ("datatype", "value", "field", "raw"),
    [
        (DataType.Int8, -1, 10, 0xFF),
        (DataType.Int8, -128, 10, 0x80),
        (DataType.Int8, 127, 10, 0x7F),
        (DataType.Int16, -1, 10, 0xFFFF),
        (DataType.Int16, -32768, 10, 0x8000),
        (DataType.Int32, -1, 10, 0xFFFFFFFF),
        (DataType.Int32, -(2**31), 10, 0x80000000),
        (DataType.Int32, 2**31 - 1, 10, 0x7FFFFFFF),
        (DataType.Int64, -1, 11, 2**64 - 1),
        (DataType.Int64, -(2**63), 11, 2**63),
        (DataType.UInt8, 255, 10, 255),
        (DataType.UInt16, 65535, 10, 65535),
        (DataType.UInt32, 2**32 - 1, 10, 2**32 - 1),
        (DataType.UInt64, 2**64 - 1, 11, 2**64 - 1),
        (DataType.DateTime, 1486144502122, 11, 1486144502122),
    ],
)
def test_integers_travel_in_the_specs_field(datatype: DataType, value: int, field: int,
                                            raw: int) -> None:
    wire = _w(1, 1) + _metric(_w(2, 3) + _w(4, datatype) + _w(field, raw)) + _w(3, 1)
    payload = Payload(1, 1, (Metric(None, 3, datatype, value),))
    assert encode_payload(payload) == wire
    assert decode_payload(wire) == payload


@pytest.mark.parametrize(("datatype", "raw", "value"), [
    (DataType.Int8, 0xFFFFFFFF, -1),
    (DataType.Int8, 0xFFFFFF80, -128),
    (DataType.Int16, 0xFFFF8000, -32768),
    (DataType.Int16, 0xFFFFFFFE, -2),
])
def test_a_sign_extended_small_int_decodes(datatype: DataType, raw: int, value: int) -> None:
    wire = _metric(_w(2, 1) + _w(4, datatype) + _w(10, raw))
    assert decode_payload(wire).metrics[0].value == value


@pytest.mark.parametrize(("datatype", "raw"), [
    (DataType.Int8, 0x100),           # above 8 bits and not sign-extended
    (DataType.Int8, 0xFFFFFF7F),      # sign-extended -129
    (DataType.Int16, 0x10000),
    (DataType.UInt8, 256),
    (DataType.UInt16, 65536),
])
def test_an_int_outside_its_width_is_refused(datatype: DataType, raw: int) -> None:
    wire = _metric(_w(2, 1) + _w(4, datatype) + _w(10, raw))
    with pytest.raises(SparkplugError, match=datatype.name):
        decode_payload(wire)


def test_from_wire_int_is_the_inverse_of_twos_complement() -> None:
    assert from_wire_int(DataType.Int8, 0xFE, "int_value") == -2
    assert from_wire_int(DataType.Int64, 2**63 - 1, "long_value") == 2**63 - 1


@pytest.mark.parametrize(("datatype", "value"), [
    (DataType.Int8, 128), (DataType.Int8, -129), (DataType.Int16, 2**15),
    (DataType.Int32, 2**31), (DataType.Int32, -(2**31) - 1), (DataType.Int64, 2**63),
    (DataType.UInt8, -1), (DataType.UInt8, 256), (DataType.UInt32, 2**32),
    (DataType.UInt32, -1), (DataType.UInt64, 2**64), (DataType.UInt64, -1),
    (DataType.Int32, True), (DataType.Int32, 1.0), (DataType.Boolean, 1),
    (DataType.String, b"x"), (DataType.Bytes, "x"), (DataType.Float, 1e39),
    (DataType.Double, "1"),
])
def test_a_value_outside_its_type_cannot_be_built(datatype: DataType, value: object) -> None:
    with pytest.raises(ValueError, match=datatype.name):
        Metric("m", 1, datatype, value)  # type: ignore[arg-type]


# UInt32 in int_value (the spec); tahu's Java encoder once used long_value (eclipse-sparkplug
# issue #102, fixed by tahu PR #202): the decoder takes that too while it fits 32 bits.
def test_a_uint32_in_long_value_decodes_while_it_fits() -> None:
    wire = _metric(_w(2, 1) + _w(4, DataType.UInt32) + _w(11, 2**32 - 1))
    assert decode_payload(wire).metrics[0].value == 2**32 - 1
    with pytest.raises(SparkplugError, match="UInt32"):
        decode_payload(_metric(_w(2, 1) + _w(4, DataType.UInt32) + _w(11, 2**32)))


def test_null_and_flags_travel() -> None:
    metric = Metric(None, 4, DataType.Double, None, timestamp_ms=2, is_historical=True,
                    is_transient=True)
    wire = _metric(_w(2, 4) + _w(3, 2) + _w(4, 10) + _w(5, 1) + _w(6, 1) + _w(7, 1))
    assert encode_payload(Payload(None, None, (metric,))) == wire
    assert decode_payload(wire).metrics == (metric,)


def test_a_metric_without_a_datatype_keeps_the_raw_value() -> None:
    # NDATA/NCMD may leave the datatype out (it is required in BIRTH only:
    # tck-id-payloads-metric-datatype-req); the BIRTH by alias says what it is
    metric = decode_payload(_metric(_w(2, 9) + _w(10, 0xFF))).metrics[0]
    assert (metric.datatype, metric.value) == (DataType.Unknown, 0xFF)
    with pytest.raises(ValueError, match="Unknown"):
        encode_payload(Payload(1, 1, (metric,)))


# --- malformed input: one clear error ------------------------------------------------------

def _deep_templates(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = _w(18, _w(2, _w(1, "x") + inner))  # Metric.template_value{metrics: ...}
    return _metric(_w(1, "x") + inner)


MALFORMED = {
    "bad key": (b"\xff", "not a Sparkplug B payload"),
    "truncated": (b"\x12\x05\x0a", "not a Sparkplug B payload"),
    "truncated varint": (b"\x08\xff\xff", "not a Sparkplug B payload"),
    "nested too deep": (_deep_templates(200), "not a Sparkplug B payload"),
    "name not UTF-8": (_metric(_w(1, b"\xff") + _w(4, 11) + _w(14, 1)), "(?i)utf-8"),
    "string not UTF-8": (_metric(_w(2, 1) + _w(4, 12) + _w(15, b"\xc3")), "(?i)utf-8"),
    "uuid not UTF-8": (_w(4, b"\xff"), "(?i)utf-8"),
    "no name, no alias": (_metric(_w(4, 11) + _w(14, 1)), "neither a name nor an alias"),
    "unknown datatype": (_metric(_w(2, 1) + _w(4, 99) + _w(10, 1)), "datatype 99"),
    "wrong field": (_metric(_w(2, 1) + _w(4, 10) + _w(10, 1)), "double_value"),
    "no value": (_metric(_w(2, 1) + _w(4, 10)), "no value"),
    "null and a value": (_metric(_w(2, 1) + _w(4, 11) + _w(7, 1) + _w(14, 1)), "is_null"),
    "dataset": (_metric(_w(2, 1) + _w(4, 16) + _w(17, b"")), "DataSet"),
    "template value": (_metric(_w(2, 1) + _w(18, b"")), "template_value"),
    "seq above 255": (_w(3, 256), "seq 256"),
    "keys without values": (_metric(_w(2, 1) + _w(4, 11) + _w(14, 0)
                                    + _w(9, _w(1, "a") + _w(1, "b") + _w(2, _w(1, 11)
                                                                         + _w(7, 1)))),
                            "2 keys and 1 values"),
    "property without type": (_metric(_w(2, 1) + _w(4, 11) + _w(14, 0)
                                      + _w(9, _w(1, "a") + _w(2, _w(7, 1)))), "no type"),
    "nested property set": (_metric(_w(2, 1) + _w(4, 11) + _w(14, 0)
                                    + _w(9, _w(1, "a") + _w(2, _w(1, 20) + _w(9, b"")))),
                            "PropertySet is not supported"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_raises_one_clear_error(case: str) -> None:
    data, reason = MALFORMED[case]
    with pytest.raises(SparkplugError, match=reason) as caught:
        decode_payload(data)
    assert isinstance(caught.value, ProtocolError) and isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None  # no protobuf internals chained on


def test_a_payload_above_the_size_bound_is_refused_before_parsing() -> None:
    with pytest.raises(SparkplugError, match="above 10"):
        decode_payload(b"\x00" * 11, max_bytes=10)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_sparkplug_error(data: bytes) -> None:
    try:
        payload = decode_payload(data)
    except SparkplugError:
        return
    assert isinstance(payload, Payload)


# --- round trips ------------------------------------------------------------------------

_U64 = st.integers(0, 2**64 - 1)


def _values(datatype: DataType) -> st.SearchStrategy[Value]:
    if datatype in (DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64):
        half = 2 ** ({1: 8, 2: 16, 3: 32, 4: 64}[datatype] - 1)
        return st.integers(-half, half - 1)
    unsigned = {DataType.UInt8: 2**8 - 1, DataType.UInt16: 2**16 - 1,
                DataType.UInt32: 2**32 - 1, DataType.UInt64: 2**64 - 1,
                DataType.DateTime: 2**64 - 1}
    if datatype in unsigned:
        return st.integers(0, unsigned[datatype])
    if datatype is DataType.Float:
        return st.floats(width=32, allow_nan=False)
    if datatype is DataType.Double:
        return st.floats(allow_nan=False)
    if datatype is DataType.Boolean:
        return st.booleans()
    if datatype in (DataType.String, DataType.Text, DataType.UUID):
        return st.text(max_size=20)
    return st.binary(max_size=20)


METRIC_TYPES = [d for d in DataType if d not in (DataType.Unknown, DataType.DataSet,
                                                  DataType.Template, DataType.PropertySet,
                                                  DataType.PropertySetList)]
PROPERTY_TYPES = [d for d in METRIC_TYPES if d.value <= 14 and d is not DataType.DateTime]


@st.composite
def _properties(draw: st.DrawFn) -> tuple[Property, ...]:
    keys = draw(st.lists(st.text(max_size=8), unique=True, max_size=3))
    out = []
    for key in keys:
        datatype = draw(st.sampled_from(PROPERTY_TYPES))
        out.append(Property(key, datatype, draw(st.none() | _values(datatype))))
    return tuple(out)


@st.composite
def _metrics(draw: st.DrawFn) -> Metric:
    datatype = draw(st.sampled_from(METRIC_TYPES))
    name = draw(st.none() | st.text(max_size=20))
    alias = draw(_U64) if name is None else draw(st.none() | _U64)
    return Metric(name, alias, datatype, draw(st.none() | _values(datatype)),
                  timestamp_ms=draw(st.none() | _U64), is_historical=draw(st.booleans()),
                  is_transient=draw(st.booleans()), properties=draw(_properties()))


_payloads = st.builds(
    Payload, timestamp_ms=st.none() | _U64, seq=st.none() | st.integers(0, 255),
    metrics=st.lists(_metrics(), max_size=5).map(tuple),
    uuid=st.none() | st.text(max_size=10), body=st.none() | st.binary(max_size=10))


@given(_payloads)
def test_every_payload_round_trips(payload: Payload) -> None:
    assert decode_payload(encode_payload(payload)) == payload


@given(st.floats(width=32, allow_nan=False, allow_infinity=True))
def test_float_infinities_and_extremes_round_trip(value: float) -> None:
    payload = Payload(1, 1, (Metric(None, 1, DataType.Float, value),))
    out = decode_payload(encode_payload(payload)).metrics[0].value
    assert isinstance(out, float) and out == value and math.isinf(value) == math.isinf(out)


# --- protobuf's pure-Python backend ---------------------------------------------------------
# Where protobuf has no compiled wheel (a 32-bit Raspberry Pi OS, say) it runs in pure
# Python, which reports broken input differently (it raises on a non-UTF-8 string where
# upb hands back bytes). This module runs again under that backend, in a subprocess.

PURE = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


@pytest.mark.timeout(180)
def test_the_codec_tests_pass_on_protobufs_pure_python_backend() -> None:
    if os.environ.get(PURE) == "python":
        assert api_implementation.Type() == "python"  # the subprocess runs this line
        return
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True, text=True, env={**os.environ, PURE: "python"}, timeout=170,
        cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
