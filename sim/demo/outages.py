"""The twin goes away (issue 12): production runs on, authority sheds, hazards still act.

Judged from outside the agent, like every scenario: the sim PLC's write log (what arrived,
when), its true process values (``state``: the true temperature, the flag, the program)
and the program's ``trace`` (what the plant got), the twin's record of its heartbeats and
of the agent's status messages, and the agent's audit log (``failsafe_enter`` records).
Times are CLOCK_MONOTONIC of the host; "the deadline" is the twin's last heartbeat sent +
the profile's ``heartbeat_timeout_s``.

====================  =====================================================================
shadow-twin-outage    the twin freezes ``Durations.shadow_outage_s`` (20 s) in shadow mode.
                      Passed iff not one agent write of an output or the flag reached the
                      PLC from the freeze until the twin is heard again, no FAILSAFE (status
                      or audit), the PLC program kept the plant (flag local) and the true
                      temperature stayed within ``BAND_C`` of its setpoint. No reaction.
                      Figures: ``outage_s``, ``agent_writes``, ``setpoint_c``, ``band_c``
                      (largest deviation from the setpoint), ``temp_min_c``, ``temp_max_c``.
active-twin-outage    the twin, in control of the tank at the setpoint (authority REMOTE,
                      flag remote), freezes ``Durations.active_outage_s`` (30 s).
                      reaction = the shed write at the PLC (``[plc_remote]`` at
                      ``local_value``: sim-tank's ``release``) - the deadline. Passed iff
                      the reaction is within ``0..SHED_BUDGET_MS``, the true temperature
                      stayed within ``BAND_C`` of the setpoint from the freeze to the
                      return, zero FAILSAFE, no output register written while shed, the
                      authority came back no sooner than ``return_holdoff_s`` after the
                      twin resumed with the flag written before any output, and every
                      output step from what the plant got then is at most ``max_rate``
                      times its interval (:func:`sim.demo.judge.return_steps`). Figures:
                      ``outage_s``, ``setpoint_c``, ``band_c``, ``temp_min_c``,
                      ``temp_max_c``, ``return_after_s`` (twin resumed -> flag remote),
                      ``max_step`` (largest output step at the return, engineering units),
                      ``max_step_output``, ``step_limit`` (what that step was allowed),
                      ``return_writes``.
hazard-during-outage  the twin freezes (in active mode the outputs are shed first), then
                      temp_a and temp_c go out of range one after the other: the group is
                      BAD. reaction = the full safe set, the flag at ``remote_value``
                      included, complete at the PLC - the second fault. Passed iff within
                      one poll period + ``HAZARD_SLACK_MS``, the plant got the safe heater
                      value (the program took the agent's values), FAILSAFE reported, and
                      after the faults clear and the twin resumes: NORMAL, the plant handed
                      back to the PLC program (flag local), and (active) authority REMOTE
                      again. Figures: ``poll_ms``, ``budget_ms``.
====================  =====================================================================
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sim.demo.context import WAIT_S, DemoContext, ScenarioResult, Unavailable
from sim.demo.judge import (
    band,
    deviation,
    flag_writes,
    is_output_write,
    output_names,
    safe_set,
    within,
    write_names,
)
from sim.demo.plant import takeover_steps, wait_settled, watch_temperature, worst_step
from sim.demo.pushes import audit_records, current_mode
from sim.stack import Stack, wait_for

log = logging.getLogger(__name__)

BAND_C = 2.0  # the true temperature stays within this of the setpoint through an outage
SHED_BUDGET_MS = 250.0  # "heartbeat timeout + a few ms", with room for a busy host
HAZARD_SLACK_MS = 100.0  # one poll period + this, with room for a busy host
RETURN_WATCH_S = 2.0  # after the twin takes the outputs back: judge the steps this long
LINK_BACK_S = 10.0
SETTLE_S = 60.0
HOLD_S = 1.5  # the faults stay this long after FAILSAFE is reported


# --- helpers over the live stack -----------------------------------------------------------

def last_heartbeat_t(stack: Stack) -> float:
    return float(stack.twin.stats(last=1)["last_heartbeat_t"])


def failsafe_entries(stack: Stack) -> int:
    """How many ``failsafe_enter`` records the agent's audit log holds now."""
    records, _ok = audit_records(stack.state_dir)
    return sum(1 for r in records if r.kind == "failsafe_enter")


