"""The configuration-push scenarios: a signed promotion to ``active``, a forged push refused.

Judged from outside the agent, like every scenario: the sim twin's ``config_results`` (what
the agent answered, ``t`` = twin CLOCK_MONOTONIC at receipt) and the agent's status messages
(``mode``), the sim PLC's write log, and the agent's audit log (``state_dir/audit.sqlite``,
read and chain-verified with :class:`agent.io.audit.AuditLog`).

==============  ===========================================================================
promote-active  reaction = first recommendation write at the PLC - push sent by the twin
                (the return hold-off included: the twin earns authority first).
                Passed iff ``accepted`` then ``confirmed``, status mode ``active``, audit
                ``bundle_accepted`` (that version) and ``mode_change`` shadow -> active with
                the chain intact, the twin took authority no sooner than
                ``return_holdoff_s`` after the push with the ``[plc_remote]`` flag written
                before any output, every output step from what the PLC program had applied
                within ``max_rate`` times its interval (no bump), all writes within the
                outputs' limits and rates, and the agent stayed NORMAL. Figures:
                ``return_after_s``, ``max_step``/``max_step_output``/``step_limit`` (the
                largest takeover step), ``temp_min_c``/``temp_max_c`` (the twin holding).
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
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.io.audit import AuditLog, AuditRecord
from sim.demo.context import WAIT_S, DemoContext, ScenarioResult, Unavailable
from sim.demo.judge import (
    agent_output_writes,
    band,
    first_safe_write,
    flag_writes,
    judge_limits_and_rate,
)
from sim.demo.plant import takeover_steps, watch_temperature, worst_step
from sim.demo.signing import APPROVERS, ATTACKER, SAFETY, Signer, tampered
from sim.stack import Stack, wait_for

log = logging.getLogger(__name__)

RESULT_WAIT_S = 10.0
FIRST_WRITE_WAIT_S = 5.0  # after the return hold-off
SETTLE_HOLD_S = 4.0
TAKEOVER_WATCH_S = 2.0
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


def signer_of(ctx: DemoContext) -> Signer:
    if ctx.signer is None:
        raise Unavailable("no signing keys: the agent's trust store is empty")
    return ctx.signer


# --- the scenarios ---------------------------------------------------------------------------

def promote_active(ctx: DemoContext) -> ScenarioResult:
    """Two approvers sign mode = active; the twin pushes it; after the return hold-off the
    twin takes the outputs (the flag first), without a bump, and holds the tank."""
    signer, stack, profile = signer_of(ctx), ctx.stack, ctx.profile
    holdoff_s = profile.authority.return_holdoff_s
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
    ctx.in_force = text
    ctx.step(f"mode ACTIVE: the twin earns authority over the {holdoff_s:g} s return hold-off")
    first = wait_for(lambda: agent_output_writes(stack.plc.write_log(), profile, t_push),
                     FIRST_WRITE_WAIT_S + holdoff_s, "a recommendation written at the PLC",
                     0.02)[0]
    reaction = (first["t"] - t_push) * 1000.0
    remote = profile.plc_remote
    flag = [] if remote is None else flag_writes(stack.plc.write_log(), profile, t_push,
                                                 first["t"], value=remote.remote_value)
    t_take = float(flag[0]["t"]) if flag else float(first["t"])
    ctx.step(f"authority REMOTE: the flag, then the first recommendation at the PLC "
             f"{reaction:.0f} ms after the push")
    final = wait_result(stack, t_push, version, FINAL)
    ctx.step(f"config v{version} {final['reason']}; watch the twin hold the tank "
             f"{SETTLE_HOLD_S:g} s")
    samples = watch_temperature(stack, SETTLE_HOLD_S)
    t_end = time.monotonic()
    steps = takeover_steps(stack, profile, t_take, TAKEOVER_WATCH_S)
    worst = worst_step(steps)
    writes = agent_output_writes(stack.plc.write_log(), profile, t_push, t_end)
    rate_ok, rate_detail = judge_limits_and_rate(writes, profile)
    after, verified = audit_records(stack.state_dir)
    new = after[len(before):]
    audited = (judge_audit(new, verified, kind="bundle_accepted", version=version)
               and judge_audit(new, verified, kind="mode_change", old="shadow", new="active"))
    states = {s for s, _m in statuses_since(stack, t_push)}
    span = band(samples, t_end - SETTLE_HOLD_S - 1.0, t_end) or (math.nan, math.nan)
    checks = {
        f"authority after the {holdoff_s:g} s hold-off": t_take - t_push >= holdoff_s,
        "the flag remote before the first output write": remote is None or bool(flag),
        "no takeover bump (every step within max_rate x dt)":
            bool(steps) and all(step <= allowed for _n, step, allowed in steps),
        "confirmed": final["reason"] == "confirmed",
        "audit bundle_accepted + mode_change, chain verified": audited,
        rate_detail: rate_ok,
        "agent stayed NORMAL": states <= {"normal"},
    }
    failed = [k for k, ok in checks.items() if not ok]
    step_text = "" if worst is None else (f"; largest takeover step {worst[1]:.2f} "
                                          f"(allowed {worst[2]:.2f}) on {worst[0]}")
    detail = (f"v{version} signed by {' + '.join(APPROVERS)}: accepted, {final['reason']}; "
              f"authority REMOTE {t_take - t_push:.1f} s after the push{step_text}; "
              f"{rate_detail}; the twin holds {span[0]:.2f}..{span[1]:.2f} degC; "
              "reaction = push -> first recommendation write at the PLC")
    if failed:
        detail += "; FAILED: " + ", ".join(failed)
    figures = {"return_after_s": round(t_take - t_push, 3),
               "max_step": None if worst is None else round(worst[1], 3),
               "max_step_output": None if worst is None else worst[0],
               "step_limit": None if worst is None else round(worst[2], 3),
               "temp_min_c": round(span[0], 3), "temp_max_c": round(span[1], 3)}
    return ScenarioResult("promote-active", not failed, reaction, detail, figures)


def forged_config(ctx: DemoContext) -> ScenarioResult:
    """A forger's key and a tampered bundle: both refused with the precise reason."""
    signer, stack, profile = signer_of(ctx), ctx.stack, ctx.profile
    stack.wait_state("normal", timeout=WAIT_S)
    mode = current_mode(stack)
    before, _ok = audit_records(stack.state_dir)
    version = next_version(before)
    in_force = ctx.in_force or with_mode(stack.config_path.read_text(encoding="utf-8"), mode)
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
