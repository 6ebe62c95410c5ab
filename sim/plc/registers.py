"""The simulated PLC's register map: what lives at which (unit id, table, address).

Built from a profile: every signal, output and plc_watchdog register is declared at its
address. The ``RegisterMap`` also holds the register image (the values the PLC serves); the
pymodbus simulator blocks are refreshed from it on every access.

What a master may read, per (unit id, table):

    contiguous (default, like a real PLC's process image)   strict (``strict=True``)

       lo            hi                                         lo            hi
    ...|D D . D D . . D|...                                  ...|D D . D D . . D|...
     2  <-- readable -->  2                                   2  ok  2  ok   2  ok 2

    D declared, . undeclared, lo/hi the lowest/highest declared address of that table,
    2 = exception 2 (illegal data address). In contiguous mode undeclared addresses inside
    [lo, hi] read as 0; in both modes only declared writable cells accept writes.

    kind        table              writable by a master
    signal      any (declared)     no  (a write answers exception 2)
    output      coil / holding     yes (also the [plc_remote] flag, named "plc_remote")
    heartbeat   holding            yes (feeds the communication watchdog)
    timeout     holding            no  (the PLC's watchdog timeout, ms)
    fault       discrete           no  (latched watchdog fault bit)
    reset       coil               yes (1 clears the latch while heartbeats come in)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.model.profile import Output, Profile, Signal, Table


class Kind(enum.Enum):
    SIGNAL = "signal"
    OUTPUT = "output"
    HEARTBEAT = "heartbeat"
    TIMEOUT = "timeout"
    FAULT = "fault"
    RESET = "reset"

    @property
    def writable(self) -> bool:
        return self in (Kind.OUTPUT, Kind.HEARTBEAT, Kind.RESET)


@dataclass(frozen=True)
class Cell:
    """One register (or bit) of the map: who owns it and which word of the owner it is."""

    kind: Kind
    name: str
    word: int


Key = tuple[int, Table, int]  # (unit id, table, address)


class RegisterMapError(ValueError):
    """Two declared items overlap in the register map (the profile is inconsistent)."""


class RegisterMap:
    """The declared cells of ``profile`` and their image; ``strict`` picks the read rule.

    Raises RegisterMapError when two declared items overlap.
    """

    def __init__(self, profile: Profile, *, strict: bool = False) -> None:
        self.strict = strict
        self.cells: dict[Key, Cell] = {}
        self.image: dict[Key, int] = {}
        for s in profile.signals:
            self._declare(
                s.unit_id, s.table, s.address, words=s.words, kind=Kind.SIGNAL, name=s.name
            )
        for o in profile.writes:  # the outputs and the [plc_remote] flag
            self._declare(
                o.unit_id, o.table, o.address, words=o.words, kind=Kind.OUTPUT, name=o.name
            )
        wd = profile.plc_watchdog
        self._declare(
            wd.unit_id, Table.HOLDING, wd.heartbeat_address, words=1, kind=Kind.HEARTBEAT, name=""
        )
        self._declare(
            wd.unit_id, Table.HOLDING, wd.timeout_address, words=1, kind=Kind.TIMEOUT, name=""
        )
        if wd.fault_address is not None:
            self._declare(
                wd.unit_id, Table.DISCRETE, wd.fault_address, words=1, kind=Kind.FAULT, name=""
            )
        if wd.reset_address is not None:
            self._declare(
                wd.unit_id, Table.COIL, wd.reset_address, words=1, kind=Kind.RESET, name=""
            )
        self._spans: dict[tuple[int, Table], tuple[int, int]] = {}
        for unit, table, address in self.cells:
            lo, hi = self._spans.get((unit, table), (address, address))
            self._spans[(unit, table)] = (min(lo, address), max(hi, address))

    def _declare(
        self, unit: int, table: Table, address: int, *, words: int, kind: Kind, name: str
    ) -> None:
        count = 1 if table.is_bit else words
        for i in range(count):
            key = (unit, table, address + i)
            if key in self.cells:
                raise RegisterMapError(
                    f"{kind.value} {name!r} overlaps {self.cells[key].kind.value} "
                    f"{self.cells[key].name!r} at unit {unit} {table.value} {address + i}"
                )
            self.cells[key] = Cell(kind, name or kind.value, i)
            self.image[key] = 0

    @property
    def units(self) -> tuple[int, ...]:
        return tuple(sorted({k[0] for k in self.cells}))

    def addresses(self, unit: int, table: Table) -> list[int]:
        return sorted(a for (u, t, a) in self.cells if u == unit and t == table)

    def span(self, unit: int, table: Table) -> tuple[int, int] | None:
        """Lowest and highest declared address of (unit, table); None if it has none."""
        return self._spans.get((unit, table))

    def put(self, unit: int, table: Table, address: int, words: tuple[int, ...]) -> None:
        """Store ``words`` from ``address`` on; KeyError for an undeclared address (a bug)."""
        for i, w in enumerate(words):
            key = (unit, table, address + i)
            if key not in self.image:
                raise KeyError(key)
            self.image[key] = w

    def get(self, unit: int, table: Table, address: int, count: int) -> tuple[int, ...]:
        return tuple(self.image.get((unit, table, address + i), 0) for i in range(count))

    def put_item(self, item: Signal | Output, words: tuple[int, ...]) -> None:
        self.put(item.unit_id, item.table, item.address, words)

    def get_item(self, item: Signal | Output) -> tuple[int, ...]:
        count = 1 if item.table.is_bit else item.words
        return self.get(item.unit_id, item.table, item.address, count)

    def names(self, unit: int, table: Table, address: int, count: int) -> tuple[str, ...]:
        """Owners touched by ``count`` registers/bits from ``address``, in order, no repeats."""
        out: list[str] = []
        for i in range(count):
            cell = self.cells.get((unit, table, address + i))
            if cell is not None and cell.name not in out:
                out.append(cell.name)
        return tuple(out)

    def check_write(self, unit: int, table: Table, address: int, count: int) -> bool:
        """True if every cell in the range exists and is writable by a master."""
        for i in range(count):
            cell = self.cells.get((unit, table, address + i))
            if cell is None or not cell.kind.writable:
                return False
        return True

    def check_read(self, unit: int, table: Table, address: int, count: int) -> bool:
        """True if a master may read ``count`` registers/bits from ``address``: every one
        declared (strict), or all inside the table's declared span (contiguous)."""
        if count < 1:
            return False
        if self.strict:
            return all((unit, table, address + i) in self.cells for i in range(count))
        span = self._spans.get((unit, table))
        return span is not None and span[0] <= address and address + count - 1 <= span[1]
