"""The campaign runner: N faults one after another on one simulated plant, judged from outside.

:func:`run_campaign` starts one :class:`sim.stack.Stack` (sim PLC, sim twin, ``twinguard
run`` in active mode with ``TWINGUARD_FAULT_INJECTION=1``) on :func:`campaign_profile_text`
(sim-tank with manual recovery, so every FAILSAFE is acknowledged with ``twinguard ack``, a
short stuck detection and the twin's authority back after a 1 s hold-off), runs the plant as
the demo does (:func:`sim.demo.plant.start_process`: the PLC program's setpoint, the twin's
model), then for each drawn fault (:func:`sim.drill.faults.draw`):

1. waits for the baseline: the agent NORMAL and the twin REMOTE (its status messages at the
   twin) and the ``[plc_remote]`` flag at ``remote_value`` in the PLC (acknowledging a
   latched FAILSAFE where the profile's recovery is manual);
2. makes the fault happen, holds it, clears it, restarts what it killed
   (:mod:`sim.drill.inject`);
3. waits for the recovery (the same baseline again, within ``RECOVER_S``) and, after an
   agent kill, for every telemetry record committed before the kill to be in the twin's
   contiguous frontier (no holes): data kept;
4. judges it over the sim PLC's write log (:func:`sim.drill.judge.judge`).

A fault whose injection fails (a control channel gone, a wait that timed out) is a
``missed`` with the reason; the campaign goes on with the next after restoring the
baseline (restarting the agent or the twin if they died). Times in the report are seconds
since the campaign's plant was up; reactions are milliseconds past each deadline.
"""

from __future__ import annotations

import datetime
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.config.profile.load import load_profile
from agent.model.profile import Profile, RecoveryPolicy
from sim.demo.plant import start_process
from sim.demo.scenarios import FAULT_INJECTION_ENV
from sim.drill import inject
from sim.drill.faults import BY_NAME, KINDS, NOT_COVERED, Kind, draw
from sim.drill.judge import Judgement, Times, judge
from sim.drill.report import CampaignReport, FaultResult, summarise
from sim.stack import Stack, sim_tank_text, wait_for

log = logging.getLogger(__name__)

RECOVER_S = 30.0  # the plant back to NORMAL with the twin REMOTE within this
DATA_S = 20.0  # telemetry committed before a kill in the twin's frontier within this
ACK_EVERY_S = 1.0  # a manual recovery: twinguard ack at most this often
STUCK_AFTER_S = 2.0  # the campaign profile's stuck detection (sim-tank: 10 s)
RETURN_HOLDOFF_S = 1.0


def campaign_profile_text() -> str:
    """sim-tank for the campaign: manual recovery, stuck after ``STUCK_AFTER_S``, the twin's
    authority back ``RETURN_HOLDOFF_S`` after it is healthy again (auto return)."""
    text = re.sub(r"(?m)^policy = .*$", 'policy = "manual"', sim_tank_text())
    text = re.sub(r"(?m)^holdoff_s = .*$", "holdoff_s = 0.5", text)
    text = re.sub(r"(?m)^stuck_after_s = .*$", f"stuck_after_s = {STUCK_AFTER_S}", text)
    text = re.sub(r"(?ms)^\[authority\][^\n]*\n.*?(?=^\[|\Z)", "", text)
    return text + f'\n[authority]\nreturn = "auto"\nreturn_holdoff_s = {RETURN_HOLDOFF_S}\n'


def _latest_status(stack: Stack, since: float) -> list[Any] | None:
    try:
        statuses = stack.twin.stats(last=1)["statuses"]
    except OSError:
        return None
    return statuses[-1] if statuses and statuses[-1][0] >= since else None


def baseline(d: inject.Drill, since: float, timeout: float = RECOVER_S) -> float | None:
    """Wait until the agent reports NORMAL with the twin REMOTE in a status sent after
    ``since`` and the PLC holds the flag at ``remote_value``; acknowledge a latched FAILSAFE
    under a manual recovery. When, or None after ``timeout``."""
    stack, profile = d.stack, d.profile
    manual = profile.recovery.policy is RecoveryPolicy.MANUAL
    remote = None if profile.plc_remote is None else profile.plc_remote.remote_value
    last_ack = 0.0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if stack.agent is None or not stack.agent.alive():
            log.warning("the agent is not running: starting it again")
            inject.restart_agent(d)
        if not stack.twin.proc.alive():
            log.warning("the twin is not running: starting it again")
            inject.restart_twin(d)
        st = _latest_status(stack, since)
        now = time.monotonic()
        if st is not None and st[2] == "recovering" and manual and now - last_ack >= ACK_EVERY_S:
            last_ack = now
            done = stack.ack()
            log.info("twinguard ack: exit %d %s", done.returncode, done.stdout.strip())
        if st is not None and st[2] == "normal" and st[5] == "remote" and (
                remote is None or stack.plc.control.state().get("plc_remote") == remote):
            return now
        time.sleep(0.05)
    return None


def data_kept(stack: Stack, newest: int, timeout: float = DATA_S) -> bool:
    """Every record up to ``newest`` in the twin's contiguous frontier, nothing waiting
    ahead of it (a hole), within ``timeout``."""
    def caught_up() -> bool:
        rep = stack.twin.request({"cmd": "telemetry"})
        return rep["frontier"] is not None and rep["frontier"] >= newest and rep["holes"] == 0

    try:
        wait_for(caught_up, timeout, f"telemetry up to seq {newest} at the twin", 0.1)
    except TimeoutError:
        return False
    return True


