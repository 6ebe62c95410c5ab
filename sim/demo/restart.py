"""``agent-restart``: a pushed change that needs a restart, applied while the plant runs.

An operator signs a telemetry change (``[telemetry]`` needs a restart and the operator
role); the twin pushes it; the agent hands over to a new process of itself
(``agent.runtime.handover``): the successor is ready before the predecessor lets go. Judged
at the sim PLC, from the push until the new process holds authority again (active mode) or
reports NORMAL (shadow):

* no safe-set write (:func:`sim.demo.judge.safe_set`), and no output register written
  between the two processes: from the predecessor's shed (with ``release``: its flag write
  at ``local_value``; the predecessor keeps the twin's outputs until then) to the
  successor's takeover (its flag write at ``remote_value``);
* the PLC's communication watchdog never fell back: no ``plc watchdog`` entry in the write
  log and its ``trips`` count unchanged;
* the outputs the plant got were continuous: the largest change between two program
  ``trace`` entries is within ``max_rate`` times their interval
  (:func:`sim.demo.judge.trace_max_step`);
* the new version is confirmed, and a new process (another pid) answers.

No reaction time. Figures: ``heartbeat_gap_ms`` (the longest gap between heartbeat-register
writes at the PLC across the restart), ``plc_timeout_ms`` (the PLC watchdog's timeout it must
stay under), ``plc_watchdog_trips`` (during the restart), ``max_step``/``max_step_output``/
``step_limit`` (the trace's largest change and what it was allowed), ``version``.
"""

from __future__ import annotations

import logging
import time

from sim.demo.context import WAIT_S, DemoContext, ScenarioResult, Unavailable, agent_pid
from sim.demo.judge import (
    first_fallback,
    flag_writes,
    heartbeat_gap,
    is_output_write,
    output_names,
    safe_set,
    trace_max_step,
)
from sim.demo.pushes import (
    FINAL,
    audit_records,
    current_mode,
    next_version,
    push,
    signer_of,
    wait_result,
    with_mode,
)
from sim.demo.signing import OPERATOR
from sim.stack import pid_running, wait_for

log = logging.getLogger(__name__)

TELEMETRY_CHANGE = "\n[telemetry]\nwindow = 10\n"  # needs a restart; the operator's to sign
HANDOVER_WAIT_S = 60.0
BACK_WAIT_S = 40.0


def agent_restart(ctx: DemoContext) -> ScenarioResult:
    """Push a change that needs a restart; the hand-over leaves the plant undisturbed."""
    signer, stack, profile = signer_of(ctx), ctx.stack, ctx.profile
    stack.wait_state("normal", timeout=WAIT_S)
    mode = current_mode(stack)
    holdoff_s = profile.authority.return_holdoff_s
    if mode == "active":
        stack.wait_authority("remote", timeout=WAIT_S + holdoff_s)
    base = ctx.in_force or with_mode(stack.config_path.read_text(encoding="utf-8"), mode)
    if "[telemetry]" in base:
        raise Unavailable("the configuration in force already has a [telemetry] table")
    before, _ok = audit_records(stack.state_dir)
    version = next_version(before)
    text = base + TELEMETRY_CHANGE
    ctx.step(f"{OPERATOR} signs a telemetry change (v{version}): it needs a restart")
    bundle = signer.sign(text, version, (OPERATOR,), f"v{version}-telemetry")
    old = agent_pid(stack)
    if old is None:
        raise RuntimeError("no agent is running")
    trips = int(stack.plc.control.state()["watchdog"]["trips"])
    old_conn = stack.status_conn()  # the predecessor's statuses after the push come on it
    ctx.step(f"the twin pushes it; the agent (pid {old}) hands over to a new process")
    t_push = push(stack, bundle)
    first = wait_result(stack, t_push, version)
    if not first["accepted"]:
        return ScenarioResult("agent-restart", False, None,
                              f"refused {first['reason']}: {first.get('detail')}")
    wait_for(lambda: not pid_running(old), HANDOVER_WAIT_S, "the old agent lets go", 0.05)
    t_gone = time.monotonic()
    new = stack.successor_pid(timeout=HANDOVER_WAIT_S)
    # the successor's own report (the predecessor reports REMOTE/NORMAL until it lets go:
    # seen in CI on a loaded machine, the window then held no heartbeat at all)
    if mode == "active":
        t_back = stack.wait_authority("remote", since=t_push, timeout=BACK_WAIT_S,
                                      not_conn=old_conn)
    else:
        t_back = stack.wait_state("normal", since=t_push, timeout=BACK_WAIT_S,
                                  not_conn=old_conn)
    ctx.step(f"pid {new} runs" + (", authority REMOTE again" if mode == "active" else ""))
    final = wait_result(stack, t_push, version, FINAL, timeout=BACK_WAIT_S)
    ctx.in_force = text
    log_ = stack.plc.write_log()
    state = stack.plc.control.state()
    gap = heartbeat_gap(log_, profile.plc_watchdog.heartbeat_address, t_push, t_back)
    gap_ms = None if gap is None else gap[0] * 1000.0
    timeout_ms = profile.plc_watchdog.expected_timeout_ms
    quiet_from, quiet_to = t_gone, t_back
    remote = profile.plc_remote
    if remote is not None:  # release: the predecessor's shed, then the successor's takeover
        shed = flag_writes(log_, profile, t_push, value=remote.local_value)
        if shed:
            quiet_from = float(shed[0]["t"])
            take = flag_writes(log_, profile, quiet_from, value=remote.remote_value)
            quiet_to = float(take[0]["t"]) if take else t_back
    outputs = [r for r in log_ if quiet_from < r["t"] < quiet_to
               and is_output_write(r, output_names(profile))]
    worst = trace_max_step(stack.plc.control.trace(since_t=t_push), profile, t_push, t_back)
    tripped = int(state["watchdog"]["trips"]) - trips
    checks = {
        "no safe-set write": safe_set(log_, profile, t_push) is None,
        f"{len(outputs)} output register writes between the two processes": not outputs,
        "no PLC watchdog fallback": first_fallback(log_, t_push) is None and tripped == 0,
        f"heartbeat gap under the PLC's {timeout_ms} ms": gap_ms is not None
        and gap_ms < timeout_ms,
        "outputs continuous": worst is None or worst[1] <= worst[2],
        f"a new process ({new} != {old})": new != old,
        f"v{version} {final['reason']}": final["reason"] == "confirmed",
    }
    failed = [k for k, ok in checks.items() if not ok]
    gap_text = "no heartbeat" if gap_ms is None else f"{gap_ms:.0f} ms"
    detail = (f"v{version} by {OPERATOR}: hand-over pid {old} -> {new}; longest heartbeat gap "
              f"at the PLC {gap_text} (its watchdog {timeout_ms} ms), no fallback, no safe "
              f"set, no output write; {final['reason']}")
    if failed:
        detail += "; FAILED: " + ", ".join(failed)
    figures = {
        "heartbeat_gap_ms": None if gap_ms is None else round(gap_ms, 3),
        "plc_timeout_ms": timeout_ms, "plc_watchdog_trips": tripped, "version": version,
        "max_step": None if worst is None else round(worst[1], 3),
        "max_step_output": None if worst is None else worst[0],
        "step_limit": None if worst is None else round(worst[2], 3)}
    return ScenarioResult("agent-restart", not failed, None, detail, figures)
