"""PlcClient over Modbus RTU: the simulated PLC on one end of a socat pty pair, pyserial on
the other.

Linux ptys refuse even parity (tcsetattr EINVAL), so the 19200 8E1 that ``with_connection``
gives a TCP profile moved to RTU cannot be used here: the tests write an RTU variant of
sim-tank at 19200 8N2 (the Modbus serial rule for no parity) and hand it to both ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.profile import Profile, RtuLink
from agent.model.readings import Quality
from agent.protocol.modbus.frames import encode_write_frames
from sim.plc.harness import SimPlcProcess, SocatPair

pytestmark = pytest.mark.timeout(40)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


SIM_TANK = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml"
TCP_PLC = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
RTU_PLC = 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\nbaudrate = 19200\nparity = "N"\n'


@pytest.fixture
def rtu_plc(socat_pair: SocatPair, tmp_path: Path) -> Iterator[tuple[SimPlcProcess, Profile]]:
    text = SIM_TANK.read_text()
    assert TCP_PLC in text
    path = tmp_path / "sim-tank-rtu.toml"
    path.write_text(text.replace(TCP_PLC, RTU_PLC))
    with SimPlcProcess(str(path), rtu=socat_pair.a) as plc:
        yield plc, with_connection(load_profile(path), rtu=socat_pair.b)


def test_rtu_values_match_the_plant(rtu_plc: tuple[SimPlcProcess, Profile]) -> None:
    plc, profile = rtu_plc

    async def body() -> None:
        c = PlcClient(profile)
        try:
            assert await c.connect()
            readings = await c.read_signals()
            readings = await c.read_signals()  # steady state after learning the block split
        finally:
            await c.close()
        state = plc.control.state()
        assert all(r.quality is Quality.GOOD for r in readings.values()), readings
        for name in ("temp_a", "temp_b", "temp_c"):
            assert readings[name].value == pytest.approx(state["temperature"], abs=0.5)
        for name in ("pressure_a", "pressure_b"):
            assert readings[name].value == pytest.approx(state["pressure"], abs=0.05)

    run(body())


def test_rtu_dropout_isolated_and_safe_state_one_frame(
    rtu_plc: tuple[SimPlcProcess, Profile],
) -> None:
    plc, profile = rtu_plc
    plc.control.fault("dropout", signal="pressure_b")

    async def body() -> None:
        c = PlcClient(profile)
        try:
            assert await c.connect()
            await c.read_signals()
            readings = await c.read_signals()
            assert readings["pressure_b"].quality is Quality.BAD
            assert "exception 4" in (readings["pressure_b"].error or "")
            good = [n for n, r in readings.items() if r.quality is Quality.GOOD]
            assert sorted(good) == ["pressure_a", "temp_a", "temp_b", "temp_c"]
            assert (await c.write_outputs({"heater_power": 0.0, "cooling_valve": 100.0})).ok
        finally:
            await c.close()

    run(body())
    log = plc.write_log()
    assert [(w["fc"], w["address"], w["values"], w["accepted"]) for w in log] == [
        (16, 100, [0, 1000], True)
    ]


def test_dead_unit_does_not_stall_the_bus(rtu_plc: tuple[SimPlcProcess, Profile]) -> None:
    """A signal on unit 7, which nobody on the bus answers: after the first poll its unit is
    backed off, and later polls ask only unit 1 (no timeout paid) and stay GOOD for it."""
    _plc, profile = rtu_plc
    ghost = dataclasses.replace(profile.signal("temp_a"), name="remote_temp", unit_id=7)
    profile = dataclasses.replace(profile, signals=(*profile.signals, ghost))

    async def body() -> None:
        c = PlcClient(profile)
        try:
            assert await c.connect()
            first = await c.read_signals()
            assert first["remote_temp"].quality is Quality.BAD
            assert "unit 7" in (first["remote_temp"].error or "")
            assert c.stats().backed_off_units == (7,)
            timeouts = c.stats().timeouts
            for _ in range(3):
                before = c.requests
                readings = await c.read_signals()
                unit1 = [r for n, r in readings.items() if n != "remote_temp"]
                assert all(r.quality is Quality.GOOD for r in unit1)
                assert "backed off" in (readings["remote_temp"].error or "")
                assert c.requests - before == 1  # unit 1's one block only
            assert c.stats().timeouts == timeouts
            assert c.stats().skipped >= 3
        finally:
            await c.close()

    run(body())


def test_rtu_frames_on_the_wire_match_the_pre_encoded_ones(
    rtu_plc: tuple[SimPlcProcess, Profile],
) -> None:
    """The watchdog's pre-encoded RTU frame, written raw to the pty, is taken by the PLC."""
    import serial

    plc, profile = rtu_plc
    frames = encode_write_frames(profile, {"heater_power": 0.0, "cooling_valve": 77.7})
    assert len(frames) == 1
    link = profile.plc.link
    assert isinstance(link, RtuLink)
    with serial.Serial(
        link.device, link.baudrate, parity=link.parity.value, stopbits=link.stopbits, timeout=1.0
    ) as port:
        port.write(frames[0])
        reply = port.read(8)  # fc16 reply: unit, fc, address, count, crc
    assert reply[:2] == bytes([1, 16])
    assert plc.control.state()["outputs"]["cooling_valve"] == pytest.approx(77.7)
