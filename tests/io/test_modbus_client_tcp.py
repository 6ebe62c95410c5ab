"""PlcClient against the simulated PLC as a real process over a real TCP socket.

Bench checks: set up the plant, make the fault happen, assert what the agent read and what
the PLC saw (its write log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.errors import WriteRefused
from agent.model.profile import Profile
from agent.model.readings import Quality, Reading
from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
SIM_TANK = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def profile_for(plc: SimPlcProcess, ref: str = "sim-tank") -> Profile:
    return with_connection(load_profile(ref), tcp=f"127.0.0.1:{plc.port}")


async def with_client(profile: Profile, body: Callable[[PlcClient], Awaitable[T]]) -> T:
    client = PlcClient(profile)
    try:
        assert await client.connect()
        return await body(client)
    finally:
        await client.close()


def all_good(readings: dict[str, Reading]) -> bool:
    return all(r.quality is Quality.GOOD for r in readings.values())


def test_values_match_the_plant(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> dict[str, Reading]:
        return await c.read_signals()

    readings = run(with_client(profile, body))
    state: dict[str, Any] = sim_plc.control.state()
    assert set(readings) == {s.name for s in profile.signals}
    assert all_good(readings)
    for name in ("temp_a", "temp_b", "temp_c"):
        r = readings[name]
        assert isinstance(r.raw, tuple) and len(r.raw) == 1
        assert r.value == pytest.approx(state["temperature"], abs=0.5)  # noise + 0.1 steps
    for name in ("pressure_a", "pressure_b"):
        r = readings[name]
        assert isinstance(r.raw, tuple) and len(r.raw) == 2
        assert r.value == pytest.approx(state["pressure"], abs=0.05)


def _requests_per_poll(profile: Profile, polls: int = 4) -> list[int]:
    async def body(c: PlcClient) -> list[int]:
        assert len(c.signal_blocks) == 1
        per_poll = []
        for _ in range(polls):
            before = c.requests
            assert all_good(await c.read_signals())
            per_poll.append(c.requests - before)
        return per_poll

    return run(with_client(profile, body))


def test_requests_per_poll_are_coalesced(sim_plc: SimPlcProcess) -> None:
    """sim-tank's signals are one planned block; the default sim serves its undeclared
    addresses (3, 6, 7) as 0, like a real PLC, so every poll reads it in one request."""
    per_poll = _requests_per_poll(profile_for(sim_plc))
    assert all(n <= 2 for n in per_poll), per_poll  # never one request per signal (5)


def test_strict_map_is_learned_and_split() -> None:
    """The strict sim refuses reading through its undeclared addresses (3, 6, 7) once, and
    the client learns to read the 3 runs."""
    with SimPlcProcess(extra_args=("--strict-map",)) as plc:
        per_poll = _requests_per_poll(profile_for(plc))
    assert per_poll[1:] == [per_poll[1]] * 3  # steady after the first poll
    assert per_poll[1] <= 3  # never one request per signal (5)
    assert per_poll[0] > per_poll[1] > 1  # the refused block was split, once


def test_contiguous_map_reads_in_one_request(tmp_path: Path) -> None:
    text = SIM_TANK.read_text()
    text = text.replace("address = 4\n", "address = 3\n").replace("address = 8\n", "address = 5\n")
    path = tmp_path / "contiguous.toml"
    path.write_text(text)
    with SimPlcProcess(str(path)) as plc:
        profile = with_connection(load_profile(path), tcp=f"127.0.0.1:{plc.port}")

        async def body(c: PlcClient) -> list[int]:
            per_poll = []
            for _ in range(3):
                before = c.requests
                assert all_good(await c.read_signals())
                per_poll.append(c.requests - before)
            return per_poll

        assert run(with_client(profile, body)) == [1, 1, 1]


def test_dropout_on_one_channel_does_not_blind_its_peers(sim_plc: SimPlcProcess) -> None:
    sim_plc.control.fault("dropout", signal="temp_b")
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> dict[str, Reading]:
        await c.read_signals()  # first poll may also learn the block split
        return await c.read_signals()

    readings = run(with_client(profile, body))
    bad = readings["temp_b"]
    assert bad.quality is Quality.BAD and bad.value is None
    assert bad.error is not None and "exception 4" in bad.error
    for name in ("temp_a", "temp_c", "pressure_a", "pressure_b"):
        assert readings[name].quality is Quality.GOOD, readings[name]


def test_undeclared_writes_are_refused_before_the_wire(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> None:
        with pytest.raises(WriteRefused, match="not an output"):
            await c.write_output("mystery", 1.0)
        with pytest.raises(WriteRefused, match="only the PLC watchdog"):
            await c.write_register_raw(150, 1)
        with pytest.raises(WriteRefused, match="only the PLC watchdog"):
            await c.write_register_raw(201, 5)  # the watchdog timeout is not ours to set
        with pytest.raises(WriteRefused, match="only the PLC watchdog"):
            await c.write_register_raw(200, 5, unit_id=9)
        with pytest.raises(WriteRefused, match="limits"):
            await c.write_output("heater_power", 150.0)
        with pytest.raises(WriteRefused, match="limits"):
            # one bad value refuses the whole set: heater_power is not written either
            await c.write_outputs({"heater_power": 10.0, "cooling_valve": -1.0})
        assert c.requests == 0

    run(with_client(profile, body))
    assert sim_plc.write_log() == []
    assert sim_plc.control.state()["outputs"]["heater_power"] == 0.0


def test_safe_state_is_one_fc16_frame_and_reads_back(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> tuple[dict[str, float | None], dict[str, float | None]]:
        first = await c.write_outputs({"heater_power": 42.5, "cooling_valve": 12.3})
        assert first.ok and first.written == ("heater_power", "cooling_valve")
        held = await c.read_outputs()
        safe = await c.write_outputs({o.name: o.safe_value for o in profile.outputs})
        assert safe.ok
        return held, await c.read_outputs()

    held, after = run(with_client(profile, body))
    # sim-tank's [plc_remote] flag is read back beside the outputs; nothing wrote it: it
    # holds local_value (0), the PLC program's power-up state
    assert held == {"heater_power": 42.5, "cooling_valve": 12.3, "plc_remote": 0.0}
    assert after == {"heater_power": 0.0, "cooling_valve": 100.0, "plc_remote": 0.0}
    log = sim_plc.write_log()
    assert [(w["fc"], w["address"], w["values"], w["accepted"]) for w in log] == [
        (16, 100, [425, 123], True),
        (16, 100, [0, 1000], True),
    ]


def test_plc_watchdog_heartbeat_and_reset(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> tuple[int | None, bool | None]:
        assert (await c.heartbeat(0x1_0007)).ok  # wrapped to 16 bits
        assert (await c.reset_plc_watchdog()).ok
        return await c.read_plc_watchdog()

    timeout_ms, latched = run(with_client(profile, body))
    assert timeout_ms == profile.plc_watchdog.expected_timeout_ms
    assert latched is False
    log = sim_plc.write_log()
    assert [(w["fc"], w["table"], w["address"], w["values"]) for w in log] == [
        (16, "holding", 200, [7]),
        (5, "coil", 0, [1]),
    ]


def test_stop_answering_gives_bad_readings_then_backs_off(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)
    attempts = 1 + profile.plc.retries

    async def body(c: PlcClient) -> None:
        assert all_good(await c.read_signals())
        sim_plc.control.fault("stop")
        before = c.requests
        first = await c.read_signals()
        assert all(r.quality is Quality.BAD for r in first.values())
        assert all("no answer" in (r.error or "") for r in first.values())
        assert c.requests - before == attempts  # one block, retried, then the unit is skipped
        assert c.stats().timeouts >= attempts
        assert c.stats().backed_off_units == (1,)
        before = c.requests
        second = await c.read_signals()  # backed off: nothing sent, no timeout paid
        assert c.requests == before
        assert all("backed off" in (r.error or "") for r in second.values())
        sim_plc.control.clear()
        for _ in range(100):  # the probe comes after the unit's backoff delay
            await asyncio.sleep(0.05)
            if all_good(await c.read_signals()):
                break
        assert all_good(await c.read_signals())
        assert c.stats().backed_off_units == ()

    run(with_client(profile, body))


def test_dropped_connection_reconnects(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> None:
        assert all_good(await c.read_signals())
        assert sim_plc.control.fault("drop")["dropped"] >= 1
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not c.connected:
                break
        assert not c.connected
        for _ in range(100):
            if all_good(await c.read_signals()):
                break
            await asyncio.sleep(0.05)
        assert c.connected
        s = c.stats()
        assert (s.disconnects, s.reconnects) == (1, 1)

    run(with_client(profile, body))


def test_restarted_plc_is_reconnected(sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)

    async def body(c: PlcClient) -> None:
        assert all_good(await c.read_signals())
        sim_plc.stop()
        down = await c.read_signals()
        assert all(r.quality is Quality.BAD for r in down.values())
        assert not c.connected
        sim_plc.start()
        for _ in range(200):
            if all_good(await c.read_signals()):
                break
            await asyncio.sleep(0.05)
        assert all_good(await c.read_signals())
        assert c.stats().reconnects == 1

    run(with_client(profile, body))


def test_unreachable_plc_gives_bad_readings_not_exceptions(sim_plc: SimPlcProcess) -> None:
    port = sim_plc.port
    sim_plc.stop()
    profile = with_connection(load_profile("sim-tank"), tcp=f"127.0.0.1:{port}")

    async def body() -> None:
        c = PlcClient(profile)
        assert not await c.connect()
        readings = await c.read_signals()
        assert all(r.quality is Quality.BAD for r in readings.values())
        assert all((r.error or "").startswith("disconnected") for r in readings.values())
        assert (await c.read_outputs()) == {"heater_power": None, "cooling_valve": None,
                                            "plc_remote": None}
        result = await c.write_outputs({"heater_power": 0.0})
        assert not result.ok and "heater_power" in result.failed
        await c.close()

    run(body())


def test_a_gate_that_refuses_sends_nothing_and_one_that_allows_sends(
        sim_plc: SimPlcProcess) -> None:
    profile = profile_for(sim_plc)
    asked: list[str] = []

    def refuse() -> str | None:
        asked.append("refuse")
        return "the native watchdog fired"

    async def body(c: PlcClient) -> tuple[Any, Any, Any]:
        refused = await c.write_outputs({"heater_power": 42.0}, gate=refuse)
        beat = await c.heartbeat(7, gate=refuse)
        allowed = await c.write_outputs({"heater_power": 43.0}, gate=lambda: None)
        return refused, beat, allowed

    refused, beat, allowed = run(with_client(profile, body))
    assert refused.written == () and refused.failed == {"heater_power":
                                                         "the native watchdog fired"}
    assert not beat.ok and asked == ["refuse", "refuse"]
    assert allowed.written == ("heater_power",)
    writes = [w for w in sim_plc.control.writes() if w["source"] == "modbus"]
    assert [w["values"] for w in writes] == [[430]], "only the allowed frame reached the PLC"
