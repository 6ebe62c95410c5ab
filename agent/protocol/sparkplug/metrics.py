"""The Sparkplug B payload as plain data: data types, metrics, properties, the payload.

Nothing here knows protobuf: ``codec`` turns a :class:`Payload` into bytes and back.
The classes check their own values when they are built, so a :class:`Payload` that exists
can always be encoded; a value out of its type's range raises ``ValueError`` (a bug of the
caller), a value decoded from the wire that breaks a rule raises ``SparkplugError``
(``codec``).

Values by data type (Sparkplug 3.0, 6_Payloads "Datatype Details")::

    Int8 Int16 Int32 Int64        int, signed range of the width
    UInt8 UInt16 UInt32 UInt64    int, unsigned range of the width
    DateTime                      int, ms since the epoch (UTC), 0..2**64-1
    Float Double                  float (a Float travels as 32 bits: it rounds)
    Boolean                       bool
    String Text UUID              str
    Bytes File, the array types   bytes (arrays stay packed little-endian bytes)
    DataSet Template              not supported (twinguard neither sends nor accepts them)
    Unknown                       only decoded: a DATA/CMD metric without a datatype keeps
                                  the raw field's value; its BIRTH says what it is

``None`` is a null value (``is_null`` on the wire), allowed for every type.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1


class DataType(enum.IntEnum):
    """Sparkplug B data type numbers (Metric.datatype, PropertyValue.type)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


# signed integer types: bit width (two's complement on the wire)
SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
# unsigned integer types: largest value
UNSIGNED_MAX = {DataType.UInt8: 2**8 - 1, DataType.UInt16: 2**16 - 1, DataType.UInt32: MAX_U32,
                DataType.UInt64: MAX_U64, DataType.DateTime: MAX_U64}
FLOATS = frozenset({DataType.Float, DataType.Double})
STRINGS = frozenset({DataType.String, DataType.Text, DataType.UUID})
BYTES = frozenset({DataType.Bytes, DataType.File, *(DataType(n) for n in range(22, 35))})
# a property value may be a basic type only (twinguard: no nested property sets)
PROPERTY_TYPES = frozenset(
    {*SIGNED_BITS, *UNSIGNED_MAX, *FLOATS, DataType.Boolean, DataType.String, DataType.Text}
)
UNSUPPORTED = frozenset({DataType.DataSet, DataType.Template, DataType.PropertySet,
                         DataType.PropertySetList})

Value = int | float | bool | str | bytes | None


def check_value(datatype: DataType, value: Value) -> None:
    """Raise ``ValueError`` unless ``value`` is a valid value of ``datatype`` (or None)."""
    if value is None:
        return
    if datatype in SIGNED_BITS or datatype in UNSIGNED_MAX:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{datatype.name} needs an int, not {type(value).__name__}")
        if datatype in SIGNED_BITS:
            half = 1 << (SIGNED_BITS[datatype] - 1)
            low, high = -half, half - 1
        else:
            low, high = 0, UNSIGNED_MAX[datatype]
        if not low <= value <= high:
            raise ValueError(f"{datatype.name} value {value} is outside {low}..{high}")
    elif datatype in FLOATS:
        if isinstance(value, bool) or not isinstance(value, float | int):
            raise ValueError(f"{datatype.name} needs a float, not {type(value).__name__}")
        if datatype is DataType.Float and math.isfinite(value) and abs(value) > 3.4028235e38:
            raise ValueError(f"Float value {value} does not fit in 32 bits")
    elif datatype is DataType.Boolean:
        if not isinstance(value, bool):
            raise ValueError(f"Boolean needs a bool, not {type(value).__name__}")
    elif datatype in STRINGS:
        if not isinstance(value, str):
            raise ValueError(f"{datatype.name} needs a str, not {type(value).__name__}")
    elif datatype in BYTES:
        if not isinstance(value, bytes):
            raise ValueError(f"{datatype.name} needs bytes, not {type(value).__name__}")
    else:
        raise ValueError(f"data type {datatype.name} is not supported")


def check_u64(what: str, value: int | None) -> None:
    """Raise ``ValueError`` unless ``value`` is None or an int in 0..2**64-1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U64:
        raise ValueError(f"{what} must be an int in 0..{MAX_U64}, got {value!r}")


@dataclass(frozen=True)
class Property:
    """One entry of a metric's PropertySet: ``key`` (``"engUnit"``, ``"engLow"``, …), its
    basic ``datatype`` and ``value`` (None: ``is_null``)."""

    key: str
    datatype: DataType
    value: Value

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise ValueError(f"property key must be a str, got {self.key!r}")
        if self.datatype not in PROPERTY_TYPES:
            raise ValueError(f"property {self.key!r}: type {self.datatype!r} is not supported")
        check_value(self.datatype, self.value)


@dataclass(frozen=True)
class Metric:
    """One Sparkplug B metric.

    ``name`` and/or ``alias`` identify it (BIRTH: both; DATA/CMD: the alias only);
    ``value`` None means null. ``timestamp_ms`` is when the value was taken (UTC ms);
    the builders fill it in when it is None. ``properties`` keep their order; keys are
    unique.
    """

    name: str | None
    alias: int | None
    datatype: DataType
    value: Value
    timestamp_ms: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    properties: tuple[Property, ...] = ()

    def __post_init__(self) -> None:
        if self.name is None and self.alias is None:
            raise ValueError("a metric needs a name or an alias")
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"metric name must be a str, got {self.name!r}")
        check_u64("metric alias", self.alias)
        check_u64("metric timestamp", self.timestamp_ms)
        if not isinstance(self.datatype, DataType):
            raise ValueError(f"metric {self.label}: datatype must be a DataType")
        if self.datatype in UNSUPPORTED:
            raise ValueError(f"metric {self.label}: {self.datatype.name} is not supported")
        if self.datatype is not DataType.Unknown:
            try:
                check_value(self.datatype, self.value)
            except ValueError as exc:
                raise ValueError(f"metric {self.label}: {exc}") from None
        keys = [p.key for p in self.properties]
        if len(set(keys)) != len(keys):
            raise ValueError(f"metric {self.label}: property keys repeat: {keys}")

    @property
    def label(self) -> str:
        """How messages name this metric: its name, else ``alias N``."""
        return repr(self.name) if self.name is not None else f"alias {self.alias}"


@dataclass(frozen=True)
class Payload:
    """A Sparkplug B payload: publish time (UTC ms), ``seq`` (0..255; None in NDEATH and
    commands), the metrics in order, and the rarely used ``uuid`` and ``body``."""

    timestamp_ms: int | None
    seq: int | None
    metrics: tuple[Metric, ...] = ()
    uuid: str | None = None
    body: bytes | None = None

    def __post_init__(self) -> None:
        check_u64("payload timestamp", self.timestamp_ms)
        if self.seq is not None and (isinstance(self.seq, bool) or not isinstance(self.seq, int)
                                     or not 0 <= self.seq <= 255):
            raise ValueError(f"seq must be an int in 0..255, got {self.seq!r}")
        if self.uuid is not None and not isinstance(self.uuid, str):
            raise ValueError(f"uuid must be a str, got {self.uuid!r}")
        if self.body is not None and not isinstance(self.body, bytes):
            raise ValueError(f"body must be bytes, got {type(self.body).__name__}")

    def metric(self, name: str) -> Metric:
        """The first metric called ``name``; ``KeyError`` if there is none."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)
