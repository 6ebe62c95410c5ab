"""A profile without [sim] and with several unit ids (an RS-485 bus), served over TCP."""

from __future__ import annotations

import pytest
from pymodbus.client import ModbusTcpClient

from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(30)


def test_several_units_constant_mid_range_values() -> None:
    with SimPlcProcess("pi4-rs485-rtu") as plc:
        assert "units=1,2,3" in plc.ready_line
        c = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
        assert c.connect()
        # unit 1: temp_a, temp_b (int16, 0.1 degC, range -20..200 -> 90.0 degC)
        assert c.read_input_registers(0, count=2, device_id=1).registers == [900, 900]
        assert c.read_discrete_inputs(0, device_id=1).bits[0] is True  # estop_ok
        # unit 2: temp_c at 0, pressures (uint16, 0.001 bar, range 0..10 -> 5.000 bar) at 2..3
        assert c.read_input_registers(0, count=1, device_id=2).registers == [900]
        assert c.read_input_registers(2, count=2, device_id=2).registers == [5000, 5000]
        # unit 3: outputs at their safe values, the watchdog timeout, the contactor coil
        assert c.read_holding_registers(0, count=2, device_id=3).registers == [0, 1000]
        assert c.read_holding_registers(101, device_id=3).registers == [2000]
        assert c.read_coils(0, device_id=3).bits[0] is False
        # an address of one unit does not exist on another
        rr = c.read_input_registers(2, count=1, device_id=1)
        assert rr.isError() and rr.exception_code == 2
        rr = c.read_holding_registers(0, device_id=1)
        assert rr.isError() and rr.exception_code == 2
        rr = c.read_input_registers(0, device_id=9)  # no such unit on the bus
        assert rr.isError() and rr.exception_code == 2
        assert not c.write_coil(0, True, device_id=3).isError()
        assert c.read_coils(0, device_id=3).bits[0] is True
        assert plc.control.state()["outputs"]["heater_contactor"] == 1.0
        c.close()
