"""PlcClient and ``twinguard read --tcp`` against a hostile Modbus TCP server (issue 10 item 2).

Every kind of bad reply makes the readings BAD with a reason that names it, is counted,
resets the connection (seen at the server: a new connection) and is never decoded; a valid
reply split across segments stays GOOD; a late reply is never taken for a later request;
a write whose echo is wrong is a failed write. Asserted at the server (its request record)
and from the client's readings and counters; the CLI is run as a user runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from hostile_modbus import (
    POISON,
    PRESSURE,
    READ_REASONS,
    WATCHDOG_TIMEOUT_MS,
    Fault,
    HostileServer,
)

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.profile import Profile
from agent.model.readings import Quality, Reading

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
SIGNALS = ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b")

@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def profile_for(server: HostileServer, **plc: object) -> Profile:
    profile = with_connection(load_profile("sim-tank"), tcp=f"127.0.0.1:{server.port}")
    return dataclasses.replace(profile, plc=dataclasses.replace(profile.plc, **plc))


def run(profile: Profile, body: Callable[[PlcClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = PlcClient(profile)
        try:
            assert await client.connect()
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


async def reconnected(c: PlcClient, within_s: float = 5.0) -> None:
    """Wait until the client's reconnect backoff lets it connect again (it resets the link
    after a malformed reply and reconnects no sooner than ``reconnect_min_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await c.ensure_connected():
        assert loop.time() < deadline, c.session.disconnect_reason()
        await asyncio.sleep(0.02)


def assert_true_values(readings: dict[str, Reading]) -> None:
    """GOOD, and exactly the bank's values (never a poisoned one)."""
    assert all(r.quality is Quality.GOOD for r in readings.values()), readings
    for name in ("temp_a", "temp_b", "temp_c"):
        assert readings[name].value == pytest.approx(25.0)
    for name in ("pressure_a", "pressure_b"):
        assert readings[name].value == pytest.approx(PRESSURE)


