"""``twinguard drill --scenario`` against a real running agent: a rehearsal that changes nothing.

The sim PLC, the sim twin and the agent are real processes (sim.stack), the agent in active
mode with the twin's authority taken (a short return hold-off). The drill runs as a user
runs it, a subprocess; what it changed is judged from outside: the sim PLC's write log (no
output or flag write from the agent during or after the drill, none in a window before it
either, while the heartbeat register kept being written: the loop ticked on), the agent's
state and the twin's authority as ``twinguard status`` reports them, and the audit log. The
report's "would write" values are compared with the profile's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli.main import main
from agent.config.profile.load import load_profile
from agent.core.drills import SCENARIOS
from agent.io.audit import AuditLog, audit_path
from agent.model.profile import PLC_REMOTE
from sim.stack import Stack, sim_tank_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

QUIET_S = 0.5  # the window before the drill, and after it
NOBODY = 65534  # uid and gid of nobody/nogroup: not the agent's user nor in its group


def drill(state_dir: Path, *args: str, user: int | None = None
          ) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if user is not None:
        setpriv = shutil.which("setpriv")
        assert setpriv, "util-linux's setpriv is needed"
        prefix = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "agent", "drill", "--state-dir", str(state_dir),
         *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def agent_writes(log: list[dict[str, Any]], names: set[str], since: float) -> list[Any]:
    return [r for r in log if r["t"] >= since and r.get("source") == "modbus"
            and names & set(r.get("names", ()))]


def test_a_drill_changes_nothing_at_the_plc_and_lands_in_the_audit_log(tmp_path: Path) -> None:
    # a loaded machine must not make the live twin look lost (or the loop hung) meanwhile:
    # that would be a real shed, written, and blamed on the drill
    text = re.sub(r"(?m)^heartbeat_timeout_s = .*$", "heartbeat_timeout_s = 2.0",
                  sim_tank_text())
    text = re.sub(r"(?m)^heartbeat_late_s = .*$", "heartbeat_late_s = 1.0", text)
    text = re.sub(r"(?m)^watchdog_deadline_s = .*$", "watchdog_deadline_s = 0.5", text)
    text += "\n[authority]\nreturn_holdoff_s = 0.5\n"
    with Stack(profile_text=text, mode="active", workdir=tmp_path / "stack") as stack:
        prof = load_profile(str(stack.profile_path))
        assert prof.plc_remote is not None
        points = {o.name for o in prof.writes}
        stack.wait_authority("remote", 30)
        # the takeover's flag write is acknowledged; from then on the agent writes nothing
        wait_for(lambda: agent_writes(stack.plc.write_log(), {PLC_REMOTE}, 0.0), 10,
                 "the takeover's flag write")
        before = time.monotonic()
        time.sleep(QUIET_S)
        assert not agent_writes(stack.plc.write_log(), points, before), "a quiet window first"
        status_before = stack.status_json()

        outage = drill(stack.state_dir, "--scenario", "twin-outage", "--json")
        assert outage.returncode == 0, outage.stderr
        page = tmp_path / "trip.html"
        trip = drill(stack.state_dir, "--scenario", "trip", "--json", "-o", str(page))
        assert trip.returncode == 0, trip.stderr
        time.sleep(QUIET_S)
        log = stack.plc.write_log()
        wrote = agent_writes(log, points, before)
        assert not wrote, f"the drill wrote to the PLC: {wrote}\n{stack.agent_stderr()}"
        heartbeat = prof.plc_watchdog.heartbeat_address
        assert [r for r in log if r["t"] >= before and r["address"] == heartbeat
                and r["table"] == "holding"], "the agent's loop kept ticking"
        status_after = stack.status_json()
        for key in ("state", "mode"):
            assert status_after[key] == status_before[key]
        assert status_after["state"] == "normal"
        assert status_after["authority"]["state"] == "remote"
        assert status_after["twin"]["state"] == "alive"
        assert status_after["socket"]["drills"] == 2

        shed = json.loads(outage.stdout)
        assert (shed["start_state"], shed["start_authority"]) == ("normal", "remote")
        flag = [w for s in shed["steps"] for w in s["writes"] if w["output"] == PLC_REMOTE]
        assert flag[0]["value"] == prof.plc_remote.local_value  # released to the program
        assert flag[-1]["value"] == prof.plc_remote.remote_value  # and taken back
        lost = next(s for s in shed["steps"] if s["kind"] == "authority")
        assert lost["t"] == pytest.approx(prof.timing.heartbeat_timeout_s)

        hot = json.loads(trip.stdout)
        safe = next(s for s in hot["steps"] if s["kind"] == "write"
                    and "enter safe state" in s["text"])
        entered = {w["output"]: w["value"] for w in safe["writes"]}
        assert entered[PLC_REMOTE] == prof.plc_remote.remote_value
        final: dict[str, float] = {}
        for s in hot["steps"]:
            final.update({w["output"]: w["value"] for w in s["writes"]})
        for o in prof.outputs:
            assert final[o.name] == o.safe_value, o.name
        html = page.read_text()
        assert html.count('<tr class="') == len(hot["steps"]) and "<svg" in html

        # no access (another user), an unknown scenario, no agent: one line, no traceback
        denied = drill(stack.state_dir, "--scenario", "trip", user=NOBODY)
        assert denied.returncode == 1 and "permission denied" in denied.stderr
    records = [r.fields for r in AuditLog(audit_path(stack.state_dir)).records()
               if r.kind == "drill"]
    assert [r["scenario"] for r in records] == ["twin-outage", "trip"]
    assert all("uid=0" in r["who"] and r["end_state"] == "normal" for r in records)
    assert records[1]["outcome"] == hot["outcome"]
    assert AuditLog(audit_path(stack.state_dir)).verify().ok


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    unknown = drill(tmp_path, "--scenario", "meteor")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().count("\n") == 0 and "--list" in unknown.stderr
    missing = drill(tmp_path, "--scenario", "twin-outage")
    assert missing.returncode == 3 and "not running" in missing.stderr
    assert "Traceback" not in unknown.stderr + missing.stderr

def test_list_and_a_bad_output_file_need_no_agent(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(SCENARIOS)
    assert main(["drill", "--state-dir", str(tmp_path), "--scenario", "trip", "-o",
                 str(tmp_path / "x.pdf")]) == 2
    assert ".json or .html" in capsys.readouterr().err
