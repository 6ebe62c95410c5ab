"""Registers <-> engineering values (pure; no I/O).

Register layout (every Modbus register is 16 bits, bytes within it big-endian)::

    INT16 / UINT16 / BOOL-in-register   [ r0 ]
    INT32 / UINT32 / FLOAT32, BIG       [ r0 = high word ][ r1 = low word ]   "ABCD"
    INT32 / UINT32 / FLOAT32, LITTLE    [ r0 = low word  ][ r1 = high word ]  "CDAB"
    BOOL in a coil / discrete input     one bit (``raw`` is a ``bool``)

Engineering value = ``raw * scale + offset`` (for integer types rounded to 12 significant
digits, which drops binary noise such as 23.900000000000002 and nothing else). A BOOL
decodes to 1.0 or 0.0 and ignores scale and offset (a bit has no scale).

Contract:
- :func:`decode` takes what came off the wire and returns a float. Wrong number of registers,
  a register outside 0..65535, or a bit raw for a register type raise ``ValueError``: that is a
  bug in the caller (the read plan hands out exactly ``dtype.words`` registers), not bad input.
- :func:`encode_output` turns an engineering value into what goes on the wire for a declared
  :class:`~agent.model.profile.Output`. It raises :class:`~agent.model.errors.WriteRefused` for a
  value outside ``[minimum, maximum]``, NaN/inf, or a value the output's type cannot hold.
  Integer types round to the nearest raw step; if that rounding would land outside the
  output's limits, the nearest raw step inside them is used instead (never outside).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from agent.model.errors import WriteRefused
from agent.model.profile import DataType, Output, Table, WordOrder

_INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38

Raw = tuple[int, ...] | bool


def _check_registers(registers: Sequence[int], dtype: DataType) -> None:
    if len(registers) != dtype.words:
        raise ValueError(f"{dtype.value} needs {dtype.words} register(s), got {len(registers)}")
    for r in registers:
        if not 0 <= r <= 0xFFFF:
            raise ValueError(f"register value {r} outside 0..65535")


def _to_bytes(registers: Sequence[int], word_order: WordOrder) -> bytes:
    words = list(registers)
    if len(words) == 2 and word_order is WordOrder.LITTLE:
        words.reverse()
    return b"".join(w.to_bytes(2, "big") for w in words)


def _from_bytes(data: bytes, word_order: WordOrder) -> tuple[int, ...]:
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if len(words) == 2 and word_order is WordOrder.LITTLE:
        words.reverse()
    return tuple(words)


def decode_raw(registers: Sequence[int], dtype: DataType, word_order: WordOrder) -> int | float:
    """The raw number the registers hold (before scale and offset). ValueError on a bug."""
    _check_registers(registers, dtype)
    if dtype is DataType.BOOL:
        return 1 if registers[0] else 0
    data = _to_bytes(registers, word_order)
    if dtype is DataType.FLOAT32:
        value: float = struct.unpack(">f", data)[0]
        return value
    signed = dtype in (DataType.INT16, DataType.INT32)
    return int.from_bytes(data, "big", signed=signed)


def encode_raw(raw: int | float, dtype: DataType, word_order: WordOrder) -> tuple[int, ...]:
    """Registers holding the raw number ``raw``.

    Raises ``ValueError`` if ``raw`` does not fit ``dtype`` (an integer type given a
    non-integer or out-of-range number, a float32 overflow, NaN for an integer).
    """
    if dtype is DataType.BOOL:
        if raw not in (0, 1):
            raise ValueError(f"bool raw must be 0 or 1, got {raw!r}")
        return (int(raw),)
    if dtype is DataType.FLOAT32:
        f = float(raw)
        if math.isfinite(f) and abs(f) > _FLOAT32_MAX:
            raise ValueError(f"{f!r} overflows float32")
        return _from_bytes(struct.pack(">f", f), word_order)
    lo, hi = _INT_RANGES[dtype]
    if isinstance(raw, float) and not raw.is_integer():
        raise ValueError(f"{raw!r} is not an integer")
    n = int(raw)
    if not lo <= n <= hi:
        raise ValueError(f"{n} outside {dtype.value} range {lo}..{hi}")
    nbytes = 2 * dtype.words
    signed = dtype in (DataType.INT16, DataType.INT32)
    return _from_bytes(n.to_bytes(nbytes, "big", signed=signed), word_order)


def decode(raw: Raw, dtype: DataType, word_order: WordOrder, scale: float, offset: float) -> float:
    """Engineering value of ``raw`` (registers or a bit). ValueError on a caller bug."""
    if isinstance(raw, bool):
        if dtype is not DataType.BOOL:
            raise ValueError(f"a bit cannot hold {dtype.value}")
        return 1.0 if raw else 0.0
    number = decode_raw(raw, dtype, word_order)
    if dtype is DataType.BOOL:
        return float(number)
    value = float(number) * scale + offset
    if dtype is DataType.FLOAT32 or not math.isfinite(value):
        return value
    # an integer raw has at most 10 significant digits: drop binary noise (23.900000000000002)
    return float(f"{value:.12g}")


Decoder = Callable[[Raw], float]

_STRUCT = {
    DataType.INT16: struct.Struct(">h"),
    DataType.UINT16: struct.Struct(">H"),
    DataType.INT32: struct.Struct(">i"),
    DataType.UINT32: struct.Struct(">I"),
    DataType.FLOAT32: struct.Struct(">f"),
}
_WORDS2 = struct.Struct(">HH")


def decoder(dtype: DataType, word_order: WordOrder, scale: float, offset: float) -> Decoder:
    """A function equal to ``decode(raw, dtype, word_order, scale, offset)`` for one point,
    with the type's layout worked out once (the poll's hot path; ValueError on a bug).

    Integer types are rounded to 12 significant digits like :func:`decode` (so
    ``239 * 0.1`` is 23.9, not 23.900000000000002).
    """
    if dtype is DataType.BOOL:
        return lambda raw: decode(raw, dtype, word_order, scale, offset)
    unpack = _STRUCT[dtype].unpack
    words = dtype.words
    little = words == 2 and word_order is WordOrder.LITTLE
    pack = _WORDS2.pack

    def number(raw: Raw) -> int | float:
        if isinstance(raw, bool) or len(raw) != words:
            raise ValueError(f"{dtype.value} needs {words} register(s), got {raw!r}")
        try:
            if words == 1:
                data = raw[0].to_bytes(2, "big")
            else:
                data = pack(raw[1], raw[0]) if little else pack(raw[0], raw[1])
        except (OverflowError, struct.error) as exc:
            raise ValueError(f"register value outside 0..65535 in {raw!r}") from exc
        value: int | float = unpack(data)[0]
        return value

    if dtype is DataType.FLOAT32:
        return lambda raw: float(number(raw)) * scale + offset
    if scale == 1.0 and offset == 0.0:
        return lambda raw: float(number(raw))

    def scaled(raw: Raw) -> float:
        value = number(raw) * scale + offset
        if value == 0.0 or not math.isfinite(value):
            return value
        # 12 significant digits, as decode() does, without formatting a string
        return round(value, 11 - math.floor(math.log10(abs(value))))

    return scaled


def _raw_step(output: Output, value: float) -> int | float:
    """Raw number for ``value``: nearest raw step, pulled inside the output's limits."""
    exact = (value - output.offset) / output.scale
    if output.dtype is DataType.FLOAT32:
        return exact
    candidates = sorted({math.floor(exact), math.ceil(exact)}, key=lambda n: abs(n - exact))
    for n in candidates:
        eng = n * output.scale + output.offset
        if output.minimum <= eng <= output.maximum:
            return n
    raise WriteRefused(
        f"{output.name}: {value!r} {output.unit} has no raw step within "
        f"[{output.minimum}, {output.maximum}] at scale {output.scale}"
    )


