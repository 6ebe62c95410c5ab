"""The sim PLC's address rule, in process: ``PlcDatastore`` (pymodbus' own SimCore and the
PLC's action) asked exactly what a request PDU asks, for the contiguous and the strict map.

pi4-rs485-rtu gives gaps in every kind of table: unit 2 inputs at 0, 2, 3; unit 3 holding
at 0, 1, 100, 101; unit 3 coils at 0 (heater_contactor) and 10 (watchdog reset) - one
16-bit word, so the bit checks must use the request's bit count, not pymodbus' word count.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.constants import ExcCodes

from agent.config.profile.load import load_profile
from agent.model.profile import Table
from sim.plc.datastore import PlcDatastore
from sim.plc.plc import SimPlc

pytestmark = pytest.mark.timeout(30)

PROFILE = load_profile("pi4-rs485-rtu")
X2 = ExcCodes.ILLEGAL_ADDRESS
READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


def store(strict: bool) -> tuple[SimPlc, PlcDatastore]:
    plc = SimPlc(PROFILE, clock=lambda: 0.0, strict_map=strict)
    return plc, PlcDatastore(plc)


def read(ds: PlcDatastore, unit: int, fc: int, address: int, count: int) -> list[int] | ExcCodes:
    got = asyncio.run(ds.async_getValues(unit, fc, address, count))
    return got if isinstance(got, ExcCodes) else [int(v) for v in got]


def write(ds: PlcDatastore, unit: int, fc: int, address: int, values: list[int]) -> object:
    vals: list[int] | list[bool] = [bool(v) for v in values] if fc in (5, 15) else values
    return asyncio.run(ds.async_setValues(unit, fc, address, vals))


# (unit, fc, address, count, contiguous result, strict result)
READS = [
    (2, 4, 0, 4, [900, 0, 5000, 5000], X2),  # through the gap at input 1
    (2, 4, 1, 1, [0], X2),
    (2, 4, 2, 2, [5000, 5000], [5000, 5000]),
    (2, 4, 0, 5, X2, X2),  # past the last input
    (2, 4, 4, 1, X2, X2),
    (3, 3, 0, 2, [0, 1000], [0, 1000]),
    (3, 3, 1, 100, [1000] + [0] * 98 + [0], X2),
    (3, 3, 101, 1, [2000], [2000]),
    (3, 3, 102, 1, X2, X2),
    (3, 1, 0, 11, [0] * 11, X2),  # contactor, gap, reset coil
    (3, 1, 5, 1, [0], X2),
    (3, 1, 10, 1, [0], [0]),
    (3, 1, 0, 12, X2, X2),  # bit 11 is in the same word as bit 10, still outside the span
    (3, 1, 11, 1, X2, X2),
    (3, 2, 0, 1, [0], [0]),
    (3, 2, 0, 2, X2, X2),
    (1, 2, 0, 1, [1], [1]),  # estop_ok
    (1, 3, 0, 1, X2, X2),  # unit 1 has no holding registers
    (9, 4, 0, 1, X2, X2),  # no such unit
]


@pytest.mark.parametrize("strict", [False, True], ids=["contiguous", "strict"])
@pytest.mark.parametrize(("unit", "fc", "address", "count", "contiguous", "strict_result"), READS)
def test_reads(  # noqa: PLR0917 (one table row)
    strict: bool,
    unit: int,
    fc: int,
    address: int,
    count: int,
    contiguous: list[int] | ExcCodes,
    strict_result: list[int] | ExcCodes,
) -> None:
    _plc, ds = store(strict)
    assert read(ds, unit, fc, address, count) == (strict_result if strict else contiguous)


# (unit, fc, address, values, accepted) - the same in both modes: gaps are read-only
WRITES = [
    (3, 6, 2, [7], False),  # holding gap
    (3, 16, 1, [500, 7], False),  # an output, then the gap
    (3, 16, 0, [10, 20], True),
    (3, 5, 5, [1], False),  # coil gap
    (3, 15, 0, [1, 0], False),  # the contactor, then the gap
    (3, 5, 0, [1], True),
    (3, 6, 101, [5], False),  # the watchdog timeout is read-only
    (2, 6, 1, [7], False),  # an input table is never writable (fc 6 goes to holding)
]


@pytest.mark.parametrize("strict", [False, True], ids=["contiguous", "strict"])
@pytest.mark.parametrize(("unit", "fc", "address", "values", "accepted"), WRITES)
def test_writes(  # noqa: PLR0917 (one table row)
    strict: bool, unit: int, fc: int, address: int, values: list[int], accepted: bool
) -> None:
    plc, ds = store(strict)
    before = dict(plc.map.image)
    result = write(ds, unit, fc, address, values)
    if accepted:
        assert result is None
        read_fc = 1 if fc in (5, 15) else 3
        assert read(ds, unit, read_fc, address, len(values)) == values
    else:
        assert result == X2
        assert plc.map.image == before  # nothing taken, not even the declared part


@given(st.sampled_from([(u, t) for (u, t, _a) in SimPlc(PROFILE).map.cells]),
       st.integers(0, 120), st.integers(1, 20))  # fmt: skip
def test_contiguous_reads_exactly_the_span(
    key: tuple[int, Table], address: int, count: int
) -> None:
    unit, table = key
    plc, ds = store(False)
    span = plc.map.span(unit, table)
    assert span is not None
    got = read(ds, unit, READ_FC[table], address, count)
    if span[0] <= address and address + count - 1 <= span[1]:
        assert got == [plc.map.image.get((unit, table, address + i), 0) for i in range(count)]
    else:
        assert got == X2
