"""Read and write plans: which Modbus requests cover a profile's points (pure; no I/O).

A *point* is anything the profile declares at an address: a signal, an output, a watchdog
register. Reads are grouped per ``(unit_id, table)`` and coalesced into *blocks*::

    table: input, unit 1         0    1    2    3    4    5    6    7    8    9
    points                     [ta] [tb] [tc] .... [ pressure_a ]      [ pressure_b ]
    block (gap 1 <= max_gap)   |<-------------------- address 0, count 10 ------------->|

- Two neighbours join one block when the undeclared gap between them is ``<= max_gap``
  registers (bits) and the block stays within the Modbus limit of one request
  (:data:`MAX_READ_REGISTERS` = 125 registers, :data:`MAX_READ_BITS` = 2000 bits).
  A larger gap splits the block: the plan never reads through a long stretch of addresses
  the profile does not declare.
- A multi-register value is never split across two blocks.
- Points may overlap (two views of one register); the block covers both.

A block's response is sliced back with :meth:`Block.slice`: member ``m`` gets
``values[m.address - block.address : ... + m.words]`` (a ``bool`` for bit tables).

Writes (:func:`plan_writes`) coalesce contiguous holding registers of one unit into one
write-multiple-registers request (fc16, at most 123 registers) and contiguous coils into
write-multiple-coils (fc15, at most 1968 bits; a lone coil is fc5), so a safe state is one
frame wherever the register map allows.

Misuse (a response of the wrong length, a point with ``words < 1``) raises ``ValueError``:
it is a bug or a malformed reply, and the caller turns it into BAD readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.model.profile import PLC_REMOTE, Output, Signal, Table
from agent.protocol.modbus.pdu import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
)

__all__ = [
    "DEFAULT_MAX_GAP", "MAX_READ_BITS", "MAX_READ_REGISTERS", "MAX_WRITE_BITS",
    "MAX_WRITE_REGISTERS", "Block", "Point", "WriteOp", "output_points", "plan_reads",
    "plan_writes", "signal_points",
]  # fmt: skip

DEFAULT_MAX_GAP = 8


@dataclass(frozen=True)
class Point:
    """One declared thing at an address: ``words`` registers (or 1 bit) from ``address``."""

    name: str
    unit_id: int
    table: Table
    address: int
    words: int

    @property
    def end(self) -> int:
        """One past the last address the point occupies."""
        return self.address + self.words


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (bits) of ``table`` from ``address``."""

    unit_id: int
    table: Table
    address: int
    count: int
    members: tuple[Point, ...]

    def slice(self, values: Sequence[int] | Sequence[bool]) -> dict[str, tuple[int, ...] | bool]:
        """Per-member raw values from the block's response (ValueError if too short)."""
        if len(values) < self.count:
            raise ValueError(
                f"response has {len(values)} values, block at {self.address} needs {self.count}"
            )
        base = self.address
        if self.table.is_bit:
            return {m.name: bool(values[m.address - base]) for m in self.members}
        return {m.name: tuple(values[m.address - base : m.address - base + m.words])
                for m in self.members}


@dataclass(frozen=True)
class WriteOp:
    """One write request: registers (fc16) or coils (fc15/fc5) from ``address``."""

    unit_id: int
    table: Table
    address: int
    values: tuple[int, ...] | tuple[bool, ...]
    names: tuple[str, ...]


def signal_points(signals: Iterable[Signal]) -> list[Point]:
    """Points for the profile's signals."""
    return [
        Point(s.name, s.unit_id, s.table, s.address, 1 if s.table.is_bit else s.words)
        for s in signals
    ]


def output_points(outputs: Iterable[Output]) -> list[Point]:
    """Points for reading back the outputs' current values."""
    return [
        Point(o.name, o.unit_id, o.table, o.address, 1 if o.table.is_bit else o.words)
        for o in outputs
    ]


def plan_reads(points: Iterable[Point], max_gap: int = DEFAULT_MAX_GAP) -> tuple[Block, ...]:
    """Fewest blocks that read every point (see the module docstring for the rules).

    Blocks come ordered by (unit_id, table name, address). ``max_gap < 0`` is a bug.
    """
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    groups: dict[tuple[int, Table], list[Point]] = {}
    for p in points:
        if p.words < 1:
            raise ValueError(f"{p.name}: words must be >= 1")
        groups.setdefault((p.unit_id, p.table), []).append(p)
    blocks: list[Block] = []
    for (unit_id, table), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1].value)
    ):
        limit = MAX_READ_BITS if table.is_bit else MAX_READ_REGISTERS
        members.sort(key=lambda p: (p.address, p.words))
        current: list[Point] = []
        start = end = 0
        for p in members:
            if current and (p.address - end) <= max_gap and max(end, p.end) - start <= limit:
                current.append(p)
                end = max(end, p.end)
                continue
            if current:
                blocks.append(Block(unit_id, table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p.end
        if current:
            blocks.append(Block(unit_id, table, start, end - start, tuple(current)))
    return tuple(blocks)


def plan_writes(items: Mapping[Output, tuple[int, ...] | bool]) -> tuple[WriteOp, ...]:
    """Coalesced write requests for already-encoded output values.

    ``items`` maps each output to its encoded raw value (see
    :func:`agent.protocol.modbus.codec.encode_output`). Contiguous holding registers of one unit
    become one fc16 request, contiguous coils one fc15 request. Two outputs claiming the
    same address is a bug (ValueError): a profile must not declare overlapping outputs.
    The request carrying ``[plc_remote]``'s flag (:data:`PLC_REMOTE`) comes first.
    """
    groups: dict[tuple[int, Table], list[tuple[Output, tuple[int, ...] | bool]]] = {}
    for o, raw in items.items():
        if not o.table.writable:
            raise ValueError(f"{o.name}: table {o.table.value} is not writable")
        groups.setdefault((o.unit_id, o.table), []).append((o, raw))
    ops: list[WriteOp] = []
    for (unit_id, table), entries in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1].value)
    ):
        entries.sort(key=lambda e: e[0].address)
        limit = MAX_WRITE_BITS if table.is_bit else MAX_WRITE_REGISTERS
        runs: list[tuple[int, list[str], list[int]]] = []  # (start, names, words)
        for o, raw in entries:
            words = [int(raw)] if isinstance(raw, bool) else list(raw)
            if runs:
                start, names, vals = runs[-1]
                end = start + len(vals)
                if o.address < end:
                    raise ValueError(f"{o.name}: overlaps another output at address {o.address}")
                if o.address == end and len(vals) + len(words) <= limit:
                    names.append(o.name)
                    vals.extend(words)
                    continue
            runs.append((o.address, [o.name], words))
        for start, names, vals in runs:
            values: tuple[int, ...] | tuple[bool, ...]
            values = tuple(bool(v) for v in vals) if table.is_bit else tuple(vals)
            ops.append(WriteOp(unit_id, table, start, values, tuple(names)))
    # [plc_remote]'s flag goes first: with the safe set, the PLC program must take the
    # agent's registers before they are written, or its next scan could overwrite them
    ops.sort(key=lambda op: PLC_REMOTE not in op.names)
    return tuple(ops)
