"""The operator's view, end to end: LEDs and the reset button (gpiozero's MockFactory, with
the agent's runtime in this process), the status socket, and systemd's sd_notify protocol
against a real datagram socket with the agent as a real process.

The sim PLC and sim twin are real processes (sim.stack); what the plant saw is read from the
sim PLC, what the agent decided from its status socket and audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile, with_connection
from agent.io.audit import AuditLog
from agent.io.status_client import fetch_status, socket_path
from agent.model.errors import AgentNotRunning
from agent.runtime.loop import Runtime
from sim.stack import Stack, sim_tank_text, wait_for

pytestmark = [pytest.mark.slow]

HOLD_S = 0.3  # a long press holds 1 s longer: gpiozero's hold thread may run late on a busy
# machine (CI once saw a 0.2 s margin missed); the button counts one press however long


def manual_profile(path: Path) -> Path:
    text = re.sub(r"(?m)^policy = .*$", 'policy = "manual"', sim_tank_text())
    text = re.sub(r"(?m)^reset_hold_s = .*$", f"reset_hold_s = {HOLD_S}", text)
    path.write_text(text)
    return path


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    old = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = old


async def state_of(state_dir: Path) -> str:
    _, snap = await asyncio.to_thread(fetch_status, socket_path(state_dir))
    return snap.state


async def until_state(state_dir: Path, state: str, within_s: float = 15.0) -> None:
    end = time.monotonic() + within_s
    got = "not running yet"
    while True:
        with contextlib.suppress(AgentNotRunning):
            got = await state_of(state_dir)
        if got == state:
            return
        assert time.monotonic() < end, f"state {got}, wanted {state}"
        await asyncio.sleep(0.05)


async def press(factory: MockFactory, pin: int, hold_s: float) -> None:
    button = factory.pin(pin)
    button.drive_low()  # pulled up: pressed is low
    await asyncio.sleep(hold_s)
    button.drive_high()
    await asyncio.sleep(0.1)


def blinked(factory: MockFactory, pin: int) -> bool:
    """The pin went on and off at least twice (a blink, not a steady light)."""
    states = [s.state for s in factory.pin(pin).states]
    changes = sum(1 for a, b in itertools.pairwise(states) if a != b)
    return changes >= 3


@pytest.mark.timeout(90)
def test_button_acknowledges_only_a_healthy_latched_plant(mock_pins: MockFactory,
                                                          tmp_path: Path) -> None:
    profile_path = manual_profile(tmp_path / "manual.toml")
    with Stack(profile_text=profile_path.read_text(), start_agent=False) as stack:
        profile = with_connection(load_profile(stack.profile_path),
                                  tcp=f"127.0.0.1:{stack.plc.port}")
        config = load_config(stack.config_path)
        state_dir = tmp_path / "state"
        board = profile.board
        assert board.reset_button is not None and board.led_red is not None
        assert board.led_green is not None

        async def scenario() -> None:
            runtime = Runtime(profile, config, state_dir)
            task = asyncio.create_task(runtime.run())
            try:
                # a start latches nothing, even under the manual policy (issue 12)
                await until_state(state_dir, "normal")
                await asyncio.sleep(1.5)
                assert blinked(mock_pins, board.led_green), "green slow blink: NORMAL shadow"

                # a trip: FAILSAFE; a reset while the hazard is still there is refused
                for ch in ("temp_a", "temp_b", "temp_c"):
                    await asyncio.to_thread(stack.plc.control.fault, "offset", signal=ch,
                                            value=120.0)
                await until_state(state_dir, "failsafe")
                await asyncio.sleep(1.0)
                assert blinked(mock_pins, board.led_red), "red fast blink: FAILSAFE"
                await press(mock_pins, board.reset_button, HOLD_S + 1.0)
                assert await state_of(state_dir) == "failsafe"

                # the hazard clears: manual policy, not resumed silently, red says "reset me"
                await asyncio.to_thread(stack.plc.control.clear)
                await until_state(state_dir, "recovering")
                await asyncio.sleep(0.2)
                assert mock_pins.pin(board.led_red).state, "red steady: waiting for a reset"
                await press(mock_pins, board.reset_button, HOLD_S / 3)  # a short press
                assert await state_of(state_dir) == "recovering"
                await press(mock_pins, board.reset_button, HOLD_S + 1.0)  # a long press
                await until_state(state_dir, "normal")
            finally:
                runtime.request_stop()
                await asyncio.wait_for(task, 15)

        asyncio.run(scenario())
        writes = [r for r in stack.plc.write_log() if "heater_power" in r.get("names", ())]
        assert writes and all(r["values"][0] == 0 for r in writes), "only the safe heater value"

    audit = AuditLog(state_dir / "audit.sqlite")
    acks = [r.fields for r in audit.records() if r.kind == "ack"]
    assert [a.get("refused") is None for a in acks] == [False, True], acks
    assert acks[1]["source"] == "button"
    assert "not healthy" in acks[0]["refused"]
    assert audit.verify().ok


def recv_all(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.mark.timeout(90)
def test_sd_notify_ready_status_and_watchdog_stops_while_the_loop_is_blocked(
        tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = {"NOTIFY_SOCKET": str(notify_path), "TWINGUARD_FAULT_INJECTION": "1",
           "TWINGUARD_BLOCK_S": "2.5"}
    with Stack(agent_env=env) as stack:
        stack.wait_state("normal")
        time.sleep(1.0)
        before = recv_all(notify)
        assert before[0].startswith("READY=1")
        assert any(m.startswith("STATUS=normal") for m in before), before
        assert sum(m == "WATCHDOG=1" for m in before) >= 2
        assert stack.agent is not None
        os.kill(stack.agent.pid, signal.SIGUSR1)  # the loop blocks for 2.5 s (GIL released)
        time.sleep(0.3)
        recv_all(notify)  # what was sent before the block began
        time.sleep(1.5)
        during = recv_all(notify)
        assert "WATCHDOG=1" not in during, "no WATCHDOG=1 from a blocked loop"
        wait_for(lambda: "WATCHDOG=1" in recv_all(notify), 10, "WATCHDOG=1 after the block")
        stack.agent.signal(signal.SIGTERM)
        assert stack.agent.proc.wait(10) == 0
        assert any(m.startswith("STOPPING=1") for m in recv_all(notify))
    notify.close()


@pytest.mark.timeout(30)
def test_systemd_unit_command_prints_a_verified_unit() -> None:
    out = subprocess.run([sys.executable, "-m", "agent", "systemd-unit", "--profile",
                          "pi4-rs485-rtu", "--config", "/etc/twinguard/agent.toml"],
                         capture_output=True, text=True, check=True).stdout
    assert "Type=notify" in out and "WatchdogSec=" in out and "Restart=always" in out
    assert "DeviceAllow=/dev/serial0 rw" in out
    assert "DeviceAllow=/dev/watchdog rw" in out
