"""The configuration-push scenarios: a signed promotion to ``active``, a forged push refused.

Judged from outside the agent, like every scenario: the sim twin's ``config_results`` (what
the agent answered, ``t`` = twin CLOCK_MONOTONIC at receipt) and the agent's status messages
(``mode``), the sim PLC's write log, and the agent's audit log (``state_dir/audit.sqlite``,
read and chain-verified with :class:`agent.io.audit.AuditLog`).

==============  ===========================================================================
promote-active  reaction = first recommendation write at the PLC - push sent by the twin.
                Passed iff ``accepted`` then ``confirmed``, status mode ``active``, audit
                ``bundle_accepted`` (that version) and ``mode_change`` shadow -> active with
                the chain intact, recommendation writes reach the PLC, all within the
                outputs' limits and rates, and the agent stayed NORMAL.
forged-config   reaction = rejection received at the twin - push sent (the first forgery).
                Passed iff a bundle signed by a key outside the trust store is refused
                ``unknown_key`` and a trusted bundle whose configuration was edited after
                signing ``bad_signature``, both audited ``bundle_rejected`` with that
                reason (chain intact), the mode and the NORMAL state unchanged, no safe-state
                write, and whatever the agent wrote stays within limits and rates.
==============  ===========================================================================
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.io.audit import AuditLog, AuditRecord
from agent.model.profile import Profile
from sim.demo.context import WAIT_S, DemoContext, ScenarioResult, Unavailable
from sim.demo.judge import (
    agent_output_writes,
    eng_of,
    first_safe_write,
    held_after,
    is_output_write,
    judge_limits_and_rate,
    output_names,
    raw_of,
)
from sim.demo.plant import SETPOINT_C
from sim.demo.signing import APPROVERS, ATTACKER, SAFETY, Signer, tampered
from sim.stack import Stack, wait_for

log = logging.getLogger(__name__)

RESULT_WAIT_S = 10.0
FIRST_WRITE_WAIT_S = 5.0
SETTLE_LOW_C = SETPOINT_C - 8.0  # the P controller settles a few degC below its setpoint
SETTLE_MAX_S = 30.0
SETTLE_HOLD_S = 5.0
UNCHANGED_WATCH_S = 1.0
FINAL = ("confirmed", "reverted")
EVIL = "\n[overrides.trips.overtemperature]\nlimit = 250.0\n"  # what the forger wants


# --- pure helpers --------------------------------------------------------------------------

def with_mode(config_text: str, mode: str) -> str:
    """``config_text`` with its top-level ``mode`` set to ``mode``; ValueError without one."""
    new, n = re.subn(r'(?m)^mode = "[a-z]+"$', f'mode = "{mode}"', config_text, count=1)
    if n != 1:
        raise ValueError("the configuration has no top-level mode line")
    return new


def next_version(records: Sequence[AuditRecord]) -> int:
    """One above every version the agent accepted (its audit log says which)."""
    return 1 + max((int(r.fields.get("version", 0)) for r in records
                    if r.kind == "bundle_accepted"), default=0)


def result_for(results: Sequence[dict[str, Any]], since: float, version: int,
               reasons: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The first ``config_result`` for ``version`` received at or after ``since`` (with a
    reason in ``reasons``; any first answer but confirmed/reverted when None)."""
    for r in results:
        if r["t"] < since or r["version"] != version:
            continue
        if (r["reason"] in reasons) if reasons is not None else (r["reason"] not in FINAL):
            return r
    return None


def judge_audit(records: Sequence[AuditRecord], verified: bool, *, kind: str,
                **fields: Any) -> bool:
    """The chain verified and some record of ``kind`` carries every one of ``fields``."""
    return verified and any(r.kind == kind and all(r.fields.get(k) == v for k, v in fields.items())
                            for r in records)


def takeover_bump(log_: Sequence[dict[str, Any]], profile: Profile, since: float) -> str:
    """What the agent's first write of each output after ``since`` did to the value the PLC
    held (e.g. set by the operator): ``"heater_power 45->1"``, empty when nothing jumped by
    more than the output's rate allows in a quarter of a second (or one raw step)."""
    held: dict[str, int] = {}
    first: dict[str, tuple[int, int]] = {}
    for rec in log_:
        if rec["t"] >= since and is_output_write(rec, output_names(profile)):
            for out in profile.outputs:
                raw = raw_of(rec, out)
                if raw is not None and out.name not in first and out.name in held:
                    first[out.name] = (held[out.name], raw)
        held_after(held, rec, profile)
    parts = []
    for out in profile.outputs:
        step = 1.0 if out.max_rate is None else max(1.0, out.max_rate * 0.25 / abs(out.scale))
        if out.name in first and abs(first[out.name][0] - first[out.name][1]) > step:
            a, b = (eng_of(out, v) for v in first[out.name])
            parts.append(f"{out.name} {a:g}->{b:g} {out.unit}")
    return ", ".join(parts)


