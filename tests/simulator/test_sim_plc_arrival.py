"""The write log's ``t`` is when the request's bytes reached the sim PLC (issue 14).

Over real connections (TCP on loopback, RTU through a socat pty pair), against clocks that
are not the PLC's: the client's time just before it sent a request and just after the reply
came back bracket the record's ``t``, and ``t <= t_decoded`` (the decode stamp, the old
``t``). A request split over two reads is stamped with the first one: the test sends the
first part, waits until the PLC has read it (its socket's receive queue empty in
``/proc/net/tcp``, then a control round trip through the same event loop, so the read's
callback is over), and only then sends the rest.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusSerialClient

from sim.plc.harness import SimPlcProcess, SocatPair
from sim.stack import wait_for

pytestmark = pytest.mark.timeout(30)

SIM_COUPLER = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-coupler.toml"
HEATER = 100  # sim-coupler's heater_power holding register (unit 1)
REPLY_LEN = 12  # an fc 6 reply: MBAP (7) + fc, address, value


def write_frame(tid: int, address: int, value: int, unit: int = 1) -> bytes:
    """A Modbus TCP write-single-register request (fc 6), built here, not by the sim."""
    pdu = struct.pack(">BHH", 6, address, value)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@pytest.fixture
def plc() -> Iterator[SimPlcProcess]:
    with SimPlcProcess(str(SIM_COUPLER)) as p:
        yield p


@pytest.fixture
def conn(plc: SimPlcProcess) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", plc.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    yield s
    s.close()


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "the PLC closed the connection"
        buf += chunk
    return buf


def server_rx_queue(plc_port: int, client_port: int) -> int | None:
    """Bytes waiting in the PLC's end of our connection (``/proc/net/tcp``), None if the
    socket is not listed."""
    want = (f"0100007F:{plc_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if (f[1], f[2]) == want:
            return int(f[4].split(":")[1], 16)
    return None


def wait_read_by_plc(plc: SimPlcProcess, conn: socket.socket) -> None:
    """Until the PLC has read everything we sent and finished the read's callback."""
    port = conn.getsockname()[1]
    wait_for(lambda: server_rx_queue(plc.port, port) == 0, 10, "the PLC read our bytes")
    plc.control.state()  # served by the same event loop: the read's callback is over


def new_records(plc: SimPlcProcess, before: int, n: int) -> list[dict[str, Any]]:
    """The write log's records past the first ``before``, once there are ``n`` of them."""
    def more() -> list[dict[str, Any]] | None:
        log = plc.write_log()
        return log[before:] if len(log) >= before + n else None

    got: list[dict[str, Any]] = wait_for(more, 10, f"{n} new write-log record(s)")
    return got


def test_tcp_write_is_stamped_between_send_and_reply(
    plc: SimPlcProcess, conn: socket.socket
) -> None:
    for i, value in enumerate((250, 260, 270)):
        before = len(plc.write_log())
        sent = time.monotonic()
        conn.sendall(write_frame(i + 1, HEATER, value))
        reply = recv_exactly(conn, REPLY_LEN)
        replied = time.monotonic()
        assert reply == write_frame(i + 1, HEATER, value), "fc 6 echoes the request"
        [rec] = new_records(plc, before, 1)
        assert (rec["fc"], rec["address"], rec["values"], rec["accepted"]) == \
            (6, HEATER, [value], True)
        assert sent <= rec["t"] <= rec["t_decoded"] <= replied, rec


def test_a_split_request_is_stamped_at_its_first_byte(
    plc: SimPlcProcess, conn: socket.socket
) -> None:
    frame = write_frame(7, HEATER, 300)
    before = len(plc.write_log())
    sent = time.monotonic()
    conn.sendall(frame[:5])  # half the MBAP header: nothing the framer can decode
    wait_read_by_plc(plc, conn)
    rest = time.monotonic()
    conn.sendall(frame[5:])
    assert recv_exactly(conn, REPLY_LEN) == frame
    [rec] = new_records(plc, before, 1)
    assert sent <= rec["t"] < rest, "stamped when the first part arrived"
    assert rec["t_decoded"] >= rest, "decoded only once the rest had come"


def test_requests_sharing_a_read_share_its_stamp(
    plc: SimPlcProcess, conn: socket.socket
) -> None:
    first, second, third = (write_frame(tid, HEATER, v)
                            for tid, v in ((11, 310), (12, 320), (13, 330)))
    before = len(plc.write_log())
    sent = time.monotonic()
    conn.sendall(first + second + third[:3])  # two whole requests and the start of a third
    assert recv_exactly(conn, 2 * REPLY_LEN) == first + second
    wait_read_by_plc(plc, conn)
    rest = time.monotonic()
    conn.sendall(third[3:])
    assert recv_exactly(conn, REPLY_LEN) == third
    recs = new_records(plc, before, 3)
    assert [r["values"] for r in recs] == [[310], [320], [330]]
    assert recs[0]["t"] == recs[1]["t"] == recs[2]["t"], "all three began in one read"
    assert sent <= recs[0]["t"] < rest <= recs[2]["t_decoded"]
    assert all(r["t"] <= r["t_decoded"] for r in recs)


def test_rtu_write_is_stamped_between_send_and_reply(
    socat_pair: SocatPair, rtu_profile: str
) -> None:
    with SimPlcProcess(rtu_profile, rtu=socat_pair.a) as plc:
        client = ModbusSerialClient(socat_pair.b, baudrate=19200, parity="N", bytesize=8,
                                    stopbits=2, timeout=1, retries=0)
        assert client.connect()
        try:
            for value in (250, 260):
                before = len(plc.write_log())
                sent = time.monotonic()
                assert not client.write_register(HEATER, value, device_id=1).isError()
                replied = time.monotonic()
                [rec] = new_records(plc, before, 1)
                assert (rec["fc"], rec["values"], rec["accepted"]) == (6, [value], True)
                assert sent <= rec["t"] <= rec["t_decoded"] <= replied, rec
        finally:
            client.close()
