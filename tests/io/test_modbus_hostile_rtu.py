"""The master over Modbus RTU against a hostile slave on a socat pty pair (pyserial both ends).

Bad CRC, wrong unit id and wrong function code give BAD readings naming the fault; the line
is flushed and waited quiet, not closed, and the next read is GOOD. A reply that comes after
its request timed out is never taken for a later request: not for a retry, not for a request
of the same shape (waited out), not for one of another shape (malformed by shape).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hostile_modbus import POISON, WATCHDOG_TIMEOUT_MS, Fault, HostileRtuResponder

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.io.modbus.session import Failure, ModbusSession
from agent.model.profile import Profile
from agent.model.readings import Quality
from agent.protocol.modbus import pdu
from sim.plc.harness import SocatPair

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
SIM_TANK = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml"
TCP_PLC = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
RTU_PLC = 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\nbaudrate = 19200\nparity = "N"\n'
TIMEOUT_S = 0.1  # sim-tank's
LATE_S = 0.13  # the late reply: 30 ms after the master's timeout, well inside its window


@pytest.fixture
def rtu(tmp_path: Path) -> Iterator[tuple[HostileRtuResponder, Profile]]:
    path = tmp_path / "sim-tank-rtu.toml"
    path.write_text(SIM_TANK.read_text().replace(TCP_PLC, RTU_PLC))
    with SocatPair() as pair, HostileRtuResponder(pair.a, late_s=LATE_S) as slave:
        yield slave, with_connection(load_profile(path), rtu=pair.b)


def run(profile: Profile, body: Callable[[PlcClient], Awaitable[T]]) -> T:
    async def main() -> T:
        c = PlcClient(profile)
        try:
            assert await c.connect()
            return await body(c)
        finally:
            await c.close()

    return asyncio.run(main())


def true_temps(readings: dict[str, object]) -> bool:
    return all(getattr(readings[n], "value", None) == pytest.approx(25.0)
               for n in ("temp_a", "temp_b", "temp_c"))


@pytest.mark.parametrize(("fault", "reason"), [
    (Fault.BAD_CRC, "malformed reply: CRC 0x"),
    (Fault.WRONG_UNIT, "malformed reply: unit id 2, expected 1"),
    (Fault.WRONG_FC, "malformed reply: function code 3, expected 4"),
])
def test_bad_rtu_reply_is_bad_and_the_line_recovers(
    rtu: tuple[HostileRtuResponder, Profile], fault: Fault, reason: str
) -> None:
    slave, profile = rtu
    slave.inject(fault, fc=4)

    async def body(c: PlcClient) -> None:
        bad = await c.read_signals()
        assert all(r.quality is Quality.BAD and (r.error or "").startswith(reason)
                   for r in bad.values()), bad
        assert c.stats().malformed == 1 and c.requests == 1
        assert c.connected  # RTU: flushed and waited quiet, the port stays open
        good = await c.read_signals()
        assert all(r.quality is Quality.GOOD for r in good.values()) and true_temps(good)

    run(profile, body)
    assert [(r.fc, r.fault) for r in slave.received()] == [(4, fault), (4, Fault.NONE)]


def test_late_reply_to_a_retried_read_is_not_the_retry_s_answer(
    rtu: tuple[HostileRtuResponder, Profile],
) -> None:
    """The first attempt's reply (poisoned) comes 30 ms after the master gave up; the retry
    is sent only after the line's late window, so it gets its own, true reply."""
    slave, profile = rtu
    slave.inject(Fault.LATE, fc=4)

    async def body(c: PlcClient) -> dict[str, object]:
        return dict(await c.read_signals())

    readings = run(profile, body)
    assert slave.late_sent + slave.late_void == 1
    if slave.late_sent:  # otherwise the machine was too loaded for the late reply to be sent
        assert all(r.quality is Quality.GOOD for r in readings.values()), readings  # type: ignore[attr-defined]
        assert true_temps(readings)
    assert [r.fault for r in slave.received()] == [Fault.LATE, Fault.NONE]


def session_for(profile: Profile) -> ModbusSession:
    return ModbusSession(dataclasses.replace(profile.plc, retries=0))


@pytest.mark.parametrize("trial", range(3))
def test_late_reply_is_never_taken_for_a_request_of_the_same_shape(
    rtu: tuple[HostileRtuResponder, Profile], trial: int
) -> None:
    """Holding @100 x2 times out; its poisoned reply comes while the master is about to ask
    holding @200 x2 (a reply of the very same shape): that request waits the window out and
    gets the true values of 200..201."""
    slave, profile = rtu
    slave.inject(Fault.LATE, fc=3)

    async def body() -> tuple[object, object]:
        s = session_for(profile)
        assert await s.connect()
        loop = asyncio.get_running_loop()
        try:
            first = await s.request(pdu.read(3, 1, 100, 2), loop.time)
            second = await s.request(pdu.read(3, 1, 200, 2), loop.time)
        finally:
            await s.close()
        return first, second

    first, second = asyncio.run(body())
    assert getattr(first, "failure", None) is Failure.TIMEOUT
    assert getattr(second, "response", None) == pdu.Registers((0, WATCHDOG_TIMEOUT_MS))
    got = slave.received()
    assert [(r.address, r.fault) for r in got] == [(100, Fault.LATE), (200, Fault.NONE)]
    if slave.late_sent:  # the late reply was on the line before the second request
        assert got[1].t - got[0].t >= 2 * TIMEOUT_S - 0.01  # timeout + the late window


def test_late_reply_is_never_taken_for_a_request_of_another_shape(
    rtu: tuple[HostileRtuResponder, Profile],
) -> None:
    """The late reply of a holding read lands while an input read of 10 waits (the slave
    sends it right before that read's own reply; the read was sent after a short silence
    only): rejected by its shape, never decoded as temperatures; the line is flushed and
    the next read is true."""
    slave, profile = rtu
    slave.late_until_next = True
    slave.inject(Fault.LATE, fc=3)

    async def body() -> list[object]:
        s = session_for(profile)
        assert await s.connect()
        loop = asyncio.get_running_loop()
        try:
            return [await s.request(req, loop.time) for req in (
                pdu.read(3, 1, 100, 2), pdu.read(4, 1, 0, 10), pdu.read(4, 1, 0, 10))]
        finally:
            await s.close()

    first, second, third = asyncio.run(body())
    assert getattr(first, "failure", None) is Failure.TIMEOUT
    assert slave.late_sent == 1
    assert getattr(second, "error", None) == "malformed reply: function code 3, expected 4"
    regs = getattr(third, "response", None)
    assert isinstance(regs, pdu.Registers) and regs.registers[:3] == (250, 250, 250)
    for outcome in (second, third):
        reply = getattr(outcome, "response", None)
        assert reply is None or POISON not in getattr(reply, "registers", ())
