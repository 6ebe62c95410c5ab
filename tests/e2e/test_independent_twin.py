"""A twin written from PROTOCOL.md alone keeps the agent ALIVE; its silence drives FAILSAFE.

The agent runs in active mode with the heater's ``on_twin_loss = "safe"``: the twin's
supervision is a protection layer, so its loss is a hazard (issue 12; in shadow mode it
would only be shown, never written).

Real processes only: the sim PLC, ``tests/e2e/independent_twin.py`` (TLS server, heartbeats,
strict decoding of what the agent sends) and ``python -m agent run``. The agent's state is
taken from the ``status`` messages the independent twin receives, the safe state from the
sim PLC's write log: never from inside the agent.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_e2e_failsafe import guarded

from agent.io.pki import init_pki
from sim.plc.harness import SimPlcProcess
from sim.stack import Proc, output_writes, wait_for

pytestmark = [pytest.mark.slow]
log = logging.getLogger(__name__)

DEVICE_ID = "independent-01"
TWIN = Path(__file__).with_name("independent_twin.py")
TIMEOUT_S = 0.5  # sim-tank [timing] heartbeat_timeout_s
HEATER_SAFE_RAW = 0  # heater_power safe value 0 %, scale 0.1
COOLING_SAFE_RAW = 1000  # cooling_valve safe value 100 %, scale 0.1
NORMAL_FOR_S = 4.0  # how long the twin keeps the agent alive after it first reports normal
OUTPUTS = ("heater_power", "cooling_valve")


class TwinProcess:
    """``tests/e2e/independent_twin.py`` as a subprocess; its stdout events collected by a
    thread."""

    def __init__(self, pki: Path, stderr: Path, silence_after: float) -> None:
        with stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(TWIN), "--listen", "127.0.0.1:0", "--pki", str(pki),
                 "--rate", "10", "--silence-after", str(silence_after),
                 "--device-id", DEVICE_ID],
                stdout=subprocess.PIPE, stderr=err, text=True)
        self.stderr_path = stderr
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["ready"], f"twin not ready: {stderr.read_text()[-2000:]}"
        self.port = int(first[1])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def of(self, ev: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["ev"] == ev]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def write_config(path: Path, pki_dir: Path, port: int) -> None:
    """The agent configuration (keys as in ``sim.stack.Stack.write_config``)."""
    path.write_text(
        f'device_id = "{DEVICE_ID}"\nmode = "active"\n\n[twin]\n'
        f'host = "127.0.0.1"\nport = {port}\nserver_name = "localhost"\n'
        f'ca = "{pki_dir / "ca.crt"}"\ncert = "{pki_dir / "device.crt"}"\n'
        f'key = "{pki_dir / "device.key"}"\n'
        # Longer than the whole silent phase: the loss must come from the heartbeat
        # timeout with the connection still open, not from the link's idle timeout.
        "idle_timeout_s = 10.0\nbackoff_min_s = 0.05\nbackoff_max_s = 0.5\n")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[SimPlcProcess, TwinProcess, Proc]]:
    pki = init_pki(tmp_path / "pki", device_id=DEVICE_ID)
    profile = tmp_path / "profile.toml"
    profile.write_text(guarded(holdoff_s=0.5))
    (tmp_path / "plc").mkdir()
    plc = SimPlcProcess(str(profile), workdir=tmp_path / "plc")
    twin = agent = None
    try:
        twin = TwinProcess(pki.ca_cert.parent, tmp_path / "twin.stderr", NORMAL_FOR_S)
        config = tmp_path / "agent.toml"
        write_config(config, pki.ca_cert.parent, twin.port)
        agent = Proc(
            [sys.executable, "-m", "agent", "-v", "run", "--profile", str(profile),
             "--tcp", f"127.0.0.1:{plc.port}", "--config", str(config),
             "--state-dir", str(tmp_path / "state")],
            tmp_path / "agent.stderr", ready=False)
        yield plc, twin, agent
    finally:
        if agent is not None:
            agent.stop()
        if twin is not None:
            twin.stop()
        plc.close()


def output_writes_since(plc: SimPlcProcess, since: float) -> list[dict[str, Any]]:
    log = plc.write_log()
    found = {r["seq"]: r for name in OUTPUTS for r in output_writes(log, name, since=since)}
    return [found[k] for k in sorted(found)]


@pytest.mark.timeout(60)
def test_independent_twin_keeps_agent_alive_and_its_silence_drives_safe_state(
        rig: tuple[SimPlcProcess, TwinProcess, Proc]) -> None:
    plc, twin, agent = rig

    def diag() -> str:
        return (f"\n--- twin events ---\n{twin.events[-30:]}\n--- twin stderr ---\n"
                f"{twin.stderr_path.read_text()[-2000:]}\n--- agent stderr ---\n"
                f"{agent.stderr()[-4000:]}")

    # The agent says hello (its certificate CN and device_id agree, or the twin refuses).
    hello = wait_for(lambda: twin.of("hello"), 20, "the agent's hello")[0]
    assert hello["device_id"] == DEVICE_ID and hello["protocol"] == 1

    # (1) ALIVE: the agent reaches normal, stays there while the twin sends heartbeats,
    # and writes nothing to the outputs (no safe state; the twin is not given authority
    # before the 10 s return hold-off).
    try:
        first_normal = wait_for(
            lambda: [s for s in twin.of("status") if s["state"] == "normal"], 25,
            "agent reports normal")[0]
        silent = wait_for(lambda: twin.of("silent"), NORMAL_FOR_S + 10, "twin goes silent")[0]
    except TimeoutError as exc:
        raise AssertionError(f"{exc}{diag()}") from exc
    t_normal, t_silent = first_normal["t"], silent["t"]
    alive = [s for s in twin.of("status") if t_normal <= s["t"] <= t_silent]
    assert len(alive) >= 3, f"statuses keep coming about once a second: {alive}{diag()}"
    assert {s["state"] for s in alive} == {"normal"}, f"left normal while alive{diag()}"
    # this twin's hello says protocol 1: it never sees a version-2 field (PROTOCOL.md §3.4)
    assert {s["authority"] for s in alive} == {None}, diag()
    assert twin.of("error") == [], f"the agent broke the protocol{diag()}"
    seqs = [s["seq"] for s in twin.of("status")]
    assert seqs == sorted(set(seqs)), f"status seq strictly increasing: {seqs}"
    assert len(twin.of("conn")) == 1, "one connection for the whole alive phase"
    during = [r for r in output_writes_since(plc, t_normal) if r["t"] <= t_silent]
    assert during == [], f"outputs written while the twin was alive: {during}"

    # (2) SILENCE (connection kept open): safe state at the PLC at the heartbeat deadline.
    deadline = float(silent["last_heartbeat_t"]) + TIMEOUT_S
    writes = wait_for(lambda: output_writes_since(plc, t_normal), 5.0, "safe-state write")
    first = writes[0]
    assert first["t"] >= deadline, f"safe state {deadline - first['t']:.3f} s before deadline"
    assert first["t"] - deadline < 0.3, f"safe state {first['t'] - deadline:.3f} s late"
    assert first["names"][:2] == ["heater_power", "cooling_valve"]
    assert first["values"][0] == HEATER_SAFE_RAW
    wait_for(lambda: any(r["values"][r["names"].index("cooling_valve")] == COOLING_SAFE_RAW
                         for r in output_writes_since(plc, t_normal)
                         if "cooling_valve" in r["names"]), 5.0,
             "cooling valve written at its safe value (fully open, policy ramp)")
    log.info("normal %.3f, silent %.3f (%d statuses, all normal), deadline %.3f, first safe "
             "write %+.3f s after it %s, connections %d", t_normal, t_silent, len(alive),
             deadline, first["t"] - deadline, first["values"], len(twin.of("conn")))
    failsafe = wait_for(
        lambda: [s for s in twin.of("status") if s["t"] >= deadline and s["state"] == "failsafe"],
        5.0, "agent reports failsafe")[0]
    assert failsafe["conn"] == 1, "reported on the connection the twin kept open"
    state = plc.control.state()
    assert state["outputs"]["heater_power"] == 0
    assert state["plc_remote"] == 1 and state["applied"]["heater_power"] == 0, \
        "the PLC program took the safe set"
    log.info("failsafe reported %.3f s after the deadline", failsafe["t"] - deadline)
    assert agent.alive()