# --- helpers over the live stack -----------------------------------------------------------

def audit_records(state_dir: Path) -> tuple[list[AuditRecord], bool]:
    """The agent's audit records and whether the chain verifies (read beside the agent)."""
    with AuditLog(state_dir / "audit.sqlite") as audit:
        result = audit.verify()
        if not result.ok:
            log.warning("audit log does not verify: %s", "; ".join(result.problems))
        return list(audit.records()), result.ok


def current_mode(stack: Stack) -> str:
    statuses = stack.twin.stats(last=1)["statuses"]
    return str(statuses[-1][3]) if statuses else "shadow"


def statuses_since(stack: Stack, since: float) -> list[tuple[str, str]]:
    return [(str(s[2]), str(s[3])) for s in stack.twin.stats(last=200)["statuses"]
            if s[0] >= since]


def push(stack: Stack, bundle: Path) -> float:
    """The twin pushes ``bundle`` to the agent now; when it was sent (twin clock)."""
    reply = stack.twin.request({"cmd": "push", "path": str(bundle)})
    if not reply.get("ok") or int(reply.get("connections", 0)) < 1:
        raise RuntimeError(f"the twin could not push the bundle: {reply}")
    return float(reply["t"])


def wait_result(stack: Stack, since: float, version: int,
                reasons: Sequence[str] | None = None,
                timeout: float = RESULT_WAIT_S) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        return result_for(stack.twin.stats(last=50)["config_results"], since, version, reasons)

    got: dict[str, Any] = wait_for(seen, timeout, f"config_result for version {version}", 0.02)
    return got


def wait_mode(stack: Stack, mode: str, since: float) -> float:
    def seen() -> float | None:
        return next((float(s[0]) for s in stack.twin.stats(last=20)["statuses"]
                     if s[0] >= since and s[3] == mode), None)

    got: float = wait_for(seen, WAIT_S, f"agent reports mode {mode}", 0.05)
    return got


def _signer(ctx: DemoContext) -> Signer:
    if ctx.signer is None:
        raise Unavailable("no signing keys: the agent's trust store is empty")
    return ctx.signer


# --- the scenarios ---------------------------------------------------------------------------

def promote_active(ctx: DemoContext) -> ScenarioResult:
    """Two approvers sign mode = active; the twin pushes it; recommendations reach the PLC."""
    signer, stack = _signer(ctx), ctx.stack
    stack.wait_state("normal", timeout=WAIT_S)
    before, _ok = audit_records(stack.state_dir)
    version = next_version(before)
    text = with_mode(stack.config_path.read_text(encoding="utf-8"), "active")
    ctx.step(f"{APPROVERS[0]} signs mode = active (v{version}), {APPROVERS[1]} co-signs")
    bundle = signer.sign(text, version, APPROVERS, f"v{version}-promote-active")
    ctx.step("the twin pushes the signed bundle")
    t_push = push(stack, bundle)
    result = wait_result(stack, t_push, version)
    if not result["accepted"]:
        return ScenarioResult("promote-active", False, None,
                              f"refused {result['reason']}: {result.get('detail')}")
    wait_mode(stack, "active", t_push)
    first = wait_for(lambda: agent_output_writes(stack.plc.write_log(), ctx.profile, t_push),
                     FIRST_WRITE_WAIT_S, "a recommendation written at the PLC", 0.02)[0]
    reaction = (first["t"] - t_push) * 1000.0
    ctx.step(f"accepted, mode ACTIVE: first recommendation at the PLC {reaction:.0f} ms "
             "after the push")
    final = wait_result(stack, t_push, version, FINAL)
    ctx.step(f"config v{version} {final['reason']}; the twin's model heats the tank")
    try:
        wait_for(lambda: (stack.plc.control.state().get("temperature") or 0.0) >= SETTLE_LOW_C,
                 SETTLE_MAX_S, f"tank above {SETTLE_LOW_C:g} degC", 0.2)
        ctx.step(f"tank above {SETTLE_LOW_C:g} degC: watch it settle for {SETTLE_HOLD_S:g} s")
        time.sleep(SETTLE_HOLD_S)
    except TimeoutError:
        log.warning("the tank did not reach %g degC in %g s", SETTLE_LOW_C, SETTLE_MAX_S)
    t_end = time.monotonic()
    temp = float(stack.plc.control.state().get("temperature") or 0.0)
    writes = agent_output_writes(stack.plc.write_log(), ctx.profile, t_push, t_end)
    rate_ok, rate_detail = judge_limits_and_rate(writes, ctx.profile)
    after, verified = audit_records(stack.state_dir)
    new = after[len(before):]
    audited = (judge_audit(new, verified, kind="bundle_accepted", version=version)
               and judge_audit(new, verified, kind="mode_change", old="shadow", new="active"))
    states = {s for s, _m in statuses_since(stack, t_push)}
    bump = takeover_bump(stack.plc.write_log(), ctx.profile, t_push)
    checks = {
        f"no takeover bump ({bump or 'none'})": not bump,
        "confirmed": final["reason"] == "confirmed",
        "audit bundle_accepted + mode_change, chain verified": audited,
        rate_detail: rate_ok,
        "agent stayed NORMAL": states <= {"normal"},
    }
    failed = [k for k, ok in checks.items() if not ok]
    detail = (f"v{version} signed by {' + '.join(APPROVERS)}: accepted, {final['reason']}; "
              f"mode active; {rate_detail}; no jump at takeover; tank {temp:.1f} degC; "
              "reaction = push -> first recommendation write at the PLC")
    if failed:
        detail += "; FAILED: " + ", ".join(failed)
    return ScenarioResult("promote-active", not failed, reaction, detail)