def _result(i: int, kind: Kind, t0: float, made: inject.Made | None, j: Judgement, *,
            recovery_s: float | None, kept: bool | None, error: str | None) -> FaultResult:
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 4)

    notes = list(j.notes) + ([f"error: {error}"] if error else [])
    return FaultResult(
        index=i, kind=kind.name, layer=kind.layer, expected=kind.expect.value, seen=j.seen,
        t=rel(made.t_fault if made else None), deadline=rel(j.deadline_t),
        reaction_ms=None if j.reaction_s is None else round(j.reaction_s * 1000.0, 2),
        budget_ms=round(j.budget_s * 1000.0, 1), verdict=j.verdict,
        recovered=recovery_s is not None,
        recovery_s=None if recovery_s is None else round(recovery_s, 3),
        data_kept=kept, params=dict(made.params) if made else {}, notes=tuple(notes))


def play(d: inject.Drill, i: int, kind: Kind, t0: float) -> FaultResult:
    """One fault: baseline, inject, recover, judge (see the module docstring)."""
    error: str | None = None
    made: inject.Made | None = None
    if baseline(d, time.monotonic() - 1.0) is None:
        error = "no baseline (NORMAL, twin REMOTE) before the fault"
    try:
        made = inject.INJECTORS[kind.name](d, kind)
    except Exception as exc:  # a channel gone, a wait timed out: this fault is missed
        log.warning("fault %d %s failed: %s", i, kind.name, exc, exc_info=True)
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    t_clear = made.t_clear if made else time.monotonic()
    back = baseline(d, t_clear)
    kept: bool | None = None
    if made is not None and made.newest_seq is not None:
        kept = data_kept(d.stack, made.newest_seq)
    t_end = back if back is not None else time.monotonic()
    times = Times(made.t_fault if made else t_clear, t_clear, t_end,
                  made.base_t if made else None)
    j = judge(kind, d.profile, d.log(), times, recovered=back is not None and error is None,
              data_kept=kept)
    recovery_s = None if back is None else back - t_clear
    res = _result(i, kind, t0, made, j, recovery_s=recovery_s, kept=kept, error=error)
    log.info("fault %d %s: %s (%s, reaction %s ms)", i, kind.name, res.verdict, res.seen,
             res.reaction_ms)
    return res


def run_campaign(faults: int, seed: int, *, kinds: Sequence[str] | None = None,
                 workdir: Path | None = None, realtime: bool | None = None,
                 progress: Callable[[FaultResult], None] | None = None) -> CampaignReport:
    """Run a campaign of ``faults`` faults drawn with ``seed`` (or exactly ``kinds``, by name,
    in that order) on a fresh plant; ``progress`` is called after each fault."""
    sequence = [BY_NAME[k] for k in kinds] if kinds is not None else draw(faults, seed)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
    text = campaign_profile_text()
    with Stack(profile_text=text, mode="active", workdir=workdir, realtime=realtime,
               agent_env={FAULT_INJECTION_ENV: "1"}) as stack:
        profile: Profile = load_profile(stack.profile_path)
        d = inject.Drill(stack, profile)
        stack.wait_state("normal", timeout=30.0)
        start_process(stack, profile, lambda _text: None)
        if baseline(d, 0.0, timeout=60.0) is None:
            raise RuntimeError(f"the plant never reached NORMAL with the twin REMOTE:\n"
                               f"{stack.agent_stderr()[-3000:]}")
        t0 = time.monotonic()
        results: list[FaultResult] = []
        for i, kind in enumerate(sequence):
            d.rng = random.Random(f"{seed}:{i}")
            res = play(d, i, kind, t0)
            results.append(res)
            if progress is not None:
                progress(res)
        marks = timeline_marks(d.log(), profile, t0)
        restarts = {"agent": d.agent_restarts, "twin": d.twin_restarts}
    return CampaignReport(
        seed=seed, faults=len(sequence), sequence=tuple(k.name for k in sequence),
        results=tuple(results), totals=summarise(results),
        wall_s=round(time.monotonic() - started, 1), restarts=restarts,
        not_covered=NOT_COVERED, catalogue=tuple((k.name, k.layer, k.expect.value, k.what)
                                                 for k in KINDS),
        marks=marks, clock_origin=t0, date=date)


def timeline_marks(log: Sequence[dict[str, Any]], profile: Profile,
                   t0: float) -> tuple[tuple[float, str], ...]:
    """What the timeline draws from the write log: each shed, safe-set write and PLC
    watchdog fallback, ``(seconds since t0, what)``."""
    from sim.demo.judge import is_safe_write, write_names  # noqa: PLC0415 - local use

    names = write_names(profile)
    local = None if profile.plc_remote is None else profile.plc_remote
    out: list[tuple[float, str]] = []
    for rec in log:
        t = float(rec["t"]) - t0
        if t < 0:
            continue
        if rec.get("source") == "plc watchdog":
            out.append((t, "fallback"))
        elif rec.get("source") == "modbus" and rec.get("accepted", True) \
                and set(rec.get("names", ())) & names:
            if local is not None and rec.get("names") == [local.output.name] \
                    and rec["values"][:1] == [local.local_value]:
                out.append((t, "shed"))
            elif is_safe_write(rec, profile) and local is not None \
                    and local.output.name in rec.get("names", ()):
                out.append((t, "safe"))
    return tuple(out)
