"""Sparkplug B payload bytes to :class:`~.metrics.Payload` and back (sans-IO).

Wire layout: ``sparkplug_b.proto`` (the specification's field numbers); the generated
``sparkplug_b_pb2`` module does the protobuf part. Where a value travels:

==============================  ============================================================
Int8, Int16, Int32              ``int_value`` (uint32), two's complement *of the type's
                                width*: Int8 -1 is 0xFF, Int16 -1 is 0xFFFF, Int32 -1 is
                                0xFFFFFFFF (the reference Python encoder, tahu
                                ``sparkplug_b.py``: ``value + 2**8`` for a negative Int8).
                                Decoding also takes the value sign-extended to 32 bits
                                (Int8 -1 as 0xFFFFFFFF: tahu's Java encoder casts the
                                byte to a Java int). Anything else outside the width is an
                                error.
Int64                           ``long_value`` (uint64), two's complement
UInt8, UInt16, UInt32           ``int_value``; decoding also takes a UInt32 in
                                ``long_value`` if it fits (tahu's Java encoder before
                                eclipse-sparkplug issue #102 / tahu PR #202)
UInt64, DateTime                ``long_value``
Float / Double / Boolean        ``float_value`` / ``double_value`` / ``boolean_value``
String, Text, UUID              ``string_value``
Bytes, File, arrays             ``bytes_value``
null                            ``is_null = true`` and no value field
==============================  ============================================================

The spec text (6_Payloads, Datatype Details) says only "Int8: Signed 8-bit integer, Google
Protocol Buffer Type: uint32"; the width-of-the-type encoding above is what the reference
implementation does (tahu issue #71 is the long discussion).

The encoder always writes ``datatype``. Property values follow the same rules.

Decoding untrusted bytes raises :class:`~agent.model.errors.SparkplugError` and nothing
else, naming the rule and the metric: not a protobuf message, a value field that does not
match the datatype, a value outside the datatype's range, an unknown datatype number, a
DataSet/Template/extension value, a PropertySet whose keys and values differ in number,
``seq`` above 255, a string that is not UTF-8, a payload above ``max_bytes``. Unknown
fields, extensions and a metric's MetaData (which twinguard neither sends nor needs) are
ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.model.errors import SparkplugError

from . import sparkplug_b_pb2 as pb
from .metrics import (
    BYTES,
    MAX_U32,
    PROPERTY_TYPES,
    SIGNED_BITS,
    STRINGS,
    UNSIGNED_MAX,
    UNSUPPORTED,
    DataType,
    Metric,
    Payload,
    Property,
    Value,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024  # above the broker's max_packet_size (128 KiB) on purpose

# the message field names a value travels in, per data type (metric field names; the
# PropertyValue fields have the same names)
_INT, _LONG, _FLOAT, _DOUBLE = "int_value", "long_value", "float_value", "double_value"
_BOOL, _STRING, _BYTES = "boolean_value", "string_value", "bytes_value"


def _field(datatype: DataType) -> str:
    if datatype in SIGNED_BITS:
        return _LONG if datatype is DataType.Int64 else _INT
    if datatype in UNSIGNED_MAX:
        return _LONG if datatype in (DataType.UInt64, DataType.DateTime) else _INT
    if datatype is DataType.Float:
        return _FLOAT
    if datatype is DataType.Double:
        return _DOUBLE
    if datatype is DataType.Boolean:
        return _BOOL
    if datatype in STRINGS:
        return _STRING
    if datatype in BYTES:
        return _BYTES
    raise ValueError(f"data type {datatype.name} is not supported")  # pragma: no cover


def to_wire_int(datatype: DataType, value: int) -> int:
    """The unsigned wire form of an integer value (two's complement for the signed
    types, of their own width)."""
    bits = SIGNED_BITS.get(datatype)
    return value & ((1 << bits) - 1) if bits is not None else value


def from_wire_int(datatype: DataType, raw: int, field: str) -> int:
    """The value of an integer datatype carried as ``raw`` in ``field``; ``SparkplugError``
    if ``raw`` is not a valid encoding of a ``datatype`` value."""
    bits = SIGNED_BITS.get(datatype)
    if bits is not None:
        wire_bits = 64 if field == _LONG else 32
        half = 1 << (bits - 1)
        if raw >= (1 << wire_bits) - half:
            return raw - (1 << wire_bits)  # sign-extended to the field's width
        if raw >= 1 << bits:
            raise SparkplugError(f"{datatype.name} value {raw:#x} in {field} is outside the "
                                 f"type's {bits} bits")
        return raw - (1 << bits) if raw >= half else raw
    if raw > UNSIGNED_MAX[datatype]:
        raise SparkplugError(f"{datatype.name} value {raw} is above {UNSIGNED_MAX[datatype]}")
    return raw


def _set_value(msg: Any, datatype: DataType, value: Value) -> None:
    if value is None:
        msg.is_null = True
        return
    field = _field(datatype)
    if field in (_INT, _LONG):
        assert isinstance(value, int)
        value = to_wire_int(datatype, value)
    setattr(msg, field, value)


def _get_value(msg: Any, datatype: DataType, what: str) -> Value:
    field = msg.WhichOneof("value")
    if msg.is_null:
        if field is not None:
            raise SparkplugError(f"{what}: is_null is set and so is {field}")
        return None
    if field is None:
        raise SparkplugError(f"{what}: no value and is_null is not set")
    if field in ("dataset_value", "template_value", "extension_value",
                 "propertyset_value", "propertysets_value"):
        raise SparkplugError(f"{what}: a {field} is not supported")
    raw = _text(getattr(msg, field), f"{what}: {field}", binary=field == _BYTES)
    if datatype is DataType.Unknown:
        return raw  # type: ignore[no-any-return]
    expected = _field(datatype)
    if datatype is DataType.UInt32 and field == _LONG and raw <= MAX_U32:
        expected = _LONG
    if field != expected:
        raise SparkplugError(f"{what}: a {datatype.name} must travel in {expected}, "
                             f"not {field}")
    if field in (_INT, _LONG):
        try:
            return from_wire_int(datatype, raw, field)
        except SparkplugError as exc:
            raise SparkplugError(f"{what}: {exc}") from None
    return raw  # type: ignore[no-any-return]


def _datatype(number: int, what: str, *, allowed: frozenset[DataType] | None = None) -> DataType:
    try:
        datatype = DataType(number)
    except ValueError:
        raise SparkplugError(f"{what}: datatype {number} is not a Sparkplug data type") from None
    if datatype in UNSUPPORTED or (allowed is not None and datatype not in allowed):
        raise SparkplugError(f"{what}: datatype {datatype.name} is not supported")
    return datatype


def _set_present(msg: Any, **fields: object) -> None:
    """Set each field whose value is not None (a false flag is left out too)."""
    for name, value in fields.items():
        if value is not None and value is not False:
            setattr(msg, name, value)


def _present(msg: Any, name: str) -> Any:
    """A field's value if it is on the wire, else None."""
    if not msg.HasField(name):
        return None
    return _text(getattr(msg, name), name, binary=name == "body")