def forged_config(ctx: DemoContext) -> ScenarioResult:
    """A forger's key and a tampered bundle: both refused with the precise reason."""
    signer, stack, profile = _signer(ctx), ctx.stack, ctx.profile
    stack.wait_state("normal", timeout=WAIT_S)
    mode = current_mode(stack)
    before, _ok = audit_records(stack.state_dir)
    version = next_version(before)
    in_force = with_mode(stack.config_path.read_text(encoding="utf-8"), mode)
    ctx.step(f"{ATTACKER} (not trusted) signs a trip limit of 250 degC (v{version})")
    forged = signer.sign(in_force + EVIL, version, (ATTACKER,), f"v{version}-forged")
    t_first = push(stack, forged)
    unknown = wait_result(stack, t_first, version)
    reaction = (unknown["t"] - t_first) * 1000.0
    ctx.step(f"refused {unknown['reason']} {reaction:.0f} ms after the push")
    ctx.step(f"{SAFETY} signs a harmless v{version}; it is edited in transit (trip 250 degC)")
    honest = signer.sign(in_force, version, (SAFETY,), f"v{version}-honest")
    edited = tampered(honest, in_force + EVIL, honest.with_name(f"v{version}-tampered.bundle"))
    t_second = push(stack, edited)
    bad_sig = wait_result(stack, t_second, version)
    ctx.step(f"refused {bad_sig['reason']}; watch the plant {UNCHANGED_WATCH_S:g} s")
    time.sleep(UNCHANGED_WATCH_S)
    t_end = time.monotonic()
    after, verified = audit_records(stack.state_dir)
    new = after[len(before):]
    log_ = stack.plc.write_log()
    seen = statuses_since(stack, t_first)
    rate_ok, rate_detail = judge_limits_and_rate(
        agent_output_writes(log_, profile, t_first, t_end), profile)
    checks = {
        f"unknown_key (got {unknown['reason']})": unknown["reason"] == "unknown_key"
        and not unknown["accepted"],
        f"bad_signature (got {bad_sig['reason']})": bad_sig["reason"] == "bad_signature"
        and not bad_sig["accepted"],
        "audit bundle_rejected x2, chain verified":
            judge_audit(new, verified, kind="bundle_rejected", reason="unknown_key")
            and judge_audit(new, verified, kind="bundle_rejected", reason="bad_signature"),
        f"mode stayed {mode}, state NORMAL": bool(seen) and set(seen) == {("normal", mode)},
        "no safe-state write": first_safe_write(log_, profile, t_first) is None,
        rate_detail: rate_ok,
    }
    failed = [k for k, ok in checks.items() if not ok]
    detail = (f"forged key: {unknown['reason']}; edited after signing: {bad_sig['reason']}; "
              f"both audited; mode {mode} and outputs unchanged; reaction = push -> "
              "rejection at the twin")
    if failed:
        detail += "; FAILED: " + ", ".join(failed)
    return ScenarioResult("forged-config", not failed, reaction, detail)
