"""The reason the native watchdog exists: it fires while another thread holds the GIL.

A child process (tests/firmware/watchdog_child.py) connects to a listener here, arms the watchdog
with that TCP connection, then hangs with the GIL held. We assert, from outside, that the
payload arrives, the file action happened and the child's stats record the fire. The same
tests on the pure-Python twin are strict xfails: its thread needs the GIL to run at all.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import WriteMultipleRegistersRequest
from watchdog_kit import child_env

from sim.plc.harness import SimPlcProcess

CHILD = Path(__file__).with_name("watchdog_child.py")
ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = b"\x00\x2a SAFE STATE \xff"
REPLY = b"ACK"

TWIN_CANNOT = pytest.mark.xfail(
    strict=True,
    reason="the pure-Python watchdog thread needs the GIL to run, so it cannot fire while "
    "another thread holds it; this is why firmware_bridge._watchdog is written in C",
)
IMPLS = [
    pytest.param("native", id="native"),
    pytest.param("python", id="python", marks=TWIN_CANNOT),
]


class Child:
    """The child process; killed on exit whatever happened."""

    def __init__(self, cfg: dict[str, object]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),  # the same firmware_bridge build as this process (CI: sanitized)
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != b"ARMED\n":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"child did not arm: {line!r} {err.decode()[-2000:]}")

    def release(self) -> dict[str, object]:
        """End a "gil-read" hang and return the stats the child printed."""
        out, err = self.proc.communicate(b"x", timeout=10)
        assert self.proc.returncode == 0, err.decode()[-2000:]
        stats: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    yield srv
    srv.close()


def child_cfg(port: int, **kw: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "impl": "native",
        "deadline_s": 0.1,
        "connect": ["127.0.0.1", port],
        "payload_hex": PAYLOAD.hex(),
        "reply_timeout_s": 5.0,
        "files": [],
        "exit_code": None,
        "hang": "gil-read",
    }
    cfg.update(kw)
    return cfg


def recv_exactly(sock: socket.socket, n: int, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.timeout(30)
def test_fires_while_the_gil_is_held(impl: str, listener: socket.socket, tmp_path: Path) -> None:
    led = tmp_path / "fault_led"
    led.write_bytes(b"0")
    port = listener.getsockname()[1]
    child = Child(child_cfg(port, impl=impl, files=[[str(led), b"1".hex()]]))
    try:
        conn, _ = listener.accept()
        with conn:
            # The child is now blocked in a C call holding the GIL until we release it.
            got = recv_exactly(conn, len(PAYLOAD), timeout_s=3.0)
            assert got == PAYLOAD, "no payload while the child held the GIL"
            conn.sendall(REPLY)
            stats = child.release()
        assert led.read_bytes() == b"1"
        assert stats["fired"] is True and stats["fires"] == 1 and stats["kicks"] == 0
        assert isinstance(stats["worst_lateness_ns"], int) and stats["worst_lateness_ns"] >= 0
        assert stats["last_lateness_ns"] == stats["worst_lateness_ns"]
        assert stats["last_fire_results"] == {
            "fd_writes": [len(PAYLOAD)],
            "replies": [len(REPLY)],
            "file_writes": [0],
        }
    finally:
        child.kill()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.timeout(30)
def test_exit_code_ends_a_regex_hang(impl: str, listener: socket.socket, tmp_path: Path) -> None:
    led = tmp_path / "fault_led"
    led.write_bytes(b"0")
    port = listener.getsockname()[1]
    cfg = child_cfg(
        port,
        impl=impl,
        hang="regex",
        exit_code=7,
        reply_timeout_s=0.0,
        files=[[str(led), b"1".hex()]],
    )
    child = Child(cfg)
    try:
        conn, _ = listener.accept()
        with conn:
            try:
                child.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                pytest.fail("the child was not ended by the watchdog while it held the GIL")
            assert child.proc.returncode == 7
            assert recv_exactly(conn, len(PAYLOAD) + 1, timeout_s=1.0) == PAYLOAD  # then EOF
        assert led.read_bytes() == b"1"
    finally:
        child.kill()


def safe_state_frame() -> bytes:
    """sim-tank's outputs at their safe values: holding 100..101 = 0 (heater), 1000 (cooling).

    Built with pymodbus's own framer (the agent builds the same bytes with its own codec,
    agent/protocol/modbus/frames.py; tests/protocol/test_modbus_adu.py compares them)::

        [ tid=0xFFFF ][ pid=0 ][ len=11 ][ unit=1 ][ fc=16 ][ 100 ][ 2 ][ 4 ][ 0 ][ 1000 ]
    """
    pdu = WriteMultipleRegistersRequest(
        address=100, registers=[0, 1000], dev_id=1, transaction_id=0xFFFF
    )
    pdu.count = 2
    return FramerSocket(DecodePDU(False)).buildFrame(pdu)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sim_plc_sees_the_safe_state_write_during_a_hang(sim_plc: SimPlcProcess) -> None:
    frame = safe_state_frame()
    assert len(frame) == 7 + 1 + 4 + 1 + 4
    child = Child(child_cfg(sim_plc.port, payload_hex=frame.hex(), reply_timeout_s=2.0))
    try:
        end = time.monotonic() + 5.0
        writes: list[dict[str, object]] = []
        while time.monotonic() < end and not writes:
            writes = [w for w in sim_plc.write_log() if w["fc"] == 16]
            time.sleep(0.02)
        # The child still holds the GIL: only the native thread can have sent this.
        assert child.proc.poll() is None
        assert len(writes) == 1
        w = writes[0]
        assert (w["table"], w["address"], w["values"], w["accepted"]) == (
            "holding",
            100,
            [0, 1000],
            True,
        )
        stats = child.release()
        res = stats["last_fire_results"]
        assert isinstance(res, dict)
        assert res["fd_writes"] == [len(frame)]
        assert res["replies"] == [12]  # MBAP 7 + fc 1 + address 2 + count 2: the PLC's echo
    finally:
        child.kill()
