"""``twinguard run`` against the hostile Modbus TCP server: the agent as a process.

One agent (shadow mode, no twin: a local guard) polls the hostile server; each kind of bad
reply is made to happen on every signal read in turn. Asserted from outside only:
``twinguard status --json`` (the readings' reasons as the voting shows them, the PLC
counters), the agent's log, and the server's record of requests (a new connection after each
malformed reply; nothing written because of a poisoned value: the only writes are the
heartbeat and, because every reading going BAD makes the required groups BAD (a hazard),
the safe set with the ``[plc_remote]`` flag and the flag handed back on recovery; the
poisoned PLC-watchdog latch never brings a reset, the poisoned temperatures never a trip).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_modbus import POISON, READ_REASONS, Fault, HostileServer, Received

from sim.stack import Proc, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WAIT_S = 20.0


class Agent:
    def __init__(self, server: HostileServer, workdir: Path) -> None:
        self.state_dir = workdir / "state"
        self.proc = Proc(
            [sys.executable, "-m", "agent", "-v", "run", "--profile", "sim-tank", "--tcp",
             f"127.0.0.1:{server.port}", "--state-dir", str(self.state_dir)],
            workdir / "agent.stderr", ready=False)

    def status(self) -> dict[str, Any] | None:
        proc = subprocess.run(
            [sys.executable, "-m", "agent", "status", "--json", "--state-dir",
             str(self.state_dir)], capture_output=True, text=True, timeout=20, check=False)
        if proc.returncode != 0:
            return None
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def log(self) -> str:
        return self.proc.stderr_path.read_text(errors="replace")


@pytest.fixture
def setup() -> Iterator[tuple[HostileServer, Agent]]:
    with tempfile.TemporaryDirectory(prefix="hostile-run-") as tmp, HostileServer() as server:
        agent = Agent(server, Path(tmp))
        try:
            yield server, agent
        finally:
            agent.proc.stop()


def details(status: dict[str, Any]) -> dict[str, str]:
    """channel -> why the voting excluded it (a BAD reading's reason)."""
    return {e["channel"]: e["detail"] for v in status["votes"] for e in v["excluded"]}


def all_good(status: dict[str, Any]) -> bool:
    return bool(status["votes"]) and all(v["quality"] == "good" for v in status["votes"])


def excluded_for(agent: Agent, seen: list[dict[str, Any]], channel: str, prefix: str,
                 logged: int) -> bool:
    """``channel`` was excluded for a comm failure starting ``prefix``: logged after
    ``logged`` characters of the log, or shown by one of the statuses ``seen``."""
    if f"{channel} excluded: comm failure ({prefix}" in agent.log()[logged:]:
        return True
    return any(details(s).get(channel, "").startswith(prefix) for s in seen)


def test_agent_never_trusts_a_malformed_reply(setup: tuple[HostileServer, Agent]) -> None:
    server, agent = setup
    seen: list[dict[str, Any]] = []

    def sample() -> dict[str, Any] | None:
        s = agent.status()
        if s is not None:
            seen.append(s)
        return s

    def healthy() -> dict[str, Any] | None:
        s = sample()
        return s if s is not None and all_good(s) and s["plc"]["connected"] else None

    wait_for(healthy, WAIT_S, "agent polling the hostile server, all GOOD", period=0.2)

    for fault, reason in READ_REASONS.items():
        before = wait_for(healthy, WAIT_S, f"healthy before {fault.name}", period=0.2)
        first = len(server.received())
        logged = len(agent.log())
        prefix = reason.split(" 23131")[0]  # the transaction id depends on the connection
        server.inject(fault, fc=4, times=None)

        def shows(prefix: str = prefix, before: dict[str, Any] = before) -> dict[str, Any] | None:
            s = sample()
            if s is None or s["plc"]["malformed"] + s["plc"]["disconnects"] == (
                    before["plc"]["malformed"] + before["plc"]["disconnects"]):
                return None
            last = s["plc"]["last_error"] or ""
            named = last.startswith(prefix) or last.startswith(
                "disconnected: reset after a " + prefix.removeprefix("disconnected: "))
            return s if named and not all_good(s) else None

        bad = wait_for(shows, WAIT_S, f"status naming {reason!r}", period=0.2)
        # the readings went BAD with that reason: the voting logs why it excluded them (on
        # the edge only: a loaded machine may first exclude them for the tick's I/O budget,
        # then the reason shows in the status' exclusions)
        since = len(seen) - 1  # ``bad`` and later
        for channel in ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b"):
            def excluded(c: str = channel, p: str = prefix, n: int = logged,
                         k: int = since) -> bool:
                return excluded_for(agent, seen[k:], c, p, n) or bool(
                    sample() and excluded_for(agent, seen[-1:], c, p, n))

            wait_for(excluded, WAIT_S, f"{channel} BAD with {prefix!r}", period=0.2)
        faulted: list[Received] = [r for r in server.received()[first:] if r.fault is fault]
        assert faulted, fault
        counted = "malformed" if fault is not Fault.RESET_MID_REPLY else "disconnects"
        assert bad["plc"][counted] > before["plc"][counted], (fault, bad["plc"])
        assert bad["plc"]["disconnects"] > before["plc"]["disconnects"]
        server.clear()
        after = wait_for(healthy, WAIT_S, f"healthy after {fault.name}", period=0.2)
        later = server.received()[first:]
        # the connection was reset: requests after the faulted one came on a new connection
        assert max(r.conn for r in later) > faulted[0].conn, fault
        assert after["plc"]["reconnects"] > before["plc"]["reconnects"]

    # late replies: every signal read answered only after the timeout, poisoned
    before = wait_for(healthy, WAIT_S, "healthy before LATE", period=0.2)
    server.inject(Fault.LATE, fc=4, times=None)

    def late_dropped() -> dict[str, Any] | None:
        s = sample()
        return s if s is not None and s["plc"]["late_replies"] > before["plc"][
            "late_replies"] and len(details(s)) == 5 else None

    late = wait_for(late_dropped, WAIT_S, "late replies dropped", period=0.2)
    assert all(("no answer within" in d or "backed off" in d or d.startswith("disconnected")
                or "exceeded the tick budget" in d) for d in details(late).values()), details(late)
    server.clear()
    wait_for(healthy, WAIT_S, "healthy after LATE", period=0.2)

    # a poisoned PLC-watchdog latch (a set bit in a reply of the wrong function code)
    first = len(server.received())
    server.inject(Fault.WRONG_FC, fc=2, times=3)
    wait_for(lambda: [r for r in server.received()[first:] if r.fc == 2 and r.fault
                      is Fault.WRONG_FC][2:], WAIT_S, "three poisoned latch reads", period=0.2)
    wait_for(healthy, WAIT_S, "healthy after the poisoned latch", period=0.2)

    # wrong write echo: the heartbeat writes fail, and say why. Only once the agent is back
    # to NORMAL: while RECOVERING it still writes the safe set (fc 16 too), which would take
    # the faulted replies instead of the heartbeat (seen in CI on a loaded machine)
    wait_for(lambda: (s := sample()) is not None and s["state"] == "normal", WAIT_S,
             "NORMAL before the wrong write echo", period=0.2)
    server.inject(Fault.ECHO_ADDRESS, fc=16, times=None)
    wait_for(lambda: "write plc_watchdog.heartbeat failed: malformed reply: write echo address "
             "201, expected 200" in agent.log(), WAIT_S, "the failed heartbeat logged")
    server.clear()
    wait_for(healthy, WAIT_S, "healthy at the end", period=0.2)

    # nothing was written on the strength of a poisoned value
    writes = [r for r in server.received() if r.is_write]
    # the heartbeat, the safe set and the [plc_remote] flag (coil 1); no latch reset (coil 0)
    assert {(r.fc, r.address) for r in writes} <= {(16, 100), (16, 200), (5, 1)}, writes
    assert {r.values for r in writes if r.address == 100} == {(0, 1000)}  # the safe set only
    flag = [r.values for r in writes if (r.fc, r.address) == (5, 1)]
    assert flag and flag[0] == (1,), "the flag remote with the safe set"
    assert set(flag) <= {(0,), (1,)}
    assert len(seen) > 20
    for s in seen:
        assert not any(t in (s["cause"] or "") for t in ("overtemperature", "overpressure"))
        for v in s["votes"]:
            assert v["value"] is None or v["value"] < POISON / 10 / 2, v
        assert not any("overtemperature" in e["text"] for e in s["events"])
    log = agent.log()
    assert "Traceback" not in log and "data_received" not in log
    assert "malformed reply: function code 3, expected 4" in log
