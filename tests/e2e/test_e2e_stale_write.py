"""A decision taken before a stall is never written after the native watchdog fired.

Field trial (issue 10, item 4), active mode with a ramping recommendation: the loop stalled
0.8 s between the decision and its write, the twin stopped at the stall; the PLC saw the
native watchdog's safe frame at +0.16 s, then at +0.80 s the twin's heater value (written
from the stale decision, 640 ms after the safe state) and a PLC-watchdog heartbeat from the
stalled tick. Here the same stall is made to happen (test-only fault injection arms a
one-shot block between a tick's decision and its writes), and the sim PLC's write log must
show nothing but the safe set after the native frame until the agent, running again, has
entered FAILSAFE ("agent hang") and written the safe set itself.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest

from agent.config.profile.load import load_profile
from sim.bench.native import heartbeat_writes
from sim.stack import Stack, output_writes, recommend_script, sim_tank_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

STALL_S = 0.8
TRIALS = 3
AGENT_ENV = {
    "TWINGUARD_FAULT_INJECTION": "1",
    "TWINGUARD_WATCHDOG": "native",
    "TWINGUARD_BLOCK_AT": "decision",
    "TWINGUARD_BLOCK_S": str(STALL_S),
}


def profile() -> str:
    """sim-tank, auto recovery, and the twin's authority back 1 s after it is eligible."""
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', sim_tank_text())
    text = re.sub(r"(?m)^holdoff_s = .*$", "holdoff_s = 1.0", text)
    return text + "\n[authority]\nreturn_holdoff_s = 1.0\n"


def heater_raw(log: list[dict[str, Any]], since: float) -> list[tuple[float, int]]:
    return [(w["t"], w["values"][w["names"].index("heater_power")])
            for w in output_writes(log, "heater_power", since=since)]


def test_no_stale_write_follows_the_native_frame_at_the_plc() -> None:
    with Stack(profile_text=profile(), mode="active", agent_env=AGENT_ENV) as stack:
        hb = load_profile(str(stack.profile_path)).plc_watchdog
        assert stack.agent is not None
        t_recovered = 0.0
        for trial in range(TRIALS):
            t_normal = stack.wait_state("normal", since=t_recovered, timeout=30.0)
            stack.wait_authority("remote", since=t_normal, timeout=30.0)
            stack.twin.request(recommend_script([(0.0, "heater_power", 80.0, 60.0)]))
            wait_for(lambda t=t_normal: [v for _, v in heater_raw(stack.plc.write_log(), t)
                                         if v >= 50], 10.0, "the heater ramps (5 %+)")
            hangs = stack.agent_stderr().count("FAILSAFE on FAULT (agent hang")
            t_sig = time.monotonic()
            stack.agent.signal(signal.SIGUSR1)  # the next tick stalls after its decision
            stack.twin.request({"cmd": "stop"})  # the twin stops at the stall
            wait_for(lambda t=t_sig, n=hangs: stack.agent_stderr().count(
                "FAILSAFE on FAULT (agent hang") > n
                and len(heater_raw(stack.plc.write_log(), t)) >= 2, 10.0,
                "the agent ran again and entered FAILSAFE (agent hang)")
            time.sleep(0.5)  # anything the stalled tick still had to write would be out now
            log = stack.plc.write_log()
            writes = heater_raw(log, t_sig)
            native_t, native_v = writes[0]
            assert native_v == 0, f"trial {trial}: the first write after the stall is safe"
            assert native_t - t_sig >= 0.15, "the native watchdog wrote it, past its deadline"
            after = [v for t, v in writes if t >= native_t]
            assert after and all(v == 0 for v in after), (
                f"trial {trial}: a non-safe heater value reached the PLC after the native "
                f"frame: {writes}")
            agent_safe_t = writes[1][0]  # the agent's own safe set, once it runs again
            beats = [r["t"] for r in heartbeat_writes(log, hb.heartbeat_address, hb.unit_id)
                     if r["t"] > native_t]
            assert not beats or beats[0] > agent_safe_t, (
                f"trial {trial}: the stalled tick wrote the PLC heartbeat at {beats[0]:.3f}, "
                f"before the agent's safe set at {agent_safe_t:.3f}")
            stack.twin.request({"cmd": "resume"})
            t_recovered = time.monotonic()
        assert stack.agent.alive()
