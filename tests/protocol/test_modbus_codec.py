"""Registers <-> engineering values: round trips and refusals."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.errors import WriteRefused
from agent.model.profile import DataType, FailsafePolicy, Output, Table, WordOrder
from agent.protocol.modbus.codec import decode, decode_raw, decoder, encode_output, encode_raw

pytestmark = pytest.mark.timeout(30)

INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


def output(
    dtype: DataType = DataType.UINT16,
    *,
    table: Table = Table.HOLDING,
    scale: float = 0.1,
    offset: float = 0.0,
    minimum: float = 0.0,
    maximum: float = 100.0,
    word_order: WordOrder = WordOrder.BIG,
) -> Output:
    return Output(
        name="out",
        table=table,
        address=100,
        dtype=dtype,
        word_order=word_order,
        scale=scale,
        offset=offset,
        unit="%",
        minimum=minimum,
        maximum=maximum,
        max_rate=None,
        safe_value=minimum,
        failsafe=FailsafePolicy.SAFE_VALUE,
        unit_id=1,
    )


@pytest.mark.parametrize(
    ("registers", "dtype", "order", "expected"),
    [
        ((0xFFFF,), DataType.INT16, WordOrder.BIG, -1),
        ((0xFFFF,), DataType.UINT16, WordOrder.BIG, 65535),
        ((0x0001, 0x0002), DataType.UINT32, WordOrder.BIG, 0x00010002),
        ((0x0001, 0x0002), DataType.UINT32, WordOrder.LITTLE, 0x00020001),
        ((0xFFFF, 0xFFFE), DataType.INT32, WordOrder.BIG, -2),
        ((0xFFFE, 0xFFFF), DataType.INT32, WordOrder.LITTLE, -2),
        ((0x3FC0, 0x0000), DataType.FLOAT32, WordOrder.BIG, 1.5),
        ((0x0000, 0x3FC0), DataType.FLOAT32, WordOrder.LITTLE, 1.5),
        ((7,), DataType.BOOL, WordOrder.BIG, 1),
    ],
)
def test_known_layouts(
    registers: tuple[int, ...], dtype: DataType, order: WordOrder, expected: float
) -> None:
    assert decode_raw(registers, dtype, order) == expected


def test_scale_and_offset_apply() -> None:
    assert decode((250,), DataType.INT16, WordOrder.BIG, 0.1, -5.0) == pytest.approx(20.0)
    assert decode(True, DataType.BOOL, WordOrder.BIG, 10.0, 3.0) == 1.0


@pytest.mark.parametrize(
    ("raw", "dtype"),
    [((1, 2), DataType.INT16), ((1,), DataType.FLOAT32), ((70000,), DataType.UINT16)],
)
def test_malformed_raw_is_a_value_error(raw: tuple[int, ...], dtype: DataType) -> None:
    with pytest.raises(ValueError, match="register"):
        decode(raw, dtype, WordOrder.BIG, 1.0, 0.0)


def test_bit_for_register_type_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bit"):
        decode(True, DataType.UINT16, WordOrder.BIG, 1.0, 0.0)


@given(
    dtype=st.sampled_from(sorted(INT_RANGES, key=lambda d: d.value)),
    order=st.sampled_from(list(WordOrder)),
    data=st.data(),
)
def test_integer_raw_round_trip(dtype: DataType, order: WordOrder, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[dtype]
    n = data.draw(st.integers(lo, hi))
    regs = encode_raw(n, dtype, order)
    assert len(regs) == dtype.words
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_raw(regs, dtype, order) == n


@given(order=st.sampled_from(list(WordOrder)), f=st.floats(width=32, allow_nan=False))
def test_float32_raw_round_trip(order: WordOrder, f: float) -> None:
    assert decode_raw(encode_raw(f, DataType.FLOAT32, order), DataType.FLOAT32, order) == f


@given(
    regs=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    order=st.sampled_from(list(WordOrder)),
)
def test_any_two_registers_decode_and_reencode(regs: tuple[int, int], order: WordOrder) -> None:
    for dtype in (DataType.INT32, DataType.UINT32):
        assert encode_raw(decode_raw(regs, dtype, order), dtype, order) == regs


@given(
    dtype=st.sampled_from([DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]),
    scale=st.sampled_from([0.1, 0.01, 0.5, 1.0, 2.5]),
    offset=st.sampled_from([0.0, -10.0, 3.3]),
    frac=st.floats(0.0, 1.0),
)
def test_engineering_round_trip_within_half_a_step(
    dtype: DataType, scale: float, offset: float, frac: float
) -> None:
    lo, hi = (
        (offset, offset + 100.0) if dtype.name.startswith("U") else (offset - 50.0, offset + 50.0)
    )
    out = output(dtype, scale=scale, offset=offset, minimum=lo, maximum=hi)
    value = lo + frac * (hi - lo)
    raw = encode_output(out, value)
    assert isinstance(raw, tuple)
    back = decode(raw, dtype, out.word_order, scale, offset)
    assert abs(back - value) <= scale / 2 + 1e-9 * max(1.0, abs(value))
    assert lo - 1e-9 <= back <= hi + 1e-9  # rounding never leaves the limits


@given(value=st.floats(-1e6, 1e6, allow_nan=False), order=st.sampled_from(list(WordOrder)))
def test_float_output_round_trip(value: float, order: WordOrder) -> None:
    out = output(DataType.FLOAT32, scale=1.0, minimum=-1e6, maximum=1e6, word_order=order)
    raw = encode_output(out, value)
    assert isinstance(raw, tuple)
    back = decode(raw, DataType.FLOAT32, order, 1.0, 0.0)
    assert back == struct.unpack(">f", struct.pack(">f", value))[0]


@pytest.mark.parametrize(
    "value",
    [-0.1, 100.01, math.nan, math.inf, -math.inf],
    ids=["below", "above", "nan", "inf", "-inf"],
)
def test_outside_limits_or_not_finite_is_refused(value: float) -> None:
    with pytest.raises(WriteRefused, match="out"):
        encode_output(output(), value)


def test_rounding_is_pulled_inside_the_limits() -> None:
    # max 99.97 at scale 0.1: the nearest step (100.0) is outside, so 99.9 is written
    out = output(maximum=99.97)
    assert encode_output(out, 99.97) == (999,)


def test_no_step_within_narrow_limits_is_refused() -> None:
    out = output(minimum=50.01, maximum=50.09)
    with pytest.raises(WriteRefused, match="raw step"):
        encode_output(out, 50.05)


def test_not_representable_in_type_is_refused() -> None:
    out = output(DataType.UINT16, scale=1.0, minimum=0.0, maximum=1e6)
    with pytest.raises(WriteRefused, match="not representable"):
        encode_output(out, 70000.0)


def test_bool_outputs() -> None:
    coil = output(DataType.BOOL, table=Table.COIL, scale=1.0, minimum=0.0, maximum=1.0)
    assert encode_output(coil, 1.0) is True
    assert encode_output(coil, 0) is False
    with pytest.raises(WriteRefused):
        encode_output(coil, 0.5)
    reg = output(DataType.BOOL, scale=1.0, minimum=0.0, maximum=1.0)
    assert encode_output(reg, 1.0) == (1,)


def test_read_only_table_is_refused() -> None:
    with pytest.raises(WriteRefused, match="read-only"):
        encode_output(output(table=Table.INPUT), 10.0)


def test_non_number_is_refused() -> None:
    with pytest.raises(WriteRefused, match="number"):
        encode_output(output(), "10")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from([DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32,
                           DataType.FLOAT32]),
    word_order=st.sampled_from(list(WordOrder)),
    scale=st.sampled_from([1.0, 0.1, 0.01, 2.5, -0.5]),
    offset=st.sampled_from([0.0, -40.0, 273.15]),
    words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
)
def test_the_precompiled_decoder_equals_decode(dtype: DataType, word_order: WordOrder,
                                               scale: float, offset: float,
                                               words: list[int]) -> None:
    raw = tuple(words[: dtype.words])
    expected = decode(raw, dtype, word_order, scale, offset)
    got = decoder(dtype, word_order, scale, offset)(raw)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_the_precompiled_decoder_refuses_what_decode_refuses() -> None:
    with pytest.raises(ValueError):
        decoder(DataType.INT32, WordOrder.BIG, 1.0, 0.0)((1,))
    with pytest.raises(ValueError):
        decoder(DataType.UINT16, WordOrder.BIG, 0.1, 0.0)((70000,))
