"""Fault drills in the runtime: slices on the loop, one at a time, muted core logs, the audit
record, and the status socket's ``drill`` request over a real Unix socket."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.config.profile.load import load_profile
from agent.core.controller import Controller
from agent.core.rehearsal import Rehearsal
from agent.io.audit import AuditKind
from agent.io.status_client import request_drill, socket_path
from agent.io.status_socket import StatusServer
from agent.model.errors import DrillRefused, ProtocolError
from agent.model.mode import Mode
from agent.model.readings import Quality, Reading
from agent.model.status import StatusSnapshot
from agent.runtime.drill import DrillRunner, play

pytestmark = pytest.mark.timeout(30)

VALUES = {"temp_a": 60.0, "temp_b": 60.1, "temp_c": 59.9, "pressure_a": 2.0, "pressure_b": 2.01}


def normal_controller() -> Controller:
    """A local guard (no twin) on sim-tank, ticked into NORMAL."""
    c = Controller(load_profile("sim-tank"), Mode.SHADOW, twin=False)
    for i in range(1, 6):
        t = i * 0.05
        c.tick({k: Reading(k, None, v, Quality.GOOD, t) for k, v in VALUES.items()}, t,
               plc_reachable=True, plc_watchdog_ok=True)
    assert c.state.value == "normal"
    return c


def test_play_gives_the_loop_a_turn_between_slices() -> None:
    c = normal_controller()

    async def main() -> tuple[int, int]:
        turns = 0
        done = asyncio.Event()

        async def other() -> None:  # stands for the agent's own tick, heartbeats, timers
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        slices = await play(Rehearsal(c, "trip", 0.25).run(), slice_s=0.0)
        done.set()
        await task
        return slices, turns

    slices, turns = asyncio.run(main())
    assert slices > 10  # slice_s 0: one event per slice
    assert turns >= slices - 1


def test_one_drill_at_a_time_audited_with_who_and_the_core_muted(
        caplog: pytest.LogCaptureFixture) -> None:
    c = normal_controller()
    records: list[tuple[AuditKind, dict[str, Any]]] = []
    runner = DrillRunner(lambda: c, lambda kind, **f: records.append((kind, f)), slice_s=0.0)

    async def main() -> tuple[dict[str, Any], str]:
        first = asyncio.create_task(runner.drill("trip", None, "pid=1 uid=0(root)"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert runner.running == "trip"
        with pytest.raises(DrillRefused, match="already running"):
            await runner.drill("twin-outage", None, "pid=2 uid=0(root)")
        report = dict(await first)
        with pytest.raises(DrillRefused, match="unknown scenario"):
            await runner.drill("meteor", None, "pid=3")
        return report, str(runner.running)

    with caplog.at_level(logging.DEBUG):
        report, running = asyncio.run(main())
        core = [r for r in caplog.records if r.name.startswith("agent.core")]
        assert c.state.value == "normal"  # the live one never moved
        c.fault(1.0, "a real fault")  # the live core still logs
    # the copy went FAILSAFE; nothing of the core said so in the agent's log
    assert not core, [r.getMessage() for r in core]
    assert any(r.name == "agent.core.controller" and "FAILSAFE" in r.getMessage()
               for r in caplog.records)
    assert running == "None" and report["scenario"] == "trip"
    assert report["end_state"] == "normal"
    assert [k for k, _ in records] == [AuditKind.DRILL]  # refused drills are not audited
    fields = records[0][1]
    assert fields["scenario"] == "trip" and fields["who"] == "pid=1 uid=0(root)"
    assert fields["outcome"] == report["outcome"] and fields["would_write"] > 0


def snapshot() -> StatusSnapshot:
    raise AssertionError("not asked")


async def no_ack(source: str, who: str) -> tuple[bool, str]:
    raise AssertionError("not asked")


def test_the_status_socket_carries_a_drill_with_the_peer_credentials(tmp_path: Path) -> None:
    asked: list[tuple[str, str | None, str]] = []

    async def drill(scenario: str, target: str | None, who: str) -> dict[str, Any]:
        asked.append((scenario, target, who))
        if scenario == "busy":
            raise DrillRefused("a drill is already running (trip)")
        return {"scenario": scenario}

    async def main() -> None:
        path = socket_path(tmp_path)
        async with StatusServer(path, snapshot, no_ack, drill=drill) as server:
            reply = await asyncio.to_thread(request_drill, path, "trip", "overtemperature")
            assert reply == {"scenario": "trip"}
            with pytest.raises(ProtocolError, match="already running"):
                await asyncio.to_thread(request_drill, path, "busy")
            with pytest.raises(ProtocolError, match="'scenario'"):
                await asyncio.to_thread(request_drill, path, 5)  # type: ignore[arg-type]
            assert server.stats.drills == 2 and server.stats.bad_requests == 1
        async with StatusServer(path, snapshot, no_ack):
            with pytest.raises(ProtocolError, match="offers no drills"):
                await asyncio.to_thread(request_drill, path, "trip")

    asyncio.run(main())
    assert [a[:2] for a in asked] == [("trip", "overtemperature"), ("busy", None)]
    assert asked[0][2].startswith("pid=") and " uid=" in asked[0][2]
