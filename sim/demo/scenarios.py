"""The demo's scenarios: make one fault happen for real, measure its effect at the sim PLC.

Each scenario is a function over a running :class:`sim.stack.Stack` (wrapped in a
:class:`DemoContext`) returning a :class:`ScenarioResult`. What counts is observed from
outside the agent: the sim PLC's write log (when a write *arrived*, its CLOCK_MONOTONIC
receipt time), the agent's status messages and config results as the sim twin received
them, and the agent's audit log. A scenario whose preconditions are missing (no fault
injection hook, no signing keys) raises :class:`Unavailable`; the runner reports it as
skipped, never as passed. The judgement itself is pure (:mod:`sim.demo.judge`).

The table runs in the issue's order. The first two scenarios run in shadow mode (the
twin only advises); ``promote-active`` makes the twin's recommendations count, and the later
scenarios run in ``active`` mode: the twin holds authority (REMOTE) and the outputs, the PLC
program (``[sim.program]``) runs the plant whenever the agent hands them back
(:mod:`sim.demo.outages`), and a hazard's safe set overrides both (with the ``[plc_remote]``
flag at ``remote_value``: the program must take the agent's values). Reaction times
(milliseconds, all clocks CLOCK_MONOTONIC of the host):

====================  =====================================================================
shadow                none: passed iff the agent is NORMAL and the PLC saw zero agent
                      writes (outputs, flag: only the heartbeat register) for the whole
                      window, while the twin's recommendations were flowing
shadow-twin-outage    none (:mod:`sim.demo.outages`)
promote-active        first recommendation write at the PLC - push sent (:mod:`sim.demo.pushes`)
active-twin-outage    the shed write at the PLC - the heartbeat deadline (:mod:`sim.demo.outages`)
hazard-during-outage  the full safe set at the PLC - the second sensor fault (same)
sensor-fail           the full safe set complete at the PLC - the second channel's fault
                      (one bad channel first: DEGRADED, no safe set; in active mode the
                      outputs are handed back to the PLC program: authority needs NORMAL)
python-hang           safe frame arrival - (last heartbeat-register write + watchdog_deadline_s)
kill-9                PLC watchdog fallback time - (agent's last heartbeat-register write +
                      PLC watchdog timeout): lateness past the PLC's own deadline; the PLC
                      program then runs the plant (sim-tank's ``comm_fallback = "local"``)
agent-restart         none: a pushed change applied by a hand-over restart, judged at the
                      PLC (:mod:`sim.demo.restart`)
forged-config         rejection received at the twin - push sent (:mod:`sim.demo.pushes`)
====================  =====================================================================

Scenario figures beyond the reaction (``ScenarioResult.figures``) are listed in each
module's docstring.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path
from typing import Any

from sim.demo.context import (
    WAIT_S,
    DemoContext,
    Scenario,
    ScenarioResult,
    Skipped,
    Unavailable,
)
from sim.demo.judge import (
    first_fallback,
    first_safe_write,
    flag_writes,
    judge_shadow,
    last_heartbeat_write,
    native_lateness,
    safe_set,
    within,
    write_names,
)
from sim.demo.outages import active_twin_outage, hazard_during_outage, shadow_twin_outage
from sim.demo.pushes import current_mode, forged_config, promote_active
from sim.demo.restart import agent_restart
from sim.stack import Stack, sim_tank_text, wait_for

__all__ = ["FAULT_INJECTION_ENV", "SCENARIOS", "WAIT_S", "DemoContext", "ScenarioResult",
           "Skipped", "Unavailable", "catches_signal", "demo_profile_text", "run_scenario"]

log = logging.getLogger(__name__)

SHADOW_WINDOW_S = 4.0
MASK_HOLD_S = 1.5  # one bad channel: watch this long that the plant keeps running
TRIP_HOLD_S = 1.5  # two bad channels: the faults stay this long after FAILSAFE is reported
RETURN_HOLDOFF_S = 3.0  # the demo's [authority] return_holdoff_s
SENSOR_BUDGET_MS = 500.0  # "one poll cycle" plus detection over a few polls
PLC_WATCHDOG_BUDGET_MS = 100.0  # the sim PLC checks its watchdog every 10 ms
NATIVE_BUDGET_MS = 50.0  # "watchdog deadline + < 5 ms", with room for a busy host
FAULT_INJECTION_ENV = "TWINGUARD_FAULT_INJECTION"


def demo_profile_text(holdoff_s: float = 1.0, return_holdoff_s: float = RETURN_HOLDOFF_S) -> str:
    """sim-tank with auto recovery after a short hold-off and the twin's authority back
    after ``return_holdoff_s`` (auto return), so scenarios follow quickly."""
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', sim_tank_text())
    text = re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", text)
    text = re.sub(r"(?ms)^\[authority\][^\n]*\n.*?(?=^\[|\Z)", "", text)
    return text + f'\n[authority]\nreturn = "auto"\nreturn_holdoff_s = {return_holdoff_s}\n'



# --- helpers over the live stack -----------------------------------------------------------

def _states_since(stack: Stack, since: float) -> list[str]:
    return [str(s[2]) for s in stack.twin.stats(last=50)["statuses"] if s[0] >= since]


def _wait_safe_write(ctx: DemoContext, since: float, timeout: float) -> dict[str, Any]:
    def landed() -> dict[str, Any] | None:
        return first_safe_write(ctx.stack.plc.write_log(), ctx.profile, since)

    got: dict[str, Any] = wait_for(landed, timeout, "safe-state write at the PLC", period=0.1)
    return got


def _restart_agent(ctx: DemoContext, mode_before: str) -> tuple[bool, str]:
    """Start a fresh agent, wait for NORMAL; whether it came back in ``mode_before`` (a
    pushed configuration survives a restart) and a note for the detail."""
    ctx.step("restart the agent")
    started = time.monotonic()
    ctx.stack.start_agent()
    ctx.stack.wait_state("normal", timeout=WAIT_S, since=started)
    mode = current_mode(ctx.stack)
    note = f"agent restarted, NORMAL, mode {mode}"
    if mode != mode_before:
        note += f" (was {mode_before}: FAILED)"
    return mode == mode_before, note


# --- the scenarios ---------------------------------------------------------------------------

def shadow(ctx: DemoContext) -> ScenarioResult:
    """Normal running in shadow mode: the PLC sees only heartbeat-register writes by Modbus,
    while the operator runs the process and the twin's recommendations flow."""
    ctx.step("wait for NORMAL")
    ctx.stack.wait_state("normal", timeout=WAIT_S)
    since = time.monotonic()
    ctx.step(f"watch the PLC's write log for {SHADOW_WINDOW_S:g} s")
    time.sleep(SHADOW_WINDOW_S)
    until = time.monotonic()
    passed, detail = judge_shadow(ctx.stack.plc.write_log(), write_names(ctx.profile),
                                  ctx.profile.plc_watchdog.heartbeat_address, since, until)
    stats = ctx.stack.twin.stats(last=200)
    recs = [r for r in stats["results"] if since <= r["t"] <= until and r["accepted"]]
    detail += f"; {len(recs)} twin recommendations accepted, none written"
    states = {str(s[2]) for s in stats["statuses"] if s[0] >= since}
    modes = {str(s[3]) for s in stats["statuses"] if s[0] >= since}
    if states - {"normal"} or modes - {"shadow"}:
        passed, detail = False, f"{detail}; agent reported {sorted(states)} {sorted(modes)}"
    return ScenarioResult("shadow", passed, None, detail)


