"""The simulated PLC over Modbus RTU through a real socat pty pair (pyserial).

Some kernels refuse even/odd parity on ptys (tcsetattr PARENB -> EINVAL). The tests of the
8E1 default (what ``--rtu`` gives sim-tank, as ``with_connection`` does for the agent) skip
there; the rest use a copy of sim-tank configured for RTU with no parity and 2 stop bits
(the Modbus serial line rule for no parity), which every pty accepts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from sim.plc.harness import SimPlcProcess, SocatPair, pty_accepts_parity

pytestmark = pytest.mark.timeout(40)

@pytest.fixture
def rtu_plc(socat_pair: SocatPair, rtu_profile: str) -> Iterator[SimPlcProcess]:
    with SimPlcProcess(rtu_profile, rtu=socat_pair.a) as plc:
        yield plc


@pytest.fixture
def serial_client(socat_pair: SocatPair, rtu_plc: SimPlcProcess) -> Iterator[ModbusSerialClient]:
    c = ModbusSerialClient(
        socat_pair.b, baudrate=19200, parity="N", bytesize=8, stopbits=2, timeout=1, retries=0
    )
    assert c.connect()
    yield c
    c.close()


def test_tcp_profile_on_rtu_defaults_to_19200_8e1(socat_pair: SocatPair) -> None:
    if not pty_accepts_parity(socat_pair.a):
        pytest.skip("this kernel refuses parity on ptys")
    with SimPlcProcess("sim-coupler", rtu=socat_pair.a) as plc:
        assert "19200 8E1" in plc.ready_line
        c = ModbusSerialClient(socat_pair.b, baudrate=19200, parity="E", timeout=1, retries=0)
        assert c.connect()
        assert c.read_holding_registers(100, count=2, device_id=1).registers == [0, 1000]
        c.close()


def test_rtu_serial_settings_come_from_the_profile(rtu_plc: SimPlcProcess) -> None:
    assert "19200 8N2" in rtu_plc.ready_line


def test_rtu_read_write_and_log(rtu_plc: SimPlcProcess, serial_client: ModbusSerialClient) -> None:
    rtu_plc.control.fault("stuck", signal="temp_a")
    frozen = rtu_plc.control.state()["signals"]["temp_a"]
    rr = serial_client.read_input_registers(0, count=3, device_id=1)
    assert not rr.isError()
    assert rr.registers[0] == round(frozen * 10)
    assert not serial_client.write_register(100, 250, device_id=1).isError()
    assert serial_client.read_holding_registers(100, count=2, device_id=1).registers == [250, 1000]
    rec = rtu_plc.write_log()[-1]
    assert (rec["fc"], rec["address"], rec["values"], rec["accepted"]) == (6, 100, [250], True)
    gap = serial_client.read_input_registers(3, device_id=1)  # inside the declared span
    assert not gap.isError() and gap.registers == [0]
    bad = serial_client.read_input_registers(10, device_id=1)  # past it
    assert bad.isError() and bad.exception_code == 2


def test_rtu_other_unit_ids_stay_silent(
    rtu_plc: SimPlcProcess, serial_client: ModbusSerialClient
) -> None:
    with pytest.raises(ModbusIOException):
        serial_client.read_input_registers(0, device_id=7)
    assert not serial_client.read_input_registers(0, device_id=1).isError()


def test_mbpoll_reads_over_rtu(socat_pair: SocatPair, rtu_plc: SimPlcProcess) -> None:
    out = subprocess.run(
        ["mbpoll", "-m", "rtu", "-b", "19200", "-P", "none", "-s", "2", "-a", "1", "-t", "4",
         "-r", "101", "-c", "2", "-1", socat_pair.b],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    values = {
        line.split("]")[0] + "]": line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.startswith("[")
    }
    assert values == {"[101]": "0", "[102]": "1000"}  # heater 0.0 %, cooling 100.0 %