def _text(value: Any, what: str, *, binary: bool = False) -> Any:
    """``value``, unless it is the raw bytes protobuf hands back for a proto2 string field
    that is not UTF-8 (``binary``: a bytes field): then ``SparkplugError``."""
    if isinstance(value, bytes) and not binary:
        raise SparkplugError(f"{what} is not valid UTF-8")
    return value


def _encode_metric(out: Any, metric: Metric) -> None:
    if metric.datatype is DataType.Unknown:
        raise ValueError(f"metric {metric.label}: cannot encode datatype Unknown")
    _set_present(out, name=metric.name, alias=metric.alias, timestamp=metric.timestamp_ms,
                 datatype=int(metric.datatype), is_historical=metric.is_historical,
                 is_transient=metric.is_transient)
    if metric.properties:
        for prop in metric.properties:
            out.properties.keys.append(prop.key)
            value = out.properties.values.add()
            value.type = prop.datatype
            _set_value(value, prop.datatype, prop.value)
    _set_value(out, metric.datatype, metric.value)


def encode_payload(payload: Payload) -> bytes:
    """The protobuf bytes of ``payload``. Raises ``ValueError`` for a metric of datatype
    Unknown (only the decoder makes those); every other check ran when the payload was
    built."""
    msg = pb.Payload()
    _set_present(msg, timestamp=payload.timestamp_ms, seq=payload.seq, uuid=payload.uuid,
                 body=payload.body)
    for metric in payload.metrics:
        _encode_metric(msg.metrics.add(), metric)
    return msg.SerializeToString()  # type: ignore[no-any-return]


def _decode_properties(msg: Any, what: str) -> tuple[Property, ...]:
    keys = [_text(k, f"{what}: a property key") for k in msg.keys]
    values = list(msg.values)
    if len(keys) != len(values):  # tck-id-payloads-propertyset-keys-array-size
        raise SparkplugError(f"{what}: PropertySet has {len(keys)} keys and "
                             f"{len(values)} values")
    if len(set(keys)) != len(keys):
        raise SparkplugError(f"{what}: PropertySet keys repeat")
    found = []
    for key, value in zip(keys, values, strict=True):
        where = f"{what} property {key!r}"
        if not value.HasField("type"):
            raise SparkplugError(f"{where}: no type")
        datatype = _datatype(value.type, where, allowed=PROPERTY_TYPES)
        found.append(Property(key, datatype, _get_value(value, datatype, where)))
    return tuple(found)


def _decode_metric(msg: Any, index: int) -> Metric:
    try:
        name, alias = _present(msg, "name"), _present(msg, "alias")
    except SparkplugError as exc:
        raise SparkplugError(f"metric {index}: {exc}") from None
    if name is None and alias is None:
        raise SparkplugError(f"metric {index}: neither a name nor an alias")
    what = f"metric {name!r}" if name is not None else f"metric alias {alias}"
    datatype = (_datatype(msg.datatype, what) if msg.HasField("datatype")
                else DataType.Unknown)
    properties = (_decode_properties(msg.properties, what) if msg.HasField("properties")
                  else ())
    value = _get_value(msg, datatype, what)
    try:
        return Metric(name=name, alias=alias, datatype=datatype, value=value,
                      timestamp_ms=_present(msg, "timestamp"),
                      is_historical=msg.is_historical, is_transient=msg.is_transient,
                      properties=properties)
    except ValueError as exc:  # the checks above leave nothing for Metric to refuse
        raise SparkplugError(f"{what}: {exc}") from None


def decode_payload(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Payload:
    """The payload in ``data``: ``SparkplugError`` (and nothing else) if it is not a valid
    Sparkplug B payload by the rules in this module's docstring."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise SparkplugError(f"payload of {len(data)} bytes is above {max_bytes}")
    msg = pb.Payload()
    try:
        msg.ParseFromString(bytes(data))
    except Exception as exc:  # DecodeError, or whatever a broken message makes upb raise
        raise SparkplugError(f"not a Sparkplug B payload: {exc}") from None
    if msg.HasField("seq") and msg.seq > 255:
        raise SparkplugError(f"seq {msg.seq} is above 255")
    metrics = tuple(_decode_metric(m, i) for i, m in enumerate(msg.metrics))
    return Payload(timestamp_ms=_present(msg, "timestamp"), seq=_present(msg, "seq"),
                   metrics=metrics, uuid=_present(msg, "uuid"), body=_present(msg, "body"))
