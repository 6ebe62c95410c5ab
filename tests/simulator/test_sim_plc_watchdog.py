"""The simulated PLC's own communication watchdog, from a Modbus master's side."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient

from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(30)

TIMEOUT_MS = 300


@pytest.fixture
def plc() -> Iterator[SimPlcProcess]:
    with SimPlcProcess("sim-coupler", watchdog_ms=TIMEOUT_MS) as p:  # falls back to safe
        yield p


@pytest.fixture
def client(plc: SimPlcProcess) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
    assert c.connect()
    yield c
    c.close()


def _fault_bit(c: ModbusTcpClient) -> bool:
    return bool(c.read_discrete_inputs(0).bits[0])


def _beat(c: ModbusTcpClient, n: int, period_s: float = 0.05, start: int = 1) -> None:
    for i in range(start, start + n):
        assert not c.write_register(200, i & 0xFFFF).isError()
        time.sleep(period_s)


def test_timeout_option_is_served(client: ModbusTcpClient) -> None:
    assert client.read_holding_registers(201).registers == [TIMEOUT_MS]


def test_no_fallback_before_the_first_heartbeat(
    plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    assert not client.write_registers(100, [500, 100]).isError()
    time.sleep(3 * TIMEOUT_MS / 1000)
    assert client.read_holding_registers(100, count=2).registers == [500, 100]
    assert not _fault_bit(client)


def test_fallback_when_heartbeat_stops_and_reset(
    plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    assert not client.write_registers(100, [500, 100]).isError()  # heater 50 %, cooling 10 %
    _beat(client, 15)  # 0.75 s of changing heartbeats: 2.5 timeouts
    assert client.read_holding_registers(100, count=2).registers == [500, 100]
    assert not _fault_bit(client)
    assert not any(r["source"] == "plc watchdog" for r in plc.write_log())

    last_beat = time.monotonic()
    client.write_register(200, 15)  # the same value again is no heartbeat
    deadline = time.monotonic() + 5.0
    while not _fault_bit(client):
        assert time.monotonic() < deadline, "watchdog never fell back"
        time.sleep(0.02)
    assert client.read_holding_registers(100, count=2).registers == [0, 1000]  # safe values
    falls = [r for r in plc.write_log() if r["source"] == "plc watchdog"]
    assert [(r["fc"], r["address"], r["values"]) for r in falls] == [
        (0, 100, [0]),
        (0, 101, [1000]),
    ]
    beats = [r for r in plc.write_log() if r["address"] == 200]
    assert beats[-1]["values"] == beats[-2]["values"] == [15]  # the repeat, then the last change
    assert falls[0]["t"] - beats[-2]["t"] >= TIMEOUT_MS / 1000
    assert falls[0]["t"] >= last_beat
    state = plc.control.state()["watchdog"]
    assert state["latched"] and state["trips"] == 1

    assert not client.write_coil(0, True).isError()  # reset while silent: stays latched
    assert _fault_bit(client)
    assert not client.write_registers(100, [200, 300]).isError()  # writes accepted while latched
    assert client.read_holding_registers(100, count=2).registers == [200, 300]
    _beat(client, 3, start=100)
    assert _fault_bit(client)  # still latched until the reset
    assert not client.write_coil(0, True).isError()
    assert not _fault_bit(client)
    assert plc.control.state()["watchdog"]["latched"] is False


def test_zero_disables_the_watchdog() -> None:
    with SimPlcProcess("sim-tank", watchdog_ms=0) as plc:
        c = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
        assert c.connect()
        assert c.read_holding_registers(201).registers == [0]
        assert not c.write_registers(100, [500, 100]).isError()
        _beat(c, 2)
        time.sleep(0.5)
        assert c.read_holding_registers(100, count=2).registers == [500, 100]
        c.close()