def states_since(stack: Stack, since: float) -> set[str]:
    return {str(s[2]) for s in stack.twin.stats(last=500)["statuses"] if s[0] >= since}


def setpoint_of(stack: Stack) -> float:
    """The PLC program's local setpoint now (Unavailable without a program)."""
    program = stack.plc.control.state().get("program")
    if not program:
        raise Unavailable("the sim PLC runs no program ([sim.program])")
    return float(program["setpoint"])


def wait_twin_heard(stack: Stack) -> None:
    """Wait until the agent reports the twin ALIVE again (its status snapshot)."""
    stack.wait_status(lambda s: s["twin"]["state"] == "alive", LINK_BACK_S, "twin ALIVE again")


def wait_flag(ctx: DemoContext, value: int, since: float, timeout: float) -> dict[str, Any]:
    """The first write of the flag at raw ``value`` received at or after ``since``."""
    def seen() -> dict[str, Any] | None:
        hits = flag_writes(ctx.stack.plc.write_log(), ctx.profile, since, value=value)
        return hits[0] if hits else None

    got: dict[str, Any] = wait_for(seen, timeout, f"the flag written at {value}", 0.1)
    return got


def _verdict(detail: str, checks: dict[str, bool]) -> tuple[bool, str]:
    failed = [k for k, ok in checks.items() if not ok]
    return not failed, detail + ("; FAILED: " + ", ".join(failed) if failed else "")


# --- the scenarios ---------------------------------------------------------------------------

def shadow_twin_outage(ctx: DemoContext) -> ScenarioResult:
    """In shadow mode the twin freezes: nothing is written, the PLC program runs the plant."""
    stack, profile = ctx.stack, ctx.profile
    seconds = ctx.durations.shadow_outage_s
    if current_mode(stack) != "shadow":
        raise Unavailable("the agent is not in shadow mode (run it before promote-active)")
    stack.wait_state("normal", timeout=WAIT_S)
    setpoint = setpoint_of(stack)
    ctx.step(f"wait for the tank at {setpoint:g} degC under the PLC program")
    wait_settled(stack, setpoint, timeout=SETTLE_S)
    entries = failsafe_entries(stack)
    ctx.step(f"the twin freezes for {seconds:g} s (no heartbeats)")
    stopped = time.monotonic()
    stack.twin.request({"cmd": "stop"})
    samples = watch_temperature(stack, min(seconds, 2 * profile.timing.heartbeat_timeout_s))
    twin_seen = str(stack.status_json()["twin"]["state"])  # the agent noticed (it says)
    samples += watch_temperature(stack, max(0.0, seconds - (time.monotonic() - stopped)))
    plc = stack.plc.control.state()
    ctx.step("the twin resumes its heartbeats")
    stack.twin.request({"cmd": "resume"})
    seconds = time.monotonic() - stopped
    wait_twin_heard(stack)
    t_end = time.monotonic()
    writes = [r for r in stack.plc.write_log() if stopped <= r["t"] <= t_end
              and is_output_write(r, write_names(profile))]
    span = band(samples, stopped, t_end) or (float("nan"), float("nan"))
    dev = deviation(span, setpoint)
    local = None if profile.plc_remote is None else profile.plc_remote.local_value
    checks = {
        f"{len(writes)} agent writes (outputs, flag)": not writes,
        "no FAILSAFE": "failsafe" not in states_since(stack, stopped)
        and failsafe_entries(stack) == entries,
        f"the agent saw the twin lost (it reported {twin_seen})": twin_seen == "lost",
        "the PLC program kept the plant (flag local)": local is None
        or plc.get("plc_remote") == local,
        f"temperature within {BAND_C:g} degC of {setpoint:g} degC": dev <= BAND_C,
    }
    passed, detail = _verdict(
        f"twin frozen {seconds:.1f} s: {len(writes)} agent writes at the PLC, no FAILSAFE; the "
        f"PLC program held {span[0]:.2f}..{span[1]:.2f} degC (setpoint {setpoint:g}, "
        f"+-{dev:.2f})", checks)
    ctx.step(f"production ran on: {span[0]:.2f}..{span[1]:.2f} degC, {len(writes)} writes")
    figures = {"outage_s": round(seconds, 3), "agent_writes": len(writes),
               "setpoint_c": setpoint,
               "band_c": round(dev, 3), "temp_min_c": round(span[0], 3),
               "temp_max_c": round(span[1], 3)}
    return ScenarioResult("shadow-twin-outage", passed, None, detail, figures)