def sensor_fail(ctx: DemoContext) -> ScenarioResult:
    """One temperature channel of three fails (masked, DEGRADED), then a second (trip)."""
    stack, plc, profile = ctx.stack, ctx.stack.plc.control, ctx.profile
    mode = current_mode(stack)
    t_normal = stack.wait_state("normal", timeout=WAIT_S)
    if mode == "active":
        stack.wait_authority("remote", timeout=WAIT_S + profile.authority.return_holdoff_s)
    ctx.step("temp_a out of range")
    t1 = time.monotonic()
    plc.fault("out_of_range", signal="temp_a")
    t_deg = stack.wait_state("degraded", timeout=WAIT_S, since=t1)
    ctx.step(f"DEGRADED; watch {MASK_HOLD_S:g} s that the plant keeps running")
    time.sleep(MASK_HOLD_S)
    early = first_safe_write(stack.plc.write_log(), profile, since=t_normal)
    masked = early is None and "failsafe" not in _states_since(stack, t_deg)
    local = None if profile.plc_remote is None else profile.plc_remote.local_value
    handed = mode != "active" or local is None or bool(
        flag_writes(stack.plc.write_log(), profile, t1, value=local))
    ctx.step("temp_b stuck, then drifting")
    plc.fault("stuck", signal="temp_b")
    t2 = time.monotonic()
    plc.fault("drift", signal="temp_b", value=50.0)
    got = wait_for(lambda: safe_set(stack.plc.write_log(), profile, t2), 5.0,
                   "the safe set at the PLC", 0.1)
    reaction = (got[1] - t2) * 1000.0
    ctx.step(f"trip: safe set (flag remote) at the PLC {reaction:.1f} ms after the second "
             "fault")
    t_fail = stack.wait_state("failsafe", timeout=WAIT_S, since=t2)
    time.sleep(TRIP_HOLD_S)
    ctx.step("clear the sensor faults")
    plc.clear()
    stack.wait_state("normal", timeout=WAIT_S, since=t_fail)
    ok = masked and handed and within(reaction, SENSOR_BUDGET_MS)
    detail = ("1 of 3 bad: DEGRADED, no safe write" if masked
              else "1 of 3 bad already drove the safe state")
    if mode == "active":
        detail += (", outputs handed back to the PLC program (authority needs NORMAL)"
                   if handed else ", outputs NOT handed back to the PLC program")
    detail += f"; 2 of 3 bad: full safe set {reaction:.1f} ms after the fault; recovered"
    return ScenarioResult("sensor-fail", ok, reaction, detail)