@pytest.mark.parametrize("fault", list(READ_REASONS), ids=[f.name for f in READ_REASONS])
def test_bad_read_reply_is_bad_counted_and_resets_the_connection(
    hostile: HostileServer, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.inject(fault, fc=4)

    async def body(c: PlcClient) -> None:
        bad = await c.read_signals()
        assert set(bad) == set(SIGNALS)
        for r in bad.values():
            assert r.quality is Quality.BAD and r.value is None and r.raw is None
            assert (r.error or "").startswith(READ_REASONS[fault]), r.error
        stats = c.stats()
        assert stats.malformed == (0 if fault is Fault.RESET_MID_REPLY else 1)
        assert stats.errors == 1 and stats.timeouts == 0
        assert c.requests == 1  # a bad reply is never retried
        assert not c.connected  # reset: a crossed stream is not trusted again
        assert c.stats().last_error == bad["temp_a"].error
        await reconnected(c)
        assert_true_values(await c.read_signals())
        assert c.stats().reconnects == 1
        # malformed again at once, with no good reply between: the reconnect backs off
        if fault is not Fault.RESET_MID_REPLY:
            hostile.inject(fault, fc=4, times=2)
            await c.read_signals()
            await reconnected(c)
            await c.read_signals()
            held_off = await c.read_signals()
            assert all(r.error == f"disconnected: reset after a {READ_REASONS[fault]}"
                       for r in held_off.values()) or fault is Fault.WRONG_TID, held_off
            await reconnected(c)
            assert_true_values(await c.read_signals())

    with caplog.at_level(logging.DEBUG):
        run(profile_for(hostile), body)
    got = hostile.received()
    assert [(r.conn, r.fc, r.fault) for r in got][:2] == [(1, 4, fault), (2, 4, Fault.NONE)]
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text


def test_reply_split_across_segments_is_good(hostile: HostileServer) -> None:
    hostile.inject(Fault.SPLIT, fc=4, times=3)

    async def body(c: PlcClient) -> None:
        for _ in range(3):
            assert_true_values(await c.read_signals())
        assert c.stats().malformed == 0 and c.stats().errors == 0

    run(profile_for(hostile), body)
    assert hostile.connections == 1
    assert [r.fault for r in hostile.received()] == [Fault.SPLIT] * 3


def test_late_reply_is_never_taken_for_the_next_request(hostile: HostileServer) -> None:
    """No retries: the late request is BAD timeout; its poisoned reply arrives while the next
    request waits, just before that request's own reply, and is dropped by its id."""
    hostile.inject(Fault.LATE, fc=4)

    async def body(c: PlcClient) -> None:
        first = await c.read_signals()
        assert all("no answer within 0.1 s" in (r.error or "") for r in first.values())
        assert_true_values(await c.read_signals())
        s = c.stats()
        assert (s.timeouts, s.late_replies, s.malformed) == (1, 1, 0)
        assert c.connected  # a late reply is not a crossed stream: no reset

    run(profile_for(hostile, retries=0), body)
    got = hostile.received()
    assert [(r.conn, r.tid, r.fault) for r in got] == [(1, 1, Fault.LATE), (1, 2, Fault.NONE)]


def test_late_reply_to_a_retried_request_is_dropped(hostile: HostileServer) -> None:
    hostile.inject(Fault.LATE, fc=4)

    async def body(c: PlcClient) -> None:
        assert_true_values(await c.read_signals())  # the retry's own reply, not the late one
        assert (c.stats().timeouts, c.stats().late_replies) == (1, 1)

    run(profile_for(hostile), body)
    assert [r.tid for r in hostile.received()] == [1, 2]


def test_poisoned_outputs_and_watchdog_reads_give_none(hostile: HostileServer) -> None:
    """What the runtime acts on (outputs held, the PLC watchdog's timeout and latch) is
    None after a malformed reply, never the poisoned value."""

    async def body(c: PlcClient) -> None:
        hostile.inject(Fault.MORE_REGISTERS, fc=3)
        # sim-tank's [plc_remote] flag is a coil: its own read (fc 1) is not poisoned
        assert await c.read_outputs() == {"heater_power": None, "cooling_valve": None,
                                          "plc_remote": 0.0}
        await reconnected(c)
        hostile.inject(Fault.WRONG_FC, fc=3)
        timeout_ms, _latched = await c.read_plc_watchdog()
        assert timeout_ms is None
        await reconnected(c)
        hostile.inject(Fault.ODD_BYTE_COUNT, fc=2)  # a latch bit set, with one byte too many
        assert await c.read_plc_watchdog() == (None, None)  # the rest of the pass: reset
        await reconnected(c)
        assert await c.read_plc_watchdog() == (WATCHDOG_TIMEOUT_MS, False)
        await reconnected(c)
        assert await c.read_outputs() == {"heater_power": 0.0, "cooling_valve": 100.0,
                                          "plc_remote": 0.0}
        assert c.stats().malformed == 3

    run(profile_for(hostile), body)
    assert all(r.fc in (1, 2, 3) for r in hostile.received()), "reads only"


WRITE_REASONS = {
    Fault.ECHO_ADDRESS: "malformed reply: write echo address 101, expected 100",
    Fault.ECHO_COUNT: "malformed reply: write echo count 3, expected 2",
    Fault.WRONG_FC: "malformed reply: function code 15, expected 16",
    Fault.WRONG_TID: "malformed reply: transaction id 23131, expected 1",
}


@pytest.mark.parametrize("fault", list(WRITE_REASONS), ids=[f.name for f in WRITE_REASONS])
def test_wrong_write_echo_is_a_failed_write(hostile: HostileServer, fault: Fault) -> None:
    hostile.inject(fault, fc=16)

    async def body(c: PlcClient) -> None:
        result = await c.write_outputs({"heater_power": 12.5, "cooling_valve": 40.0})
        assert not result.ok and result.written == ()
        assert result.failed == dict.fromkeys(("heater_power", "cooling_valve"),
                                              WRITE_REASONS[fault])
        assert not c.connected and c.stats().malformed == 1
        await reconnected(c)
        assert (await c.write_outputs({"heater_power": 12.5, "cooling_valve": 40.0})).ok

    run(profile_for(hostile), body)
    assert [(r.conn, r.fc, r.values) for r in hostile.received()] == [
        (1, 16, (125, 400)), (2, 16, (125, 400))]


def test_wrong_coil_echo_value_is_a_failed_write(hostile: HostileServer) -> None:
    hostile.inject(Fault.ECHO_VALUE, fc=5)

    async def body(c: PlcClient) -> None:
        result = await c.reset_plc_watchdog()
        assert result.failed == {
            "plc_watchdog.reset": "malformed reply: write echo value 0x0000, expected 0xFF00"}

    run(profile_for(hostile), body)
    assert [(r.fc, r.values) for r in hostile.received()] == [(5, (1,))]


def test_urgent_write_bypasses_unit_and_reconnect_backoff(hostile: HostileServer) -> None:
    """The safe set is sent even to a backed-off unit, and reconnects at once."""
    hostile.inject(Fault.LATE, times=None)  # nothing answers in time: unit 1 backs off
    safe = {"heater_power": 0.0, "cooling_valve": 100.0}

    async def body(c: PlcClient) -> None:
        await c.read_signals()
        assert c.stats().backed_off_units == (1,)
        sent = len(hostile.received())
        skipped = await c.write_outputs(safe)
        assert "backed off" in skipped.failed["heater_power"]
        assert len(hostile.received()) == sent  # a normal write is not sent
        hostile.clear()
        urgent = await c.write_outputs(safe, urgent=True)
        assert len(hostile.received()) == sent + 1  # sent once, now
        assert urgent.ok  # the late replies in between were dropped by their ids
        # disconnected, with the reconnect backoff running: one attempt now
        hostile.inject(Fault.WRONG_PID)
        await c.read_signals()
        assert not c.connected
        c.session._backoff.failed(c.session._clock())  # a connect failure just happened
        assert not await c.ensure_connected()
        assert (await c.write_outputs(safe, urgent=True)).ok

    run(profile_for(hostile), body)
    writes = [r for r in hostile.received() if r.is_write]
    assert [(r.fc, r.values) for r in writes] == [(16, (0, 1000))] * 2
    assert hostile.connections == 2


# --- twinguard read, as a user runs it ---------------------------------------------------

def twinguard_read(server: HostileServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "read", "--profile", "sim-tank", "--tcp",
         f"127.0.0.1:{server.port}", *extra],
        capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.mark.parametrize("fault", list(READ_REASONS), ids=[f.name for f in READ_REASONS])
def test_read_cli_shows_the_reason(hostile: HostileServer, fault: Fault) -> None:
    hostile.inject(fault, fc=4)
    proc = twinguard_read(hostile, "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    for name in SIGNALS:
        assert doc["signals"][name]["quality"] == "bad"
        assert doc["signals"][name]["value"] is None and doc["signals"][name]["raw"] is None
        assert f"{name}: {READ_REASONS[fault]}" in proc.stderr
    assert "Traceback" not in proc.stderr and "data_received" not in proc.stderr
    # the signals' one read met the fault (read then asks for the PLC watchdog registers)
    assert [(r.fc, r.fault) for r in hostile.received() if r.fc == 4] == [(4, fault)]


@pytest.mark.parametrize("fault", [Fault.SPLIT, Fault.LATE])
def test_read_cli_split_and_late_replies_give_true_values(
    hostile: HostileServer, fault: Fault
) -> None:
    hostile.inject(fault, fc=4)
    proc = twinguard_read(hostile, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    temps = [doc["signals"][n]["value"] for n in ("temp_a", "temp_b", "temp_c")]
    assert temps == [pytest.approx(25.0)] * 3
    assert POISON / 10 not in temps
    assert "Traceback" not in proc.stderr


def test_read_cli_table_shows_the_reason(hostile: HostileServer) -> None:
    hostile.inject(Fault.WRONG_FC, fc=4)
    proc = twinguard_read(hostile)
    assert proc.returncode == 1
    assert "malformed reply: function code 3, expected 4" in proc.stdout
