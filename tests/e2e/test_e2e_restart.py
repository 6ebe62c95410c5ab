"""Start, stop and restart do not disturb a healthy plant (issue 12 item 5), real processes.

A pushed configuration that needs a restart is applied by a hand-over
(``agent.runtime.handover``): the new agent process is ready before the old one lets go.
Asserted at the sim PLC: no output write at all (no safe set), the PLC's communication
watchdog never fell back, the outputs hold what the twin had set, and the new process takes
authority again by the return rule. The heartbeat gap itself is a figure of
``python -m sim.bench restart``, not an assertion here.
"""

from __future__ import annotations

import re
import time

import pytest
from bundle_kit import Kit
from test_e2e_authority import HB_ADDRESS, output_log, profile, take_authority

from sim.stack import DEVICE_ID, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# a generous PLC watchdog: what is asserted is that it never falls back, with margin for a
# loaded CI machine (the figure on a quiet one is in the benchmark)
PLC_TIMEOUT_MS = 3000


def restart_profile() -> str:
    text = profile()
    return re.sub(r"(?m)^expected_timeout_ms = .*$", f"expected_timeout_ms = {PLC_TIMEOUT_MS}",
                  text)


def test_a_pushed_restart_hands_over_without_touching_the_outputs() -> None:
    kit = Kit.new()
    with Stack(profile_text=restart_profile(), mode="active",
               config_extra=f"[confirm]\nwindow_s = 30.0\n{kit.trust_toml()}") as st:
        take_authority(st, heater=30.0)
        old = st.agent
        assert old is not None
        base = st.config_path.read_text()
        bundle = kit.bundle(base + "\n[telemetry]\nwindow = 10\n", 1, ("op1",),
                            device=DEVICE_ID)
        path = st.workdir / "restart.bundle"
        path.write_bytes(bundle)
        t_push = time.monotonic()
        assert st.twin.request({"cmd": "push", "path": str(path)})["ok"]
        wait_for(lambda: not old.alive(), 60, "the old agent lets go")
        assert old.proc.returncode == 0, old.stderr()[-3000:]
        new_pid = st.successor_pid()
        assert new_pid != old.pid
        st.wait_authority("remote", since=t_push, timeout=40)
        writes = output_log(st, t_push)
        assert writes == [], f"not one output write through the restart: {writes}"
        trips_before = st.plc.control.state()["watchdog"]["trips"]
        state = st.plc.control.state()
        assert state["outputs"]["heater_power"] == pytest.approx(30.0, abs=0.05)
        assert state["watchdog"]["trips"] == trips_before == 0, "the PLC's watchdog fell back"
        assert not state["watchdog"]["latched"]
        beats = [w["t"] for w in st.plc.write_log()
                 if w["address"] == HB_ADDRESS and w["t"] >= t_push]
        assert beats, "the new process feeds the PLC watchdog"
        assert "failsafe" not in {s[2] for s in st.twin.stats(last=500)["statuses"]
                                  if s[0] >= t_push}
        assert "hand-over: successor pid" in st.agent_stderr()
