"""Pure parts of the simulated PLC: codec, process model, faults, comm watchdog, register map."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.profile.load import load_profile
from agent.model.profile import DataType, Table, WordOrder
from sim.plc import faults as flt
from sim.plc.codec import decode, encode
from sim.plc.plc import SimPlc
from sim.plc.process import TankModel
from sim.plc.registers import Kind, RegisterMap
from sim.plc.watchdog import CommWatchdog

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("value", "dtype", "order", "scale", "expected"),
    [
        (25.3, DataType.INT16, WordOrder.BIG, 0.1, (253,)),
        (-1.0, DataType.INT16, WordOrder.BIG, 0.1, (0xFFF6,)),
        (40.0, DataType.UINT16, WordOrder.BIG, 0.1, (400,)),
        (1e9, DataType.UINT16, WordOrder.BIG, 1.0, (0xFFFF,)),  # saturates like an AI card
        (0x12345678, DataType.UINT32, WordOrder.BIG, 1.0, (0x1234, 0x5678)),
        (0x12345678, DataType.UINT32, WordOrder.LITTLE, 1.0, (0x5678, 0x1234)),
        (-2, DataType.INT32, WordOrder.BIG, 1.0, (0xFFFF, 0xFFFE)),
        (1.5, DataType.FLOAT32, WordOrder.BIG, 1.0, (0x3FC0, 0x0000)),
        (1.5, DataType.FLOAT32, WordOrder.LITTLE, 1.0, (0x0000, 0x3FC0)),
        (1.0, DataType.BOOL, WordOrder.BIG, 1.0, (1,)),
    ],
)
def test_codec_layouts(
    value: float, dtype: DataType, order: WordOrder, scale: float, expected: tuple[int, ...]
) -> None:
    assert encode(value, dtype, order, scale, 0.0) == expected


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(list(WordOrder)),
    st.floats(-100, 100, allow_nan=False),
)
def test_float32_round_trip_against_struct(value: float, order: WordOrder, offset: float) -> None:
    words = encode(value, DataType.FLOAT32, order, 1.0, offset)
    hi, lo = words if order is WordOrder.BIG else words[::-1]
    raw = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
    assert raw == pytest.approx(value - offset, rel=1e-6, abs=1e-3)
    assert decode(words, DataType.FLOAT32, order, 1.0, offset) == pytest.approx(
        value, rel=1e-6, abs=1e-3
    )


@given(st.integers(-0x8000_0000, 0x7FFF_FFFF), st.sampled_from(list(WordOrder)))
def test_int32_round_trip(raw: int, order: WordOrder) -> None:
    assert (
        decode(encode(raw, DataType.INT32, order, 1.0, 0.0), DataType.INT32, order, 1.0, 0.0) == raw
    )


def test_codec_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="needs 2"):
        decode((1,), DataType.FLOAT32, WordOrder.BIG, 1.0, 0.0)
    with pytest.raises(ValueError, match="cannot encode"):
        encode(float("nan"), DataType.INT16, WordOrder.BIG, 1.0, 0.0)


def test_tank_settles_between_60_and_70_at_40_20_and_cools_in_safe_state() -> None:
    tank = TankModel(0.0)
    assert tank.state.temperature == pytest.approx(25.0)
    hot = tank.step(600.0, 40.0, 20.0)
    assert 60.0 <= hot.temperature <= 70.0  # below the sim-tank trip at 95 degC
    assert hot.pressure > 1.0
    cool = tank.step(630.0, 0.0, 100.0)
    assert cool.temperature < hot.temperature - 20.0
    assert cool.pressure < hot.pressure


def test_tank_heats_past_the_trip_with_full_heater_and_no_cooling() -> None:
    tank = TankModel(0.0)
    assert tank.step(120.0, 100.0, 0.0).temperature > 95.0


def test_faults_change_the_served_value() -> None:
    rng = random.Random(1)
    mk = lambda kind, v: flt.SignalFault(kind, v, 10.0, 42.0)  # noqa: E731
    assert flt.apply(50.0, mk(flt.FaultKind.STUCK, 0.0), 20.0, rng) == 42.0
    assert flt.apply(50.0, mk(flt.FaultKind.DRIFT, 2.0), 15.0, rng) == 60.0
    assert flt.apply(50.0, mk(flt.FaultKind.OFFSET, -5.0), 15.0, rng) == 45.0
    assert flt.apply(50.0, mk(flt.FaultKind.OUT_OF_RANGE, 300.0), 15.0, rng) == 300.0
    noisy = {flt.apply(50.0, mk(flt.FaultKind.NOISE, 5.0), 15.0, rng) for _ in range(20)}
    assert len(noisy) == 20 and max(noisy) - min(noisy) > 1.0
    assert flt.apply(50.0, None, 15.0, rng) == 50.0
    assert flt.default_value(flt.FaultKind.OUT_OF_RANGE, -20.0, 250.0) > 250.0


def test_watchdog_fires_once_after_silence_and_not_while_heartbeat_changes() -> None:
    wd = CommWatchdog(1000)
    assert not wd.check(100.0)  # not armed before the first heartbeat
    for i in range(20):
        wd.heartbeat(i, 100.0 + i * 0.5)
        assert not wd.check(100.0 + i * 0.5 + 0.4)
    wd.heartbeat(19, 110.4)  # same value again: not a heartbeat
    assert not wd.check(110.49)
    assert wd.check(110.5)
    assert not wd.check(111.0)  # once per silence
    assert wd.latched
    assert not wd.reset(111.0)  # no heartbeat coming in: stays latched
    wd.heartbeat(20, 111.1)
    assert wd.latched
    assert wd.reset(111.2)
    assert not wd.latched
    assert wd.status().trips == 1


def test_watchdog_zero_is_disabled() -> None:
    wd = CommWatchdog(0)
    wd.heartbeat(1, 0.0)
    assert not wd.check(1e6)


def test_register_map_of_sim_tank() -> None:
    profile = load_profile("sim-tank")
    rm = RegisterMap(profile)
    assert rm.units == (1,)
    assert rm.addresses(1, Table.INPUT) == [0, 1, 2, 4, 5, 8, 9]
    assert rm.addresses(1, Table.HOLDING) == [100, 101, 200, 201]
    assert rm.cells[(1, Table.HOLDING, 200)].kind is Kind.HEARTBEAT
    assert rm.check_write(1, Table.HOLDING, 100, 2)
    assert not rm.check_write(1, Table.HOLDING, 201, 1)  # the watchdog timeout is read-only
    assert not rm.check_write(1, Table.HOLDING, 150, 1)  # a gap is read-only
    assert rm.span(1, Table.INPUT) == (0, 9)
    assert rm.span(1, Table.HOLDING) == (100, 201)
    assert rm.span(2, Table.INPUT) is None
    # contiguous (default): the whole span reads, nothing outside it
    assert rm.check_read(1, Table.INPUT, 3, 1)
    assert rm.check_read(1, Table.INPUT, 0, 10)
    assert not rm.check_read(1, Table.INPUT, 0, 11)
    assert not rm.check_read(1, Table.INPUT, 0, 0)
    assert not rm.check_read(1, Table.HOLDING, 99, 2)
    assert not rm.check_read(2, Table.INPUT, 0, 1)
    strict = RegisterMap(profile, strict=True)
    assert not strict.check_read(1, Table.INPUT, 3, 1)
    assert not strict.check_read(1, Table.INPUT, 0, 10)
    assert strict.check_read(1, Table.INPUT, 0, 3)


def test_simplc_in_process_tick_follows_outputs() -> None:
    profile = load_profile("sim-coupler")  # no PLC program: the plant gets the registers
    plc = SimPlc(profile, seed=3, clock=lambda: 0.0)
    plc.set_output("heater_power", 100.0, now=0.0)
    plc.set_output("cooling_valve", 0.0, now=0.0)
    plc.tick(60.0)
    state = plc.state(60.0)
    assert state["temperature"] > 80.0
    for name in ("temp_a", "temp_b", "temp_c"):
        assert abs(state["signals"][name] - state["temperature"]) < 0.3
    assert [w.source for w in plc.writes()] == ["control", "control"]
