"""The campaign's verdicts, from outside: the sim PLC's write log in, one verdict out.

Pure (no I/O, no clock): records as :mod:`sim.demo.judge` reads them (``sim/plc/writelog.py``
dicts), the times the campaign noted (CLOCK_MONOTONIC), and what it saw of the recovery. The
safe set, the flag's writes, the PLC watchdog's fallback and the native watchdog's lateness
are :mod:`sim.demo.judge`'s; this module only decides which of them a fault must show, by
when, and what must not happen (:mod:`sim.drill.faults` says which per kind):

==========  =========================================================================
ok          the expected action, within ``0 - EARLY_S .. budget`` of its deadline, no
            false action, recovered, and (after an agent kill) no telemetry lost
missed      the expected action never came in the window, or the plant did not recover
            (NORMAL, authority back), or committed telemetry was lost
late        the expected action came past its deadline + budget
false       an action with no hazard behind it: a safe set where only a shed (or
            nothing) was due, a shed where nothing was due, a PLC watchdog fallback
            where the agent was not stopped, or a reaction before its deadline
==========  =========================================================================

"false" wins over "late" and "missed": a trip with no hazard is the worst answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.model.profile import Profile
from sim.demo.judge import (
    first_fallback,
    flag_writes,
    last_heartbeat_write,
    native_lateness,
    safe_set,
)
from sim.drill.faults import EARLY_S, Base, Expect, Kind, deadline

Record = dict[str, Any]
VERDICTS = ("ok", "missed", "late", "false")


@dataclass(frozen=True)
class Times:
    """What the campaign noted for one fault. ``base_t``: the deadline's base when the
    campaign knows it (the twin's last heartbeat for SILENCE, its first unhealthy one for
    UNHEALTHY); FAULT and CLEAR use ``t_fault`` / ``t_clear``, HEARTBEAT is found in the
    log. ``t_end``: the end of the window judged (the plant recovered or given up)."""

    t_fault: float
    t_clear: float
    t_end: float
    base_t: float | None = None


@dataclass(frozen=True)
class Judgement:
    verdict: str
    seen: str  # what the PLC saw: shed, failsafe, native, plc-fallback, nothing (+ more)
    deadline_t: float | None  # when the expected action was due (CLOCK_MONOTONIC)
    reaction_s: float | None  # the expected action past its deadline (negative: before)
    budget_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def _seen(log: Sequence[Record], profile: Profile, since: float, until: float,
          local: int | None) -> dict[str, float]:
    """The first time each action arrived at the PLC in ``[since, until]``."""
    seen: dict[str, float] = {}
    got = safe_set(log, profile, since)
    if got is not None and got[1] <= until:
        seen["failsafe"] = got[1]
    if local is not None:
        sheds = flag_writes(log, profile, since, until, value=local)
        if sheds:
            seen["shed"] = float(sheds[0]["t"])
    fb = first_fallback(log, since)
    if fb is not None and float(fb["t"]) <= until:
        seen["plc-fallback"] = float(fb["t"])
    return seen


def _beats(log: Sequence[Record], address: int) -> list[float]:
    return [float(r["t"]) for r in log
            if r.get("source") == "modbus" and r.get("table") == "holding"
            and r.get("address") == address]


def judge(kind: Kind, profile: Profile, log: Sequence[Record], times: Times, *,
          recovered: bool, data_kept: bool | None = None) -> Judgement:
    """The verdict on one fault of ``kind`` (see the module docstring)."""
    dl = deadline(kind, profile)
    local = None if profile.plc_remote is None else profile.plc_remote.local_value
    seen = _seen(log, profile, times.t_fault, times.t_end, local)
    notes: list[str] = []
    false: list[str] = []
    expect = kind.expect
    if expect in (Expect.SHED, Expect.NOTHING) and "failsafe" in seen:
        false.append("a safe set with no hazard")
    if expect is Expect.NOTHING and "shed" in seen:
        false.append("authority shed with no twin loss or hazard")
    if expect in (Expect.SHED, Expect.NOTHING, Expect.FAILSAFE) and "plc-fallback" in seen:
        false.append("the PLC watchdog fell back while the agent ran")

    due: float | None = None
    reaction: float | None = None
    hit = {Expect.SHED: "shed", Expect.FAILSAFE: "failsafe", Expect.NATIVE: "failsafe",
           Expect.FALLBACK: "plc-fallback"}.get(expect)
    missed = hit is not None and hit not in seen
    if hit is not None and not missed:
        t_hit = seen[hit]
        wd = profile.plc_watchdog
        if expect is Expect.NATIVE:
            late = native_lateness(_beats(log, wd.heartbeat_address), t_hit,
                                   profile.timing.watchdog_deadline_s,
                                   profile.timing.poll_period_s)
            reaction = late
            due = None if late is None else t_hit - late
        elif kind.base is Base.HEARTBEAT:
            last = last_heartbeat_write(log, wd.heartbeat_address, before=t_hit)
            if last is not None:
                due = float(last["t"]) + dl.delay_s
        else:
            base = {Base.FAULT: times.t_fault, Base.CLEAR: times.t_clear}.get(
                kind.base, times.base_t)
            if base is not None:
                due = base + dl.delay_s
        if due is None:
            missed = True
            notes.append("no deadline base found (no heartbeat before the reaction)")
        else:
            reaction = t_hit - due
    if missed:
        notes.append(f"no {hit} at the PLC")
    if reaction is not None and reaction < -EARLY_S:
        false.append(f"{hit} {-reaction * 1000:.1f} ms before its deadline")
    if not recovered:
        notes.append("not recovered (NORMAL and authority back)")
    if data_kept is False:
        notes.append("committed telemetry lost")
    if false:
        verdict = "false"
    elif missed or not recovered or data_kept is False:
        verdict = "missed"
    elif reaction is not None and reaction > dl.budget_s:
        verdict = "late"
    else:
        verdict = "ok"
    seen_text = ", ".join(sorted(seen, key=seen.__getitem__)) or "nothing"
    return Judgement(verdict, seen_text, due, reaction, dl.budget_s, tuple(false + notes))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
