"""The simulated PLC as a real process over Modbus TCP, seen by a plain pymodbus client."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from sim.plc.control import ControlClient, ControlError
from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(30)

F32 = ModbusTcpClient.DATATYPE.FLOAT32


@pytest.fixture
def sim_plc() -> Iterator[SimPlcProcess]:
    """The sim-tank plant behind a dumb coupler (no PLC program moving the outputs)."""
    with SimPlcProcess("sim-coupler") as plc:
        yield plc


@pytest.fixture
def client(sim_plc: SimPlcProcess) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient("127.0.0.1", port=sim_plc.port, timeout=1, retries=0)
    assert c.connect()
    yield c
    c.close()


def _read_all(c: ModbusTcpClient) -> dict[str, float]:
    """Decode sim-tank's signals with pymodbus's own converter (independent of the sim)."""
    regs = c.read_input_registers(0, count=3).registers
    temps = [struct.unpack(">h", struct.pack(">H", r))[0] * 0.1 for r in regs]
    pa = c.convert_from_registers(c.read_input_registers(4, count=2).registers, F32)
    pb = c.convert_from_registers(
        c.read_input_registers(8, count=2).registers, F32, word_order="little"
    )
    assert isinstance(pa, float) and isinstance(pb, float)
    return dict(zip(("temp_a", "temp_b", "temp_c"), temps, strict=True)) | {
        "pressure_a": pa,
        "pressure_b": pb,
    }


def _wait(pred: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_reads_match_state_per_type_and_word_order(
    sim_plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    for name in ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b"):
        sim_plc.control.fault("stuck", signal=name)  # freeze them to compare exactly
    state = sim_plc.control.state()
    seen = _read_all(client)
    for name in ("temp_a", "temp_b", "temp_c"):
        assert seen[name] == pytest.approx(state["signals"][name], abs=0.051)  # 0.1 quantum
    for name in ("pressure_a", "pressure_b"):
        assert seen[name] == pytest.approx(state["signals"][name], rel=1e-6)
    assert 20.0 < seen["temp_a"] < 30.0 and 1.0 < seen["pressure_a"] < 1.5
    # outputs power up at their safe values; the watchdog timeout register holds the profile's
    assert client.read_holding_registers(100, count=2).registers == [0, 1000]
    assert client.read_holding_registers(201).registers == [1000]
    assert client.read_discrete_inputs(0).bits[0] is False


@pytest.fixture
def strict_client() -> Iterator[ModbusTcpClient]:
    """A plain client on ``python -m sim plc --strict-map`` (only declared addresses exist)."""
    with SimPlcProcess("sim-coupler", extra_args=("--strict-map",)) as plc:
        c = ModbusTcpClient("127.0.0.1", port=plc.port, timeout=1, retries=0)
        assert c.connect()
        yield c
        c.close()


def _read(c: ModbusTcpClient, kind: str, address: int, count: int) -> list[int] | int:
    """Registers (bits as 0/1, cut to ``count``) or the exception code of the reply."""
    read = {
        "input": c.read_input_registers,
        "holding": c.read_holding_registers,
        "coil": c.read_coils,
        "discrete": c.read_discrete_inputs,
    }[kind]
    rr = read(address, count=count)
    if rr.isError():
        return int(rr.exception_code)
    if kind in ("coil", "discrete"):
        return [int(b) for b in rr.bits[:count]]
    return list(rr.registers)


# sim-coupler's (sim-tank's without its flag coil) declared spans: input 0..9 (gaps 3, 6,
# 7), holding 100..201 (gap 102..199), coil 0..0, discrete 0..0
OUTSIDE_SPAN = [
    ("input", 10, 1),
    ("input", 0, 11),  # runs past the last declared input register
    ("holding", 99, 1),
    ("holding", 201, 2),
    ("holding", 0, 1),
    ("coil", 1, 1),  # only coil 0 (watchdog reset) exists
    ("coil", 0, 2),  # starts on coil 0, runs past it (same 16-bit word)
    ("discrete", 5, 1),
    ("discrete", 0, 2),
]
INSIDE_SPAN = [
    ("input", 3, 1),  # gap between temp_c and pressure_a
    ("input", 0, 4),  # runs into the gap
    ("input", 6, 2),
    ("holding", 102, 1),
    ("holding", 150, 50),
]


@pytest.mark.parametrize(("kind", "address", "count"), OUTSIDE_SPAN)
def test_addresses_outside_the_span_answer_exception_2(
    client: ModbusTcpClient, kind: str, address: int, count: int
) -> None:
    assert _read(client, kind, address, count) == 2


@pytest.mark.parametrize(("kind", "address", "count"), OUTSIDE_SPAN + INSIDE_SPAN)
def test_strict_map_refuses_every_undeclared_address(
    strict_client: ModbusTcpClient, kind: str, address: int, count: int
) -> None:
    assert _read(strict_client, kind, address, count) == 2


def test_undeclared_addresses_inside_the_span_read_as_zero(
    sim_plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    for name in ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b"):
        sim_plc.control.fault("stuck", signal=name)
    regs = _read(client, "input", 0, 10)
    assert isinstance(regs, list) and len(regs) == 10
    assert [regs[3], regs[6], regs[7]] == [0, 0, 0]
    temps = [struct.unpack(">h", struct.pack(">H", r))[0] * 0.1 for r in regs[0:3]]
    pa = client.convert_from_registers(regs[4:6], F32)
    pb = client.convert_from_registers(regs[8:10], F32, word_order="little")
    state = sim_plc.control.state()["signals"]
    assert temps == pytest.approx([state[n] for n in ("temp_a", "temp_b", "temp_c")], abs=0.051)
    assert [pa, pb] == pytest.approx([state["pressure_a"], state["pressure_b"]], rel=1e-6)
    assert _read(client, "holding", 100, 102) == [0, 1000] + [0] * 98 + [0, 1000]


@pytest.mark.parametrize(
    ("address", "value"),
    [(5, 1), (201, 0), (300, 1), (150, 1)],  # undeclared, read-only timeout, undeclared, gap
)
def test_bad_writes_answer_exception_2_and_are_logged(
    sim_plc: SimPlcProcess, client: ModbusTcpClient, address: int, value: int
) -> None:
    rr = client.write_register(address, value)
    assert rr.isError() and rr.exception_code == 2
    _wait(lambda: len(sim_plc.write_log()) == 1)
    rec = sim_plc.write_log()[0]
    assert (rec["address"], rec["accepted"], rec["error"]) == (address, False, "exception 2")
    assert client.read_holding_registers(201).registers == [1000]
    assert client.read_holding_registers(150).registers == [0]  # a gap stays 0
    assert "refused write fc 6 unit 1 holding" in sim_plc.stderr_path.read_text()


def test_writes_touching_a_gap_change_nothing(
    sim_plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    rr = client.write_registers(101, [500, 7])  # cooling_valve, then the gap at 102
    assert rr.isError() and rr.exception_code == 2
    rr = client.write_coils(0, [True, True])  # the reset coil, then past the coil span
    assert rr.isError() and rr.exception_code == 2
    assert _read(client, "holding", 100, 3) == [0, 1000, 0]
    _wait(lambda: len(sim_plc.write_log()) == 2)
    assert [(r["fc"], r["accepted"]) for r in sim_plc.write_log()] == [(16, False), (15, False)]
    assert sim_plc.control.state()["outputs"]["cooling_valve"] == 100.0


def test_writes_are_logged_with_time_in_memory_and_on_disk(
    sim_plc: SimPlcProcess, client: ModbusTcpClient
) -> None:
    t0 = time.monotonic()
    assert not client.write_register(100, 400).isError()
    assert not client.write_registers(100, [350, 200]).isError()
    assert not client.write_coil(0, True).isError()
    t1 = time.monotonic()
    _wait(lambda: len(sim_plc.write_log()) == 3)
    disk = sim_plc.write_log()
    assert disk == sim_plc.control.writes()
    assert [(r["fc"], r["table"], r["address"], r["values"]) for r in disk] == [
        (6, "holding", 100, [400]),
        (16, "holding", 100, [350, 200]),
        (5, "coil", 0, [1]),
    ]
    assert disk[1]["names"] == ["heater_power", "cooling_valve"]
    assert all(r["accepted"] and r["source"] == "modbus" and r["unit"] == 1 for r in disk)
    times = [r["t"] for r in disk]
    assert t0 <= times[0] <= times[1] <= times[2] <= t1
    assert sim_plc.control.writes(since=2) == disk[2:]
    state = sim_plc.control.state()
    assert state["outputs"] == {"heater_power": 35.0, "cooling_valve": 20.0}


def _heat(sim_plc: SimPlcProcess) -> None:
    sim_plc.control.set_output("heater_power", 100.0)
    sim_plc.control.set_output("cooling_valve", 0.0)


def test_fault_stuck_freezes_one_channel(sim_plc: SimPlcProcess, client: ModbusTcpClient) -> None:
    _heat(sim_plc)
    sim_plc.control.fault("stuck", signal="temp_a")
    before = _read_all(client)
    _wait(lambda: _read_all(client)["temp_b"] > before["temp_b"] + 1.0)
    assert _read_all(client)["temp_a"] == before["temp_a"]
    sim_plc.control.clear("temp_a")
    _wait(lambda: abs(_read_all(client)["temp_a"] - _read_all(client)["temp_b"]) < 1.0)


@pytest.mark.parametrize(
    ("kind", "value", "check"),
    [
        ("offset", 50.0, lambda a, b: 49.0 < a - b < 51.0),
        ("out_of_range", None, lambda a, b: a > 250.0),
        ("drift", 100.0, lambda a, b: a - b > 20.0),
    ],
)
def test_fault_moves_the_channel(
    sim_plc: SimPlcProcess, client: ModbusTcpClient, kind: str, value: float | None, check: object
) -> None:
    sim_plc.control.fault(kind, signal="temp_a", value=value)
    _wait(lambda: check(_read_all(client)["temp_a"], _read_all(client)["temp_b"]))  # type: ignore[operator]
    assert abs(_read_all(client)["temp_c"] - _read_all(client)["temp_b"]) < 1.0


def test_fault_noise_spreads_the_channel(sim_plc: SimPlcProcess, client: ModbusTcpClient) -> None:
    sim_plc.control.fault("noise", signal="pressure_b", value=2.0)
    seen = []
    for _ in range(10):
        seen.append(_read_all(client)["pressure_b"])
        time.sleep(0.02)
    assert max(seen) - min(seen) > 0.5


def test_fault_dropout_answers_exception_4(sim_plc: SimPlcProcess, client: ModbusTcpClient) -> None:
    sim_plc.control.fault("dropout", signal="pressure_a")
    for address, count in ((4, 2), (5, 1)):
        rr = client.read_input_registers(address, count=count)
        assert rr.isError() and rr.exception_code == 4
    assert not client.read_input_registers(8, count=2).isError()
    sim_plc.control.clear()
    assert not client.read_input_registers(4, count=2).isError()


def test_fault_slow_replies(sim_plc: SimPlcProcess) -> None:
    impatient = ModbusTcpClient("127.0.0.1", port=sim_plc.port, timeout=0.2, retries=0)
    assert impatient.connect()
    assert not impatient.read_input_registers(0).isError()
    sim_plc.control.fault("slow", delay_ms=1000)
    with pytest.raises(ModbusIOException):  # no reply within 0.2 s
        impatient.read_input_registers(0)
    impatient.close()
    sim_plc.control.clear()
    patient = ModbusTcpClient("127.0.0.1", port=sim_plc.port, timeout=1, retries=0)
    assert patient.connect()
    assert not patient.read_input_registers(0).isError()
    patient.close()


def _raw_read_input(sock: socket.socket, tid: int) -> bytes:
    # MBAP: tid, protocol 0, length 6, unit 1 | PDU: fc 4, address 0, count 1
    sock.sendall(struct.pack(">HHHBBHH", tid, 0, 6, 1, 4, 0, 1))
    return sock.recv(256)


def test_fault_stop_accepts_but_never_replies(sim_plc: SimPlcProcess) -> None:
    sim_plc.control.fault("stop")
    with socket.create_connection(("127.0.0.1", sim_plc.port), timeout=0.3) as s:
        with pytest.raises(TimeoutError):
            _raw_read_input(s, 1)
        sim_plc.control.clear()
        s.settimeout(2.0)
        reply = _raw_read_input(s, 2)
    assert reply[:2] == b"\x00\x02" and reply[7] == 4


def test_fault_drop_closes_client_connections(sim_plc: SimPlcProcess) -> None:
    with socket.create_connection(("127.0.0.1", sim_plc.port), timeout=2.0) as s:
        assert _raw_read_input(s, 1)[7] == 4
        assert sim_plc.control.fault("drop")["dropped"] == 1
        assert s.recv(256) == b""  # closed by the PLC
    with socket.create_connection(("127.0.0.1", sim_plc.port), timeout=2.0) as s2:
        assert _raw_read_input(s2, 1)[7] == 4  # new connections are served


def test_control_channel_rejects_bad_requests_and_goes_on(sim_plc: SimPlcProcess) -> None:
    ctl = ControlClient(sim_plc.control_path)
    for bad in (
        {"cmd": "nope"},
        {"cmd": "fault", "kind": "stuck", "signal": "no_such_signal"},
        {"cmd": "fault", "kind": "melt", "signal": "temp_a"},
        {"cmd": "fault", "kind": "offset"},
        {"cmd": "set_output", "name": "heater_power", "value": "hot"},
    ):
        with pytest.raises(ControlError):
            ctl.request(bad)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sim_plc.control_path))
        s.sendall(b'this is not json\n{"cmd": "ping"}\n')
        replies = b""
        while replies.count(b"\n") < 2:
            replies += s.recv(4096)
    assert replies.startswith(b'{"ok": false') and replies.endswith(b'{"ok": true}\n')
    assert ctl.state()["errors"] == 6


def mbpoll(*args: str) -> dict[int, float]:
    """Run mbpoll once (-1) and parse its "[ref]: value" lines."""
    out = subprocess.run(
        ["mbpoll", *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return {
        int(line.split("]")[0].lstrip("[")): float(line.split(":", 1)[1])
        for line in out.splitlines()
        if line.startswith("[")
    }


def test_mbpoll_reads_documented_raw_values_over_tcp(sim_plc: SimPlcProcess) -> None:
    for name in ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b"):
        sim_plc.control.fault("offset", signal=name, value=10.0)
        sim_plc.control.fault("stuck", signal=name)
    state = sim_plc.control.state()["signals"]
    tcp = ("-m", "tcp", "-p", str(sim_plc.port), "-1")
    # input registers 0..2 (mbpoll refs 1..3): int16 tenths of degC
    temps = mbpoll(*tcp, "-t", "3", "-r", "1", "-c", "3", "127.0.0.1")
    assert temps == {
        1 + i: round(state[n] * 10) for i, n in enumerate(("temp_a", "temp_b", "temp_c"))
    }
    # float32 at 4 (big word order, mbpoll -B) and at 8 (little word order, mbpoll default)
    pa = mbpoll(*tcp, "-t", "3:float", "-B", "-r", "5", "-c", "1", "127.0.0.1")
    pb = mbpoll(*tcp, "-t", "3:float", "-r", "9", "-c", "1", "127.0.0.1")
    assert pa[5] == pytest.approx(state["pressure_a"], rel=1e-4)
    assert pb[9] == pytest.approx(state["pressure_b"], rel=1e-4)
    # holding 100..101: heater 0.0 %, cooling 100.0 % (scale 0.1); 201: watchdog timeout ms
    assert mbpoll(*tcp, "-t", "4", "-r", "101", "-c", "2", "127.0.0.1") == {101: 0, 102: 1000}
    assert mbpoll(*tcp, "-t", "4", "-r", "202", "-c", "1", "127.0.0.1") == {202: 1000}


def test_fault_malformed_answers_reads_with_the_wrong_transaction_id(
        sim_plc: SimPlcProcess) -> None:
    sim_plc.control.fault("malformed")
    assert sim_plc.control.state()["plc"]["malformed"] is True
    with socket.create_connection(("127.0.0.1", sim_plc.port), timeout=2.0) as s:
        reply = _raw_read_input(s, 7)
        assert struct.unpack(">H", reply[:2])[0] == 8 and reply[7] == 4, reply.hex()
        # a write is answered as usual (and counts in the write log as accepted)
        s.sendall(struct.pack(">HHHBBHH", 9, 0, 6, 1, 6, 200, 5))
        echo = s.recv(256)
        assert struct.unpack(">H", echo[:2])[0] == 9 and echo[7] == 6, echo.hex()
        sim_plc.control.clear()
        assert struct.unpack(">H", _raw_read_input(s, 10)[:2])[0] == 10
    assert [w["accepted"] for w in sim_plc.control.writes() if w["address"] == 200] == [True]
