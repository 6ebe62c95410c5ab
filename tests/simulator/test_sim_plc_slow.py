"""The sim PLC's ``slow`` fault delays the right reply, with the right transaction id
(issue 10 item 3), seen by a raw-socket client and by the agent's master.

Before the fix, pymodbus' request handler put the transaction id of the request that
arrived during the delay on the delayed reply: the agent then read the PLC watchdog's
timeout register as a temperature and the other way round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.readings import Quality
from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(60)

WD_TIMEOUT_MS = 1000  # sim-tank's plc_watchdog.expected_timeout_ms, at holding 201


@pytest.fixture
def plc() -> Iterator[SimPlcProcess]:
    with SimPlcProcess("sim-coupler") as p:  # no program: outputs stay as written
        yield p


def request(tid: int, fc: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, 1, fc, address, count)


def read_reply(sock: socket.socket) -> tuple[int, int, tuple[int, ...]]:
    """(transaction id, function code, registers) of the next reply on ``sock``."""
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    tid, pid, length, _unit = struct.unpack(">HHHB", exact(7))
    assert pid == 0
    body = exact(length - 1)
    fc, n = body[0], body[1]
    return tid, fc, struct.unpack(f">{n // 2}H", body[2 : 2 + n])


def test_slow_reply_carries_the_id_of_its_own_request(plc: SimPlcProcess) -> None:
    """A master asks for the watchdog timeout, gives up after 100 ms, asks for a temperature:
    the first reply that comes is the watchdog timeout's, with its id, then the other's."""
    plc.control.fault("slow", delay_ms=300)
    with socket.create_connection(("127.0.0.1", plc.port), timeout=5) as sock:
        sock.sendall(request(1, 3, 201, 1))
        time.sleep(0.1)  # the master's timeout; the PLC is still working on request 1
        sock.sendall(request(2, 4, 0, 1))
        first, second = read_reply(sock), read_reply(sock)
    assert first == (1, 3, (WD_TIMEOUT_MS,))
    tid, fc, (raw,) = second
    assert (tid, fc) == (2, 4)
    temperature = plc.control.state()["temperature"]
    assert raw / 10 == pytest.approx(temperature, abs=1.0)


def test_pipelined_requests_in_one_segment_each_get_their_reply(plc: SimPlcProcess) -> None:
    plc.control.fault("slow", delay_ms=50)
    with socket.create_connection(("127.0.0.1", plc.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request(7, 3, 201, 1) + request(8, 3, 100, 2))
        replies = [read_reply(sock), read_reply(sock)]
    assert replies == [(7, 3, (WD_TIMEOUT_MS,)), (8, 3, (0, 1000))]


def test_agent_reading_a_slow_plc_gets_timeouts_or_true_values(plc: SimPlcProcess) -> None:
    """Replies 20 ms later than the agent's timeout, then 40 ms sooner: every value the
    agent takes is the register it asked for (never one of another register)."""
    base = with_connection(load_profile("sim-coupler"), tcp=f"127.0.0.1:{plc.port}")
    profile = dataclasses.replace(base, plc=dataclasses.replace(base.plc, reconnect_min_s=0.05,
                                                                 reconnect_max_s=0.1))
    taken: list[tuple[str, float]] = []
    failures: list[str] = []

    async def body() -> None:
        c = PlcClient(profile)
        try:
            assert await c.connect()
            for delay_ms in (120, 60):
                plc.control.fault("slow", delay_ms=delay_ms)
                for _ in range(25):  # polled like the runtime polls (sim-tank: 50 ms)
                    await asyncio.sleep(0.05)
                    readings = await c.read_signals()
                    timeout_ms, _latched = await c.read_plc_watchdog()
                    for r in readings.values():
                        if r.quality is Quality.GOOD:
                            assert r.value is not None
                            taken.append((r.name, r.value))
                        else:
                            failures.append(r.error or "")
                    if timeout_ms is not None:
                        taken.append(("watchdog timeout", timeout_ms))
            assert c.stats().late_replies > 0  # the slow phase did send late replies
        finally:
            await c.close()

    asyncio.run(body())
    state = plc.control.state()
    assert taken, failures
    for name, value in taken:
        if name == "watchdog timeout":
            assert value == WD_TIMEOUT_MS
        elif name.startswith("temp"):
            assert value == pytest.approx(state["temperature"], abs=2.0), (name, value)
        else:
            assert value == pytest.approx(state["pressure"], abs=0.2), (name, value)
    assert all(("no answer" in f or "backed off" in f) for f in failures), failures
