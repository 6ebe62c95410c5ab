"""Encode engineering values into Modbus registers and back: the sim's own reference codec.

This module is deliberately independent of the agent's decoder (``agent.io.modbus``): the
simulated PLC is the reference the agent is tested against, so the two must not share code.

Layout (engineering value = raw * scale + offset)::

    BOOL      one bit (coil/discrete) or one register holding 0/1
    INT16     [ raw (two's complement) ]
    UINT16    [ raw ]
    INT32     big:    [ high word ][ low word ]      little: [ low word ][ high word ]
    UINT32    big:    [ high word ][ low word ]      little: [ low word ][ high word ]
    FLOAT32   IEEE-754 single, bytes ABCD; big: [AB][CD]   little: [CD][AB]

Bytes within one register are always big-endian. Integer raws are rounded to the nearest
integer and saturate at the type's limits (as an analog input card clips); a non-finite
value for an integer type is a ValueError (a bug in the caller).
"""

from __future__ import annotations

import math
import struct

from agent.model.profile import DataType, Output, Signal, WordOrder

_INT_LIMITS: dict[DataType, tuple[int, int, str]] = {
    DataType.INT16: (-0x8000, 0x7FFF, ">h"),
    DataType.UINT16: (0, 0xFFFF, ">H"),
    DataType.INT32: (-0x8000_0000, 0x7FFF_FFFF, ">i"),
    DataType.UINT32: (0, 0xFFFF_FFFF, ">I"),
}


def _words(data: bytes, word_order: WordOrder) -> tuple[int, ...]:
    words = tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    if word_order is WordOrder.LITTLE:
        words = tuple(reversed(words))
    return words


def _bytes(words: tuple[int, ...], word_order: WordOrder) -> bytes:
    if word_order is WordOrder.LITTLE:
        words = tuple(reversed(words))
    return b"".join(w.to_bytes(2, "big") for w in words)


def encode(
    value: float, dtype: DataType, word_order: WordOrder, scale: float, offset: float
) -> tuple[int, ...]:
    """Registers (or one 0/1 for BOOL) holding engineering ``value``.

    Raises ValueError for a NaN/inf value of an integer type or a zero scale.
    """
    if dtype is DataType.BOOL:
        return (1 if value != 0 else 0,)
    if scale == 0:
        raise ValueError("scale must not be zero")
    raw = (value - offset) / scale
    if dtype is DataType.FLOAT32:
        return _words(struct.pack(">f", raw), word_order)
    if not math.isfinite(raw):
        raise ValueError(f"cannot encode {value!r} as {dtype.value}")
    low, high, fmt = _INT_LIMITS[dtype]
    raw_int = min(high, max(low, round(raw)))
    return _words(struct.pack(fmt, raw_int), word_order)


def decode(
    registers: tuple[int, ...] | list[int],
    dtype: DataType,
    word_order: WordOrder,
    scale: float,
    offset: float,
) -> float:
    """Engineering value of ``registers``; ValueError if their count does not fit ``dtype``."""
    regs = tuple(registers)
    if len(regs) != dtype.words:
        raise ValueError(f"{dtype.value} needs {dtype.words} register(s), got {len(regs)}")
    if dtype is DataType.BOOL:
        return 1.0 if regs[0] else 0.0
    data = _bytes(regs, word_order)
    fmt = ">f" if dtype is DataType.FLOAT32 else _INT_LIMITS[dtype][2]
    raw: float = struct.unpack(fmt, data)[0]
    return raw * scale + offset


def encode_for(item: Signal | Output, value: float) -> tuple[int, ...]:
    """``encode`` with the type, word order, scale and offset of a signal or output."""
    return encode(value, item.dtype, item.word_order, item.scale, item.offset)


def decode_for(item: Signal | Output, registers: tuple[int, ...] | list[int]) -> float:
    """``decode`` with the type, word order, scale and offset of a signal or output."""
    return decode(registers, item.dtype, item.word_order, item.scale, item.offset)