def active_twin_outage(ctx: DemoContext) -> ScenarioResult:
    """The twin in control freezes: authority sheds at the deadline (the flag back to the
    PLC program), the temperature holds, the twin climbs back without a bump."""
    stack, profile = ctx.stack, ctx.profile
    seconds, remote = ctx.durations.active_outage_s, profile.plc_remote
    if current_mode(stack) != "active":
        raise Unavailable("the agent is not in active mode (run promote-active first)")
    if remote is None:
        raise Unavailable("the profile has no [plc_remote] flag to release the outputs by")
    timeout_s = profile.timing.heartbeat_timeout_s
    holdoff_s = profile.authority.return_holdoff_s
    stack.wait_state("normal", timeout=WAIT_S)
    stack.wait_authority("remote", timeout=WAIT_S + holdoff_s)
    setpoint = setpoint_of(stack)
    ctx.step(f"the twin holds the tank at {setpoint:g} degC (authority REMOTE)")
    wait_settled(stack, setpoint, timeout=SETTLE_S)
    entries = failsafe_entries(stack)
    held = stack.plc.control.state().get("plc_remote")
    ctx.step(f"the twin freezes for {seconds:g} s (no heartbeats)")
    stopped = time.monotonic()
    stack.twin.request({"cmd": "stop"})
    deadline = last_heartbeat_t(stack) + timeout_s
    shed = wait_flag(ctx, remote.local_value, deadline - timeout_s, timeout_s + 5.0)
    reaction = (float(shed["t"]) - deadline) * 1000.0
    ctx.step(f"authority shed: the flag back to the PLC program {reaction:+.1f} ms after the "
             "deadline")
    samples = watch_temperature(stack, max(0.0, seconds - (time.monotonic() - stopped)))
    ctx.step("the twin resumes its heartbeats")
    stack.twin.request({"cmd": "resume"})
    resumed = time.monotonic()
    seconds = resumed - stopped
    take = wait_flag(ctx, remote.remote_value, resumed, LINK_BACK_S + holdoff_s + 5.0)
    t_take = float(take["t"])
    ctx.step(f"authority back {t_take - resumed:.1f} s after the resume: the flag remote")
    samples += watch_temperature(stack, RETURN_WATCH_S)
    log_ = stack.plc.write_log()
    steps = takeover_steps(stack, profile, t_take, RETURN_WATCH_S)
    worst = worst_step(steps)
    while_shed = [r for r in log_ if float(shed["t"]) < r["t"] < t_take
                  and is_output_write(r, output_names(profile))]
    span = band(samples, stopped, t_take) or (float("nan"), float("nan"))
    dev = deviation(span, setpoint)
    checks = {
        f"the flag was remote before the outage (raw {held})": held == remote.remote_value,
        f"shed within 0..{SHED_BUDGET_MS:g} ms": within(reaction, SHED_BUDGET_MS),
        f"temperature within {BAND_C:g} degC of {setpoint:g} degC": dev <= BAND_C,
        "zero FAILSAFE": "failsafe" not in states_since(stack, stopped)
        and failsafe_entries(stack) == entries,
        f"{len(while_shed)} output writes while shed": not while_shed,
        f"return hold-off {holdoff_s:g} s respected": t_take - resumed >= holdoff_s,
        "recommendations written again": bool(steps),
        "no step above max_rate x dt": all(step <= allowed for _n, step, allowed in steps),
    }
    figures: dict[str, Any] = {
        "outage_s": round(seconds, 3), "setpoint_c": setpoint, "band_c": round(dev, 3),
        "temp_min_c": round(span[0], 3), "temp_max_c": round(span[1], 3),
        "return_after_s": round(t_take - resumed, 3), "return_writes": len(steps),
        "max_step": None if worst is None else round(worst[1], 3),
        "max_step_output": None if worst is None else worst[0],
        "step_limit": None if worst is None else round(worst[2], 3)}
    step_text = "no write" if worst is None else (
        f"largest step {worst[1]:.2f} (allowed {worst[2]:.2f}) on {worst[0]}")
    passed, detail = _verdict(
        f"shed {reaction:+.1f} ms after the deadline (flag to the PLC program); "
        f"{span[0]:.2f}..{span[1]:.2f} degC through {seconds:.1f} s (setpoint {setpoint:g}, "
        f"+-{dev:.2f}); no FAILSAFE; authority back {t_take - resumed:.1f} s after the "
        f"resume, {step_text}", checks)
    return ScenarioResult("active-twin-outage", passed, reaction, detail, figures)


