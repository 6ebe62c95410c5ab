"""The demo's scenarios: make one fault happen for real, measure its effect at the sim PLC.

Each scenario is a function over a running :class:`sim.stack.Stack` (wrapped in a
:class:`DemoContext`) returning a :class:`ScenarioResult`. What counts is observed from
outside the agent: the sim PLC's write log (when a write *arrived*, its CLOCK_MONOTONIC
receipt time) and the agent's status messages as the sim twin received them. A scenario
whose preconditions are missing (a hook not built yet, a later issue) raises
:class:`Unavailable`; the runner reports it as skipped, never as passed.

Reaction times (milliseconds, all clocks CLOCK_MONOTONIC of the host):

==============  ===========================================================================
shadow          none: passed iff the agent is NORMAL and the PLC saw zero output writes
                (only the heartbeat register) for the whole window
twin-outage     safe write arrival - (twin's last heartbeat sent + heartbeat_timeout_s)
sensor-fail     safe write arrival - time the second channel's fault was injected
kill-9          PLC watchdog fallback time - (agent's last heartbeat-register write +
                PLC watchdog timeout): lateness past the PLC's own deadline
python-hang     safe frame arrival - (last heartbeat-register write + watchdog_deadline_s)
==============  ===========================================================================

The judgement functions (``judge_*``, ``first_*``) are pure: write-log records in, verdict
out, so a test can feed them a fabricated log and watch them fail.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.profile.model import DataType, Profile
from sim.stack import Stack, sim_tank_text, wait_for

log = logging.getLogger(__name__)

WAIT_S = 20.0  # bound on every wait for a state the agent should reach
SHADOW_WINDOW_S = 4.0
MASK_HOLD_S = 1.5  # one bad channel: watch this long that the plant keeps running
TWIN_OUTAGE_BUDGET_MS = 250.0  # "heartbeat timeout + a few ms", with room for a busy host
SENSOR_BUDGET_MS = 500.0  # "one poll cycle" plus detection over a few polls
PLC_WATCHDOG_BUDGET_MS = 100.0  # the sim PLC checks its watchdog every 10 ms
NATIVE_BUDGET_MS = 50.0  # "watchdog deadline + < 5 ms", with room for a busy host
FAULT_INJECTION_ENV = "TWINGUARD_FAULT_INJECTION"


class Unavailable(Exception):
    """The scenario cannot run here (missing hook, later issue): skipped, with a reason."""


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    passed: bool
    reaction_ms: float | None
    detail: str


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class DemoContext:
    """What a scenario works with. ``step(text)`` tells the view and the timeline what the
    scenario is doing now (e.g. "twin stops heartbeats")."""

    stack: Stack
    profile: Profile
    step: Callable[[str], None]


Scenario = Callable[[DemoContext], ScenarioResult]


def demo_profile_text(holdoff_s: float = 1.0) -> str:
    """sim-tank with auto recovery after a short hold-off, so scenarios follow quickly."""
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', sim_tank_text())
    return re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", text)


# --- pure judgement over write-log records -------------------------------------------------

def output_names(profile: Profile) -> frozenset[str]:
    return frozenset(o.name for o in profile.outputs)


def is_output_write(rec: dict[str, Any], outputs: Iterable[str]) -> bool:
    """A write the agent sent over Modbus that touched an output register."""
    return rec.get("source") == "modbus" and bool(set(rec.get("names", ())) & set(outputs))


def is_safe_write(rec: dict[str, Any], profile: Profile) -> bool:
    """An accepted Modbus write that puts every output it touches at its safe raw value.

    Only 16-bit (and BOOL) outputs are compared value by value; a 32-bit output in the
    record counts as safe when the others are (the sim-tank profile has none).
    """
    if rec.get("source") != "modbus" or not rec.get("accepted", True):
        return False
    touched = [o for o in profile.outputs if o.name in rec.get("names", ())]
    if not touched:
        return False
    values = list(rec.get("values", ()))
    for out in touched:
        i = out.address - int(rec["address"])
        if out.dtype is DataType.BOOL:
            safe = 1 if out.safe_value else 0
        elif out.words == 1:
            safe = round((out.safe_value - out.offset) / out.scale) & 0xFFFF
        else:
            continue
        if not 0 <= i < len(values) or values[i] != safe:
            return False
    return True


def first_safe_write(log_: Sequence[dict[str, Any]], profile: Profile,
                     since: float) -> dict[str, Any] | None:
    """The first safe-state write (see :func:`is_safe_write`) received at or after ``since``."""
    return next((r for r in log_ if r["t"] >= since and is_safe_write(r, profile)), None)


def first_fallback(log_: Sequence[dict[str, Any]], since: float) -> dict[str, Any] | None:
    """The first PLC-watchdog fallback pseudo-entry at or after ``since``."""
    return next((r for r in log_ if r["t"] >= since and r.get("source") == "plc watchdog"),
                None)


def last_heartbeat_write(log_: Sequence[dict[str, Any]], address: int,
                         before: float) -> dict[str, Any] | None:
    """The agent's last write to the PLC heartbeat register received before ``before``."""
    hits = [r for r in log_ if r.get("source") == "modbus" and r.get("table") == "holding"
            and r.get("address") == address and r["t"] < before]
    return hits[-1] if hits else None