def require_native_watchdog(stack: Stack) -> None:
    """Unavailable unless the running agent's own watchdog is the native one (what the agent
    runs, not what this process could import)."""
    kind = (stack.status_json().get("watchdog") or {}).get("kind")
    if kind != "native":
        raise Unavailable(
            f"the agent runs the {kind or 'no'} watchdog, which cannot fire while Python "
            "holds the GIL: firmware_bridge._watchdog was not built (no C compiler when the "
            "package was installed?); install gcc and python3-dev, then reinstall")


def kill_9(ctx: DemoContext) -> ScenarioResult:
    """SIGKILL the agent: the PLC's own communication watchdog applies its fallback."""
    stack = ctx.stack
    stack.wait_state("normal", timeout=WAIT_S)
    require_native_watchdog(stack)
    mode = current_mode(stack)
    agent = stack.agent
    assert agent is not None, "the demo always runs an agent"
    ctx.step(f"kill -9 the agent (pid {agent.pid})")
    killed = time.monotonic()
    agent.kill()
    wd = ctx.profile.plc_watchdog
    timeout_s = wd.expected_timeout_ms / 1000.0

    def fallback() -> dict[str, Any] | None:
        return first_fallback(stack.plc.write_log(), since=killed - timeout_s)

    entry: dict[str, Any] = wait_for(fallback, timeout_s + 5.0, "PLC watchdog fallback", 0.02)
    last = last_heartbeat_write(stack.plc.write_log(), wd.heartbeat_address, before=entry["t"])
    if last is None:
        reaction = None
        ok, detail = False, "no heartbeat-register write before the fallback"
    else:
        reaction = (entry["t"] - last["t"] - timeout_s) * 1000.0
        ok = within(reaction, PLC_WATCHDOG_BUDGET_MS, low_ms=-1.0)
        detail = (f"PLC watchdog fallback {reaction:+.1f} ms past its {wd.expected_timeout_ms} "
                  f"ms deadline after the agent's last heartbeat")
    program = ctx.profile.sim is not None and ctx.profile.sim.program is not None
    if program:
        st = stack.plc.control.state()
        local = (st.get("program") or {}).get("mode") == "local"
        ok = ok and local
        detail += ("; the PLC program runs the plant" if local
                   else "; the PLC program did NOT take the plant")
        ctx.step("the PLC's watchdog handed the plant to its program")
    else:
        ctx.step("the PLC fell back to its safe outputs")
    same_mode, note = _restart_agent(ctx, mode)
    return ScenarioResult("kill-9", ok and same_mode, reaction, f"{detail}; {note}")