def hazard_during_outage(ctx: DemoContext) -> ScenarioResult:
    """A sensor hazard while the twin is away: FAILSAFE and the safe set (flag remote)."""
    stack, profile, plc = ctx.stack, ctx.profile, ctx.stack.plc.control
    mode = current_mode(stack)
    timeout_s = profile.timing.heartbeat_timeout_s
    holdoff_s = profile.authority.return_holdoff_s
    poll_ms = profile.timing.poll_period_s * 1000.0
    stack.wait_state("normal", timeout=WAIT_S)
    if mode == "active":
        stack.wait_authority("remote", timeout=WAIT_S + holdoff_s)
    ctx.step("the twin freezes (no heartbeats)")
    stack.twin.request({"cmd": "stop"})
    deadline = last_heartbeat_t(stack) + timeout_s
    stack.wait_authority("local", since=deadline - 0.1, timeout=WAIT_S)
    ctx.step("authority LOCAL; temp_a out of range")
    t1 = time.monotonic()
    plc.fault("out_of_range", signal="temp_a")
    stack.wait_state("degraded", timeout=WAIT_S, since=t1)
    ctx.step("DEGRADED; temp_c out of range: the temperature group is BAD")
    t2 = time.monotonic()
    plc.fault("out_of_range", signal="temp_c")
    got = wait_for(lambda: safe_set(stack.plc.write_log(), profile, t2), 5.0,
                   "the safe set at the PLC", 0.1)
    reaction = (got[1] - t2) * 1000.0
    ctx.step(f"safe set with the flag remote at the PLC {reaction:.1f} ms after the fault")
    t_fail = stack.wait_state("failsafe", timeout=WAIT_S, since=t2)
    heater = profile.output(profile.sim.heater) if profile.sim is not None else None
    applied = plc.state().get("applied") or {}
    took = heater is None or abs(float(applied.get(heater.name, -1.0)) - heater.safe_value) \
        <= heater.scale
    time.sleep(HOLD_S)
    ctx.step("clear the sensor faults; the twin resumes")
    plc.clear()
    stack.twin.request({"cmd": "resume"})
    resumed = time.monotonic()
    t_normal = stack.wait_state("normal", timeout=WAIT_S, since=t_fail)
    local = None if profile.plc_remote is None else profile.plc_remote.local_value
    back = local is None or bool(wait_for(
        lambda: flag_writes(stack.plc.write_log(), profile, t_fail, value=local), 5.0,
        "the plant handed back to the PLC program", 0.05))
    checks = {"the program took the safe heater value": took, "NORMAL again": t_normal > 0,
              "handed back to the PLC program (flag local)": back}
    budget = poll_ms + HAZARD_SLACK_MS
    checks[f"safe set within one poll ({poll_ms:g} ms) + {HAZARD_SLACK_MS:g} ms"] = within(
        reaction, budget)
    if mode == "active":
        stack.wait_authority("remote", since=resumed, timeout=WAIT_S + holdoff_s)
        ctx.step("authority REMOTE again")
    passed, detail = _verdict(
        f"{mode}: twin away, authority LOCAL; 2 of 3 temperatures bad: full safe set (flag "
        f"remote) {reaction:.1f} ms after the second fault, FAILSAFE; recovered, handed back "
        "to the PLC program" + ("; authority REMOTE again" if mode == "active" else ""),
        checks)
    return ScenarioResult("hazard-during-outage", passed, reaction, detail,
                          {"poll_ms": poll_ms, "budget_ms": budget})
