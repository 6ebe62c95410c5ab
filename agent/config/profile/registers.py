"""The register-map part of the profile parser: data layout, scaling, raw limits, overlaps.

Pure helpers on ``Fields`` (see ``agent.config.fields``): each records problems at the
offending key and returns placeholders, never raises on bad input.

A value occupies ``words`` consecutive addresses of one table on one unit; a 32-bit value
spans two registers, ordered by ``word_order``::

    address:      n         n+1
              +---------+---------+
    big:      | high w. | low w.  |   ("ABCD", Modicon)
    little:   | low w.  | high w. |   ("CDAB")
              +---------+---------+   bytes within a register are big-endian

Engineering value = raw * scale + offset, so the raw value written for ``value`` is
``(value - offset) / scale``, rounded for integer types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.config.fields import Fields
from agent.model.profile import DataType, Table, WordOrder

__all__ = ["ADDRESS_MAX", "RAW_LIMITS", "Claims", "Span", "check_raw_limits", "read_layout",
           "read_scaling"]

ADDRESS_MAX = 65535
SCALE_MIN, SCALE_MAX = 1e-9, 1e9  # |scale|: raw * scale stays representable both ways
_F32_MAX = 3.4028234663852886e38
RAW_LIMITS: dict[DataType, tuple[float, float]] = {
    DataType.BOOL: (0, 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.FLOAT32: (-_F32_MAX, _F32_MAX),
}


def read_layout(f: Fields, table: Table) -> tuple[DataType, WordOrder, int]:
    """``type``, ``word_order`` and ``address`` of a signal or output on ``table``.

    Bit tables hold only ``bool`` (the default there); registers need an explicit numeric
    type. ``word_order`` is only accepted for 32-bit types, ``scale``/``offset`` not for bool.
    """
    if not f.ok("table"):
        dtype = f.enum("type", DataType, DataType.BOOL)
    elif table.is_bit:
        dtype = f.enum("type", DataType, DataType.BOOL)
        if f.ok("type") and dtype is not DataType.BOOL:
            f.fail("type", f"a {table.value} holds one bit: type must be 'bool'")
    else:
        dtype = f.enum("type", DataType)
        if f.ok("type") and dtype is DataType.BOOL:
            f.fail("type", "bool is only for coil and discrete tables")
    word_order = f.enum("word_order", WordOrder, WordOrder.BIG)
    if f.has("word_order") and f.ok("type", "word_order") and dtype.words != 2:
        f.fail("word_order", f"only applies to 32-bit types, not {dtype.value}")
    address = f.integer("address", 0, ADDRESS_MAX)
    if f.ok("address", "type") and address + dtype.words - 1 > ADDRESS_MAX:
        f.fail("address", f"a {dtype.value} at {address} runs past address {ADDRESS_MAX}")
    if f.ok("type") and dtype is DataType.BOOL:
        for key in ("scale", "offset"):
            f.forbid(key, "does not apply to a bool")
    return dtype, word_order, address


def read_scaling(f: Fields) -> tuple[float, float, str]:
    """``scale`` (default 1, never 0), ``offset`` (default 0) and ``unit`` (default "")."""
    scale = f.number("scale", 1.0)
    if f.ok("scale") and not SCALE_MIN <= abs(scale) <= SCALE_MAX:
        f.fail("scale", "must not be 0" if scale == 0 else
               f"{scale:g} is out of range: |scale| must lie within {SCALE_MIN:g}..{SCALE_MAX:g}")
    return scale, f.number("offset", 0.0), f.text("unit", "", allow_empty=True)


def check_raw_limits(f: Fields, dtype: DataType, *, scale: float, offset: float, unit: str,
                     limits: dict[str, float]) -> None:
    """Each of ``limits`` (key -> engineering value) must be writable as a raw ``dtype``."""
    lo, hi = RAW_LIMITS[dtype]
    for key, value in limits.items():
        raw = (value - offset) / scale
        if not math.isfinite(raw):  # cannot happen within the number and scale ranges
            f.fail(key, f"{value:g} {unit} has no raw value at scale {scale:g}")
            continue
        if dtype is not DataType.FLOAT32:
            raw = round(raw)  # what would be written
        if not lo <= raw <= hi:
            f.fail(key, f"{value:g} {unit} is raw {raw:g} after scaling, outside "
                        f"{dtype.value} {lo:g}..{hi:g}")


@dataclass(frozen=True)
class Span:
    """Addresses one item occupies: ``table`` ``start..end`` on ``unit``."""

    table: Table
    unit: int
    start: int
    end: int
    label: str  # who holds it, for messages: "signals[3]"
    path: str  # the key a clash is reported at: "signals[3].address"

    def __str__(self) -> str:
        where = f"{self.start}" if self.start == self.end else f"{self.start}..{self.end}"
        return f"{self.table.value} {where}, unit {self.unit}"


class Claims:
    """Every address claimed so far; a new claim that overlaps one is a problem."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def claim(self, f: Fields, span: Span) -> None:
        """Record ``span``; report each earlier span it overlaps at ``span.path``."""
        for other in self.spans:
            if (other.table is span.table and other.unit == span.unit
                    and span.start <= other.end and other.start <= span.end):
                f.out.add(span.path, f"overlaps {other.label} ({other})")
        self.spans.append(span)