def encode_output(output: Output, value: float) -> Raw:
    """What to write to ``output`` for the engineering ``value``.

    Returns a ``bool`` for a coil, a tuple of registers for a holding register. Raises
    :class:`WriteRefused` (nothing is written) if the value is NaN/inf, outside the output's
    ``[minimum, maximum]``, or cannot be represented in the output's type.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise WriteRefused(f"{output.name}: value must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise WriteRefused(f"{output.name}: {value!r} is not a finite number")
    if not output.minimum <= value <= output.maximum:
        raise WriteRefused(
            f"{output.name}: {value!r} {output.unit} outside its limits "
            f"[{output.minimum}, {output.maximum}]"
        )
    if not output.table.writable:
        raise WriteRefused(f"{output.name}: table {output.table.value} is read-only")
    if output.dtype is DataType.BOOL:
        if value not in (0, 1):
            raise WriteRefused(f"{output.name}: a bool output takes 0 or 1, got {value!r}")
        if output.table is Table.COIL:
            return bool(value)
        return (int(value),)
    if output.table is Table.COIL:
        raise WriteRefused(f"{output.name}: a coil holds a bool, not {output.dtype.value}")
    if output.scale == 0:
        raise WriteRefused(f"{output.name}: scale 0 cannot be inverted")
    raw = _raw_step(output, float(value))
    try:
        return encode_raw(raw, output.dtype, output.word_order)
    except ValueError as exc:
        raise WriteRefused(
            f"{output.name}: {value!r} {output.unit} not representable: {exc}"
        ) from exc
