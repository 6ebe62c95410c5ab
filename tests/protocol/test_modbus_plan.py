"""Read and write plans: coalescing within Modbus limits, slicing back, write grouping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.model.profile import DataType, FailsafePolicy, Output, Table, WordOrder
from agent.protocol.modbus.plan import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_REGISTERS,
    Point,
    plan_reads,
    plan_writes,
)

pytestmark = pytest.mark.timeout(30)


def pt(name: str, address: int, words: int = 1, table: Table = Table.INPUT, unit: int = 1) -> Point:
    return Point(name, unit, table, address, words)


def out(
    name: str,
    address: int,
    dtype: DataType = DataType.UINT16,
    table: Table = Table.HOLDING,
    unit: int = 1,
) -> Output:
    return Output(
        name,
        table,
        address,
        dtype,
        WordOrder.BIG,
        1.0,
        0.0,
        "",
        0.0,
        1e6,
        None,
        0.0,
        FailsafePolicy.SAFE_VALUE,
        unit,
    )


def test_sim_tank_layout_is_one_block() -> None:
    points = [pt("ta", 0), pt("tb", 1), pt("tc", 2), pt("pa", 4, 2), pt("pb", 8, 2)]
    (block,) = plan_reads(points)
    assert (block.address, block.count) == (0, 10)
    raw = block.slice(list(range(100, 110)))
    assert raw == {"ta": (100,), "tb": (101,), "tc": (102,), "pa": (104, 105), "pb": (108, 109)}


def test_large_gap_splits() -> None:
    blocks = plan_reads([pt("a", 0), pt("b", 9), pt("c", 30)], max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 10), (30, 1)]
    assert [(b.address, b.count) for b in plan_reads([pt("a", 0), pt("b", 9)], max_gap=7)] == [
        (0, 1),
        (9, 1),
    ]


def test_units_and_tables_never_mix() -> None:
    blocks = plan_reads(
        [
            pt("a", 0),
            pt("b", 1, unit=2),
            pt("c", 1, table=Table.HOLDING),
            pt("d", 2, table=Table.COIL),
        ]
    )
    assert len(blocks) == 4
    assert {(b.unit_id, b.table) for b in blocks} == {
        (1, Table.INPUT),
        (2, Table.INPUT),
        (1, Table.HOLDING),
        (1, Table.COIL),
    }


def test_bits_slice_to_bools() -> None:
    (block,) = plan_reads([pt("x", 3, table=Table.DISCRETE), pt("y", 5, table=Table.DISCRETE)])
    assert block.slice([True, False, False]) == {"x": True, "y": False}


def test_short_response_is_a_value_error() -> None:
    (block,) = plan_reads([pt("a", 0), pt("b", 3)])
    with pytest.raises(ValueError, match="needs 4"):
        block.slice([1, 2, 3])


@given(
    specs=st.lists(
        st.tuples(st.integers(0, 600), st.sampled_from([1, 2]), st.sampled_from([1, 2])),
        min_size=1,
        max_size=60,
    ),
    gap=st.integers(0, 20),
    bits=st.booleans(),
)
def test_plan_properties(specs: list[tuple[int, int, int]], gap: int, bits: bool) -> None:
    table = Table.COIL if bits else Table.HOLDING
    points = [pt(f"p{i}", a, 1 if bits else w, table, u) for i, (a, w, u) in enumerate(specs)]
    blocks = plan_reads(points, max_gap=gap)
    limit = MAX_READ_BITS if bits else MAX_READ_REGISTERS
    members = [m for b in blocks for m in b.members]
    assert sorted(m.name for m in members) == sorted(p.name for p in points)  # each exactly once
    for b in blocks:
        assert 1 <= b.count <= limit
        assert all(m.unit_id == b.unit_id and m.table is b.table for m in b.members)
        assert all(b.address <= m.address and m.end <= b.address + b.count for m in b.members)
        # no undeclared stretch longer than the gap inside a block
        covered = sorted({a for m in b.members for a in range(m.address, m.end)})
        holes = [y - x - 1 for x, y in itertools.pairwise(covered)]
        assert all(h <= gap for h in holes)
    # never more blocks than needed: two neighbouring blocks of one group could not merge
    for a, b in itertools.pairwise(blocks):
        if (a.unit_id, a.table) == (b.unit_id, b.table):
            gap_between = b.address - (a.address + a.count)
            merged = b.address + b.count - a.address
            assert gap_between > gap or merged > limit


def test_writes_coalesce_contiguous_registers_into_one_fc16() -> None:
    ops = plan_writes({out("heater", 100): (0,), out("cooling", 101): (1000,)})
    assert len(ops) == 1
    assert (ops[0].address, ops[0].values, ops[0].names) == (100, (0, 1000), ("heater", "cooling"))


def test_writes_split_on_gap_unit_and_table() -> None:
    ops = plan_writes(
        {
            out("a", 100): (1,),
            out("b", 102, DataType.FLOAT32): (2, 3),
            out("c", 104, unit=2): (4,),
            out("k", 0, DataType.BOOL, Table.COIL): True,
            out("l", 1, DataType.BOOL, Table.COIL): False,
        }
    )
    shapes = {(o.unit_id, o.table, o.address, o.values) for o in ops}
    assert shapes == {
        (1, Table.HOLDING, 100, (1,)),
        (1, Table.HOLDING, 102, (2, 3)),
        (2, Table.HOLDING, 104, (4,)),
        (1, Table.COIL, 0, (True, False)),
    }


def test_writes_respect_the_fc16_limit() -> None:
    items = {out(f"o{i}", i): (i,) for i in range(MAX_WRITE_REGISTERS + 5)}
    ops = plan_writes(items)
    assert [len(o.values) for o in ops] == [MAX_WRITE_REGISTERS, 5]


def test_overlapping_outputs_are_a_bug() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        plan_writes({out("a", 100, DataType.UINT32): (0, 1), out("b", 101): (2,)})


def test_read_only_output_table_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not writable"):
        plan_writes({out("a", 1, table=Table.INPUT): (0,)})
