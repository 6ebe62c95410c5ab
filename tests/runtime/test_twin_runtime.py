"""The runtime's side of the twin protocol, with the agent's runtime in this process.

The sim PLC is a real process; the sim twin runs in this event loop (real TLS on loopback).
What is checked is what the twin receives (PROTOCOL.md §3.2, §5):

* the agent's ``hello`` carries the profile's ``[timing]`` in milliseconds (not the link's
  defaults: the profile here uses other values);
* a ``status`` arrives as soon as the session is up, even with the periodic status made
  so rare that it cannot be the one seen;
* a twin whose heartbeats arrive further apart than ``heartbeat_late_s`` never makes the
  link ALIVE: in active mode, with the plant NORMAL (the plant does not wait for a twin,
  issue 12), the agent keeps reporting authority ``local`` (never eligible for the
  twin); once the twin speeds up authority climbs to ``returning`` and the agent says so at
  once (a status on the transition; the return hold-off keeps it from going remote here).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile, with_connection
from agent.io.pki import PkiPaths, init_pki
from agent.runtime import loop as runtime_mod
from agent.runtime.loop import Runtime
from sim.plc.harness import SimPlcProcess
from sim.stack import sim_tank_text
from sim.twin.harness import wait_until
from sim.twin.server import SimTwin

pytestmark = [pytest.mark.slow]

DEVICE_ID = "rt-01"
TIMEOUT_S, LATE_S = 0.6, 0.3  # not the link's defaults (0.5, 0.25)
SLOW_HZ = 2.0  # heartbeats 500 ms apart: above LATE_S, below TIMEOUT_S
FAST_HZ = 20.0


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Path, PkiPaths, SimPlcProcess]]:
    text = sim_tank_text()
    text = re.sub(r"(?m)^heartbeat_timeout_s = .*$", f"heartbeat_timeout_s = {TIMEOUT_S}", text)
    text = re.sub(r"(?m)^heartbeat_late_s = .*$", f"heartbeat_late_s = {LATE_S}", text)
    profile = tmp_path / "profile.toml"
    profile.write_text(text)
    pki = init_pki(tmp_path / "pki", device_id=DEVICE_ID)
    (tmp_path / "plc").mkdir()
    plc = SimPlcProcess(str(profile), workdir=tmp_path / "plc")
    try:
        yield profile, pki, plc
    finally:
        plc.close()


def write_config(path: Path, pki: PkiPaths, port: int) -> None:
    path.write_text(
        f'device_id = "{DEVICE_ID}"\nmode = "active"\n\n[twin]\n'
        f'host = "127.0.0.1"\nport = {port}\nserver_name = "localhost"\n'
        f'ca = "{pki.ca_cert}"\ncert = "{pki.device_cert}"\nkey = "{pki.device_key}"\n'
        "idle_timeout_s = 5.0\nbackoff_min_s = 0.05\nbackoff_max_s = 0.5\n")


@pytest.mark.timeout(40)
def test_hello_timing_status_at_session_up_and_a_too_slow_twin(
        rig: tuple[Path, PkiPaths, SimPlcProcess], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    profile_path, pki, plc = rig
    # the periodic status is pushed out of the test's time: every status the twin sees
    # comes from a session coming up or a change of state
    monkeypatch.setattr(runtime_mod, "STATUS_PERIOD_S", 3600.0)

    async def main() -> tuple[SimTwin, list[tuple[str, str | None]], list[str | None]]:
        twin = SimTwin.from_pki(pki, rate_hz=SLOW_HZ)
        await twin.start()
        config_path = tmp_path / "agent.toml"
        write_config(config_path, pki, twin.port)
        profile = with_connection(load_profile(profile_path), tcp=f"127.0.0.1:{plc.port}")
        runtime = Runtime(profile, load_config(config_path), tmp_path / "state")
        task = asyncio.create_task(runtime.run())
        try:
            await wait_until(lambda: len(twin.statuses) >= 1, 15, "a status at session up")
            # too slow: K = 3 heartbeats each within LATE_S never happen
            sent = len(twin.heartbeats)
            await wait_until(lambda: len(twin.heartbeats) >= sent + 6, 15, "6 slow heartbeats")
            await wait_until(lambda: twin.statuses[-1].state == "normal", 15,
                             "the plant NORMAL without an ALIVE twin")
            slow_phase = [(s.state, s.authority) for s in twin.statuses]
            twin.rate_hz = FAST_HZ
            await wait_until(lambda: any(s.authority == "returning" for s in twin.statuses),
                             15, "authority returning once the twin is fast enough")
            return twin, slow_phase, [s.authority for s in twin.statuses]
        finally:
            runtime.request_stop()
            await asyncio.wait_for(task, 15)
            await twin.stop()

    twin, slow_phase, all_states = asyncio.run(main())
    hello = twin.agent_hellos[0]
    assert hello[2] == DEVICE_ID
    assert hello[4:] == (600, 300), "the profile's [timing] in ms, not the link's defaults"
    assert slow_phase and {a for _, a in slow_phase} == {"local"}, slow_phase
    assert slow_phase[-1][0] == "normal", slow_phase
    assert twin.statuses[0].seq == 1 and twin.statuses[0].conn == 1
    assert all_states[-1] == "returning"
    assert twin.connections_total == 1, "one session for the whole test"