def judge_shadow(log_: Sequence[dict[str, Any]], outputs: Iterable[str], heartbeat_address: int,
                 since: float, until: float) -> tuple[bool, str]:
    """Shadow mode writes nothing but the heartbeat register: zero output writes and at
    least one heartbeat write (the agent was alive) in ``[since, until]``."""
    window = [r for r in log_ if since <= r["t"] <= until]
    outs = [r for r in window if is_output_write(r, outputs)]
    beats = [r for r in window if r.get("source") == "modbus"
             and r.get("address") == heartbeat_address and r.get("table") == "holding"]
    if outs:
        names = sorted({n for r in outs for n in r.get("names", ())})
        return False, f"{len(outs)} output write(s) in shadow mode ({', '.join(names)})"
    if not beats:
        return False, "no heartbeat-register writes: the agent was not running"
    return True, f"0 output writes, {len(beats)} heartbeat-register writes in {until - since:.1f} s"


def within(reaction_ms: float, budget_ms: float, low_ms: float = 0.0) -> bool:
    return low_ms <= reaction_ms <= budget_ms


# --- helpers over the live stack -----------------------------------------------------------

def _states_since(stack: Stack, since: float) -> list[str]:
    return [str(s[2]) for s in stack.twin.stats(last=50)["statuses"] if s[0] >= since]


def _wait_safe_write(ctx: DemoContext, since: float, timeout: float) -> dict[str, Any]:
    def landed() -> dict[str, Any] | None:
        return first_safe_write(ctx.stack.plc.write_log(), ctx.profile, since)

    got: dict[str, Any] = wait_for(landed, timeout, "safe-state write at the PLC", period=0.02)
    return got


def _restart_agent(ctx: DemoContext) -> float:
    """Start a fresh agent; the time it was started (wait for NORMAL after that)."""
    ctx.step("restart the agent")
    started = time.monotonic()
    ctx.stack.start_agent()
    return started


# --- the scenarios ---------------------------------------------------------------------------

def shadow(ctx: DemoContext) -> ScenarioResult:
    """Normal running in shadow mode: the PLC sees only heartbeat-register writes."""
    ctx.step("wait for NORMAL")
    ctx.stack.wait_state("normal", timeout=WAIT_S)
    since = time.monotonic()
    ctx.step(f"watch the PLC's write log for {SHADOW_WINDOW_S:g} s")
    time.sleep(SHADOW_WINDOW_S)
    until = time.monotonic()
    passed, detail = judge_shadow(ctx.stack.plc.write_log(), output_names(ctx.profile),
                                  ctx.profile.plc_watchdog.heartbeat_address, since, until)
    states = set(_states_since(ctx.stack, since))
    if states - {"normal"}:
        passed, detail = False, f"{detail}; agent reported {sorted(states)}"
    return ScenarioResult("shadow", passed, None, detail)


def twin_outage(ctx: DemoContext) -> ScenarioResult:
    """The twin stops its heartbeats: safe write at the deadline; back to NORMAL after."""
    stack, timeout_s = ctx.stack, ctx.profile.timing.heartbeat_timeout_s
    t_normal = stack.wait_state("normal", timeout=WAIT_S)
    ctx.step("twin stops sending heartbeats")
    stopped = time.monotonic()
    stack.twin.request({"cmd": "stop"})
    deadline = float(stack.twin.stats(last=1)["last_heartbeat_t"]) + timeout_s
    write = _wait_safe_write(ctx, since=max(t_normal, stopped - timeout_s),
                             timeout=timeout_s + 5.0)
    reaction = (write["t"] - deadline) * 1000.0
    ctx.step(f"safe state at the PLC {reaction:+.1f} ms after the deadline")
    t_fail = stack.wait_state("failsafe", timeout=WAIT_S, since=stopped)
    ctx.step("twin resumes heartbeats")
    stack.twin.request({"cmd": "resume"})
    resumed = time.monotonic()
    t_back = stack.wait_state("normal", timeout=WAIT_S, since=t_fail)
    holdoff = ctx.profile.recovery.holdoff_s
    ok = within(reaction, TWIN_OUTAGE_BUDGET_MS) and t_back - resumed >= holdoff
    detail = (f"safe write {reaction:+.1f} ms after last heartbeat + {timeout_s:g} s; "
              f"NORMAL again {t_back - resumed:.1f} s after resume (hold-off {holdoff:g} s)")
    if not within(reaction, TWIN_OUTAGE_BUDGET_MS):
        detail += f"; outside 0..{TWIN_OUTAGE_BUDGET_MS:g} ms"
    return ScenarioResult("twin-outage", ok, reaction, detail)


