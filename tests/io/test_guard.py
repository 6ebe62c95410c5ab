"""The native guard against the simulated PLC (a real process, real sockets, a real pty pair).

Each test arms the guard, lets the deadline pass (or not) and asserts what the PLC logged.
The hw watchdog is a plain file (the watchdog writes feed bytes and the magic close to it),
the fault LED another plain file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.profile.load import load_profile, with_connection
from agent.io.guard import NativeGuard, exit_code_from_env, guard_values
from agent.model.errors import DeviceUnavailable
from agent.model.profile import FailsafePolicy, Parity, Profile, RtuLink
from firmware_bridge import NATIVE, Watchdog, load_watchdog
from sim.plc.harness import SimPlcProcess, SocatPair
from sim.stack import wait_for

pytestmark = pytest.mark.timeout(30)

SAFE = {"heater_power": 0.0, "cooling_valve": 100.0}
# sim-tank's PLC runs its own program: the guard's safe set also sets the [plc_remote]
# flag at remote_value (1), so that the program takes the safe values (issue 12)
SAFE_SET = {**SAFE, "plc_remote": 1.0}
FLAG_COIL = 1  # sim-tank's [plc_remote] address


def tcp_profile(port: int, tmp_path: Path | None = None, deadline_s: float = 0.2) -> Profile:
    p = with_connection(load_profile(None), tcp=f"127.0.0.1:{port}")
    p = dataclasses.replace(p, timing=dataclasses.replace(p.timing, watchdog_deadline_s=deadline_s))
    if tmp_path is None:
        return p
    (tmp_path / "led").write_text("0")
    (tmp_path / "watchdog").write_bytes(b"")
    board = dataclasses.replace(p.board, fault_led=str(tmp_path / "led"), fault_led_value="1",
                                hw_watchdog=str(tmp_path / "watchdog"))
    return dataclasses.replace(p, board=board)


def guard_writes(plc: SimPlcProcess, since: float) -> list[dict[str, Any]]:
    return [r for r in plc.write_log() if r["t"] >= since and "heater_power" in r["names"]
            and r["source"] == "modbus"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def guard_cls() -> type[Any]:
    return load_watchdog(require_native=False)


@pytest.fixture
def rtu_plc(tmp_path: Path) -> Iterator[tuple[SimPlcProcess, str, Path]]:
    text = (Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml").read_text()
    tcp = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
    rtu = 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\nbaudrate = 19200\nparity = "N"\n'
    path = tmp_path / "sim-tank-rtu.toml"
    path.write_text(text.replace(tcp, rtu))
    with SocatPair() as pair, SimPlcProcess(str(path), rtu=pair.a) as plc:
        yield plc, pair.b, path


def test_watchdog_class_is_native_here() -> None:
    assert NATIVE, "the C extension is built in this checkout; the guard tests use it"
    assert Watchdog.__module__ == "firmware_bridge.native" and Watchdog.native


def test_fires_writes_safe_state_led_and_stops_feeding(sim_plc: SimPlcProcess,
                                                        tmp_path: Path, guard_cls: type) -> None:
    profile = tcp_profile(sim_plc.port, tmp_path)
    sim_plc.control.set_output("heater_power", 40.0)

    async def run() -> dict[str, Any]:
        guard = NativeGuard(profile, guard_cls)
        t0 = time.monotonic()
        await guard.start(asyncio.get_running_loop().time(), True, {})
        assert guard.link_up and guard.values == SAFE_SET
        writes = await asyncio.to_thread(
            wait_for, lambda: guard_writes(sim_plc, t0), 5.0, "watchdog write at the PLC")
        stats = guard.stats()
        guard.close()
        return {"writes": writes, "stats": stats, "t0": t0}

    out = asyncio.run(run())
    first = out["writes"][0]
    assert first["values"] == [0, 1000] and first["fc"] == 16 and first["accepted"]
    assert first["t"] >= out["t0"] + 0.2, "not before the deadline"
    flags = [r for r in sim_plc.write_log() if r["t"] >= out["t0"] and r["fc"] == 5
             and r["address"] == FLAG_COIL and r["source"] == "modbus"]
    assert flags and flags[0]["values"] == [1] and flags[0]["accepted"], "the flag, remote"
    state = sim_plc.control.state()
    assert state["outputs"]["heater_power"] == 0
    assert state["plc_remote"] == 1
    assert state["applied"] == SAFE, "the PLC program took the safe values"
    wd = out["stats"].watchdog
    assert wd["fired"] and wd["fires"] == 1
    results = wd["last_fire_results"]
    assert results["fd_writes"] == [12, 17], \
        "the flag's MBAP fc5, then the fc16 of 2 registers: one request each, in full"
    assert results["replies"][0] >= 12, "the replies came back on the guard's own link"
    assert results["file_writes"] == [0]
    assert (tmp_path / "led").read_text() == "1"
    fed = (tmp_path / "watchdog").read_bytes()
    assert fed and b"V" not in fed, "fed while healthy, no magic close after a fire"


def test_kicks_keep_it_quiet_and_close_disarms(sim_plc: SimPlcProcess, tmp_path: Path,
                                               guard_cls: type) -> None:
    profile = tcp_profile(sim_plc.port, tmp_path, deadline_s=1.0)

    async def run() -> float:
        guard = NativeGuard(profile, guard_cls)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await guard.start(loop.time(), True, {})
        for _ in range(40):  # 0.8 s of 20 ms "ticks", well inside the 1 s deadline
            assert not await guard.after_tick(loop.time(), True, {})
            await asyncio.sleep(0.02)
        assert guard.stats().watchdog is not None
        guard.close()
        guard.close()  # idempotent
        await asyncio.sleep(1.5)  # past the deadline: a disarmed watchdog stays silent
        return t0

    t0 = asyncio.run(run())
    assert guard_writes(sim_plc, t0) == []
    assert (tmp_path / "led").read_text() == "0"
    assert (tmp_path / "watchdog").read_bytes().endswith(b"V"), "magic close on a clean stop"


def test_after_tick_reports_a_fire_and_rearms(sim_plc: SimPlcProcess, guard_cls: type) -> None:
    profile = tcp_profile(sim_plc.port)

    async def run() -> tuple[bool, bool, int, float]:
        guard = NativeGuard(profile, guard_cls)
        loop = asyncio.get_running_loop()
        await guard.start(loop.time(), True, {})
        await asyncio.to_thread(wait_for, guard.fired, 5.0, "a fire")
        saw = await guard.after_tick(loop.time(), True, {})
        again = guard.fired()
        t1 = time.monotonic()
        await asyncio.to_thread(wait_for, guard.fired, 5.0, "a second fire after the re-arm")
        s = guard.stats()
        guard.close()
        return saw, again, s.arms, t1

    saw, again, arms, t1 = asyncio.run(run())
    assert saw and not again and arms == 2
    assert guard_writes(sim_plc, t1), "the re-armed watchdog writes again (on a fresh link)"


def test_rearm_with_new_values_changes_the_frame(sim_plc: SimPlcProcess, guard_cls: type) -> None:
    profile = tcp_profile(sim_plc.port)

    async def run() -> tuple[float, bytes, bytes]:
        guard = NativeGuard(profile, guard_cls)
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await guard.start(loop.time(), True, {})
        before = guard.frames
        guard.rearm({"heater_power": 0.0, "cooling_valve": 50.0})
        after = guard.frames
        await asyncio.to_thread(wait_for, guard.fired, 5.0, "a fire")
        guard.close()
        return t0, before, after

    t0, before, after = asyncio.run(run())
    assert before != after
    assert before[:2] == after[:2] == b"\xff\xff", "MBAP transaction id 65535"
    writes = wait_for(lambda: guard_writes(sim_plc, t0), 5.0, "write")
    assert writes[0]["values"] == [0, 500]


def test_hold_last_outputs_follow_the_last_written_value() -> None:
    p = load_profile(None)
    held = dataclasses.replace(p.output("cooling_valve"), failsafe=FailsafePolicy.HOLD_LAST)
    p = dataclasses.replace(p, outputs=(p.output("heater_power"), held))
    assert guard_values(p, {}) == SAFE_SET
    assert guard_values(p, {"cooling_valve": 30.0, "heater_power": 70.0}) == {
        "heater_power": 0.0, "cooling_valve": 30.0, "plc_remote": 1.0}
    ramp = load_profile(None)  # cooling_valve is RAMP in sim-tank: the guard cannot ramp
    assert guard_values(ramp, {"cooling_valve": 10.0}) == SAFE_SET


def test_unreachable_plc_arms_files_only_then_links_when_back(tmp_path: Path,
                                                               guard_cls: type) -> None:
    port = free_port()
    profile = tcp_profile(port, tmp_path)

    async def run() -> tuple[Any, Any, bool]:
        guard = NativeGuard(profile, guard_cls)
        loop = asyncio.get_running_loop()
        await guard.start(loop.time(), True, {})
        first = guard.stats()
        await asyncio.to_thread(wait_for, guard.fired, 5.0, "a fire without a link")
        fired = guard.stats()
        (tmp_path / "plc").mkdir()
        with SimPlcProcess("sim-tank", port=port, workdir=tmp_path / "plc") as plc:
            await guard.after_tick(loop.time(), False, {})
            await guard.after_tick(loop.time(), True, {})  # the agent's client is back
            up = guard.link_up
            t1 = time.monotonic()
            await asyncio.to_thread(
                wait_for, lambda: guard_writes(plc, t1), 5.0, "write after the link came back")
        guard.close()
        return first, fired, up

    first, fired, up = asyncio.run(run())
    assert not first.link_up and first.connect_failures == 1
    assert fired.watchdog["last_fire_results"]["fd_writes"] == []
    assert fired.watchdog["last_fire_results"]["file_writes"] == [0]
    assert (tmp_path / "led").read_text() == "1"
    assert up


def test_reconnects_after_the_plc_restarts(sim_plc: SimPlcProcess, guard_cls: type) -> None:
    profile = tcp_profile(sim_plc.port, deadline_s=1.0)

    async def run() -> tuple[int, int, float]:
        guard = NativeGuard(profile, guard_cls)
        loop = asyncio.get_running_loop()
        await guard.start(loop.time(), True, {})
        sim_plc.stop()
        sim_plc.start()  # same port, a new process: the guard's connection is dead
        # the agent's client never noticed (plc_connected stays True): the link check must
        await guard.after_tick(loop.time() + 5.0, True, {})
        s = guard.stats()
        t1 = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: guard_writes(sim_plc, t1), 5.0, "write")
        guard.close()
        return s.link_losses, s.connects, t1

    losses, connects, _ = asyncio.run(run())
    assert losses == 1 and connects == 2


def test_rtu_fires_over_a_real_pty_pair(rtu_plc: tuple[SimPlcProcess, str, Path],
                                        guard_cls: type) -> None:
    plc, device, _ = rtu_plc
    p = load_profile(None)
    link = RtuLink(device=device, baudrate=19200, parity=Parity.NONE, stopbits=2, bytesize=8)
    profile = dataclasses.replace(p, plc=dataclasses.replace(p.plc, link=link))
    plc.control.set_output("heater_power", 40.0)

    async def run() -> tuple[float, Any]:
        guard = NativeGuard(profile, guard_cls)
        t0 = time.monotonic()
        await guard.start(asyncio.get_running_loop().time(), True, {})
        assert guard.frames[:2] == b"\x01\x05", "RTU: unit 1, fc 5 (the flag), no MBAP header"
        assert guard.frames[8:10] == b"\x01\x10", "then unit 1, fc 16"
        await asyncio.to_thread(wait_for, guard.fired, 5.0, "a fire")
        await asyncio.to_thread(wait_for, lambda: guard_writes(plc, t0), 5.0, "RTU write")
        s = guard.stats()
        guard.close()
        return t0, s

    _, s = asyncio.run(run())
    assert s.watchdog["last_fire_results"]["fd_writes"] == [8, 13], \
        "the flag's RTU fc5, then the fc16, each sent after the reply to the one before"
    state = plc.control.state()
    assert state["outputs"]["heater_power"] == 0
    assert state["plc_remote"] == 1 and state["applied"] == SAFE


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("  ", None), ("0", 0), ("3", 3), ("255", 255),
])
def test_exit_code_from_env(value: str | None, expected: int | None) -> None:
    env = {} if value is None else {"TWINGUARD_WATCHDOG_EXIT": value}
    assert exit_code_from_env(env) == expected


@pytest.mark.parametrize("value", ["-1", "256", "yes", "1.5"])
def test_exit_code_from_env_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="TWINGUARD_WATCHDOG_EXIT"):
        exit_code_from_env({"TWINGUARD_WATCHDOG_EXIT": value})


def test_missing_hw_watchdog_refuses(tmp_path: Path, guard_cls: type) -> None:
    p = load_profile(None)
    p = dataclasses.replace(p, board=dataclasses.replace(p.board,
                                                         hw_watchdog=str(tmp_path / "none")))
    guard = NativeGuard(p, guard_cls)
    with pytest.raises(DeviceUnavailable, match=r"board\.hw_watchdog = .*No such file") as err:
        asyncio.run(guard.start(0.0, False, {}))
    assert err.value.errno == errno.ENOENT
    guard.close()


def test_fault_injection_is_off_unless_asked() -> None:
    from agent.runtime.faultinject import settings_from_env

    assert settings_from_env({}) is None
    assert settings_from_env({"TWINGUARD_FAULT_INJECTION": "0"}) is None
    on = settings_from_env({"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "21",
                            "TWINGUARD_BLOCK_S": "0.5"})
    assert on is not None and on.hang_n == 21 and on.block_s == 0.5


@pytest.mark.parametrize("env", [
    {"TWINGUARD_FAULT_INJECTION": "yes"},
    {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "many"},
    {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "99"},
    {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "20", "TWINGUARD_BLOCK_S": "-1"},
    {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_S": "nan"},
    {"TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "20", "TWINGUARD_BLOCK_AT": "write"},
])
def test_fault_injection_rejects_bad_settings(env: dict[str, str]) -> None:
    from agent.runtime.faultinject import settings_from_env

    with pytest.raises(ValueError, match="TWINGUARD_"):
        settings_from_env(env)


def test_a_block_armed_for_the_decision_point_happens_there_once() -> None:
    import os
    import signal
    import time

    from agent.runtime import faultinject

    settings = faultinject.settings_from_env({
        "TWINGUARD_FAULT_INJECTION": "1", "TWINGUARD_HANG_N": "5", "TWINGUARD_BLOCK_S": "0.2",
        "TWINGUARD_BLOCK_AT": "decision"})
    assert settings is not None and settings.block_at == "decision"
    old = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    try:
        faultinject.install(settings)
        assert not faultinject._armed
        os.kill(os.getpid(), signal.SIGUSR1)  # arms only: no block in the handler
        assert faultinject._armed == {"block": 0.2}
        t1 = time.monotonic()
        faultinject.checkpoint()
        blocked = time.monotonic() - t1
        assert not faultinject._armed, "one-shot"
    finally:
        signal.signal(signal.SIGUSR1, old[0])
        signal.signal(signal.SIGUSR2, old[1])
    assert blocked >= 0.2


def test_hang_calibration_grows_with_the_duration() -> None:
    from agent.runtime.faultinject import hang_n_for

    short, long = hang_n_for(0.05), hang_n_for(3.2)
    assert long - short >= 4, "about log2(64) = 6 doublings apart (load may blur one or two)"