def catches_signal(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (/proc SigCgt)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def python_hang(ctx: DemoContext) -> ScenarioResult:
    """Hang the agent's Python with the GIL held: the native watchdog writes the safe frame."""
    stack = ctx.stack
    if stack.agent_env.get(FAULT_INJECTION_ENV) != "1":
        raise Unavailable(f"the agent was not started with {FAULT_INJECTION_ENV}=1")
    stack.wait_state("normal", timeout=WAIT_S)
    require_native_watchdog(stack)
    mode = current_mode(stack)
    agent = stack.agent
    assert agent is not None, "the demo always runs an agent"
    if not catches_signal(agent.pid, signal.SIGUSR2):
        raise Unavailable("the agent has no fault-injection hook "
                          f"({FAULT_INJECTION_ENV}=1 + SIGUSR2 is not handled)")
    ctx.step("SIGUSR2: the agent hangs with the GIL held")
    hung = time.monotonic()
    agent.signal(signal.SIGUSR2)
    deadline_s = ctx.profile.timing.watchdog_deadline_s
    try:
        write = _wait_safe_write(ctx, since=hung, timeout=deadline_s + 3.0)
    except TimeoutError:
        write = None
    reaction: float | None = None
    if write is None:
        ok, detail = False, "no safe frame at the PLC within the deadline + 3 s"
    else:
        address = ctx.profile.plc_watchdog.heartbeat_address
        beats = [float(r["t"]) for r in stack.plc.write_log()
                 if r.get("source") == "modbus" and r.get("table") == "holding"
                 and r.get("address") == address]
        late = native_lateness(beats, float(write["t"]), deadline_s,
                               ctx.profile.timing.poll_period_s)
        if late is None:
            ok, detail = False, "no heartbeat-register write before the safe frame"
        else:
            reaction = late * 1000.0
            ok = within(reaction, NATIVE_BUDGET_MS, low_ms=-1.0)
            detail = (f"native safe frame {reaction:+.1f} ms past the {deadline_s * 1000:g} ms "
                      "watchdog deadline")
            ctx.step(f"native watchdog: safe frame at the PLC {reaction:+.1f} ms late")
    if agent.alive():
        agent.kill()
    same_mode, note = _restart_agent(ctx, mode)
    return ScenarioResult("python-hang", ok and same_mode, reaction, f"{detail}; {note}")


# The one table of scenarios; the demo runs them in this order (a selection keeps it). The
# hand-over restart runs late: the agent after it is not the stack's child process.
SCENARIOS: dict[str, Scenario] = {
    "shadow": shadow,
    "shadow-twin-outage": shadow_twin_outage,
    "promote-active": promote_active,
    "active-twin-outage": active_twin_outage,
    "hazard-during-outage": hazard_during_outage,
    "sensor-fail": sensor_fail,
    "python-hang": python_hang,
    "kill-9": kill_9,
    "agent-restart": agent_restart,
    "forged-config": forged_config,
}


def run_scenario(name: str, ctx: DemoContext) -> ScenarioResult | Skipped:
    """Run one scenario; an exception (a wait that timed out, a process gone) is a FAIL with
    the reason as its detail, :class:`Unavailable` a skip. Never raises for those."""
    try:
        return SCENARIOS[name](ctx)
    except Unavailable as exc:
        log.info("scenario %s skipped: %s", name, exc)
        return Skipped(name, str(exc))
    except Exception as exc:
        log.warning("scenario %s failed: %s", name, exc, exc_info=True)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ScenarioResult(name, False, None, f"error: {first}")