def sensor_fail(ctx: DemoContext) -> ScenarioResult:
    """One temperature channel of three fails (masked, DEGRADED), then a second (trip)."""
    stack, plc = ctx.stack, ctx.stack.plc.control
    t_normal = stack.wait_state("normal", timeout=WAIT_S)
    ctx.step("temp_a out of range")
    t1 = time.monotonic()
    plc.fault("out_of_range", signal="temp_a")
    t_deg = stack.wait_state("degraded", timeout=WAIT_S, since=t1)
    ctx.step(f"DEGRADED; watch {MASK_HOLD_S:g} s that the plant keeps running")
    time.sleep(MASK_HOLD_S)
    early = first_safe_write(stack.plc.write_log(), ctx.profile, since=t_normal)
    masked = early is None and "failsafe" not in _states_since(stack, t_deg)
    ctx.step("temp_b stuck, then drifting")
    plc.fault("stuck", signal="temp_b")
    t2 = time.monotonic()
    plc.fault("drift", signal="temp_b", value=50.0)
    write = _wait_safe_write(ctx, since=t2, timeout=5.0)
    reaction = (write["t"] - t2) * 1000.0
    ctx.step(f"trip: safe state at the PLC {reaction:.1f} ms after the second fault")
    t_fail = stack.wait_state("failsafe", timeout=WAIT_S, since=t2)
    ctx.step("clear the sensor faults")
    plc.clear()
    stack.wait_state("normal", timeout=WAIT_S, since=t_fail)
    ok = masked and within(reaction, SENSOR_BUDGET_MS)
    detail = ("1 of 3 bad: DEGRADED, no safe write" if masked
              else "1 of 3 bad already drove the safe state") + \
        f"; 2 of 3 bad: safe write {reaction:.1f} ms after the fault; recovered"
    return ScenarioResult("sensor-fail", ok, reaction, detail)


def kill_9(ctx: DemoContext) -> ScenarioResult:
    """SIGKILL the agent: the PLC's own communication watchdog applies its fallback."""
    stack = ctx.stack
    stack.wait_state("normal", timeout=WAIT_S)
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
    ctx.step("PLC fell back to its safe outputs")
    started = _restart_agent(ctx)
    stack.wait_state("normal", timeout=WAIT_S, since=started)
    return ScenarioResult("kill-9", ok, reaction, detail + "; agent restarted, NORMAL")


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
    agent = stack.agent
    assert agent is not None, "the demo always runs an agent"
    if not catches_signal(agent.pid, signal.SIGUSR2):
        raise Unavailable("the agent has no fault-injection hook yet "
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
        last = last_heartbeat_write(stack.plc.write_log(),
                                    ctx.profile.plc_watchdog.heartbeat_address, before=write["t"])
        if last is None:
            ok, detail = False, "no heartbeat-register write before the safe frame"
        else:
            reaction = (write["t"] - last["t"] - deadline_s) * 1000.0
            ok = within(reaction, NATIVE_BUDGET_MS, low_ms=-1.0)
            detail = (f"native safe frame {reaction:+.1f} ms past the {deadline_s * 1000:g} ms "
                      "watchdog deadline")
            ctx.step(f"native watchdog: safe frame at the PLC {reaction:+.1f} ms late")
    if agent.alive():
        agent.kill()
    started = _restart_agent(ctx)
    stack.wait_state("normal", timeout=WAIT_S, since=started)
    return ScenarioResult("python-hang", ok, reaction, detail + "; agent restarted, NORMAL")


def promote_active(ctx: DemoContext) -> ScenarioResult:
    raise Unavailable("signed config push (promotion to active) is a later issue")


def forged_config(ctx: DemoContext) -> ScenarioResult:
    raise Unavailable("signed config push (forged bundle rejected) is a later issue")


# The one table of scenarios, in the order the issue lists them; the demo runs them in this
# order (a selection keeps this order).
SCENARIOS: dict[str, Scenario] = {
    "shadow": shadow,
    "twin-outage": twin_outage,
    "sensor-fail": sensor_fail,
    "kill-9": kill_9,
    "python-hang": python_hang,
    "promote-active": promote_active,
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
