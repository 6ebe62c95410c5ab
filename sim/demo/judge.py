"""Pure judgement over the sim PLC's write log: records in, verdicts out, no I/O, no clock.

A write-log record (``sim/plc/writelog.py``) is a dict::

    {"seq": 12, "t": 1234.5678, "unit": 1, "fc": 16, "table": "holding", "address": 100,
     "values": [0, 1000], "names": ["heater_power", "cooling_valve"], "accepted": true,
     "error": null, "source": "modbus" | "control" | "plc watchdog"}

``t`` is CLOCK_MONOTONIC at the sim PLC when the write *arrived*; ``names`` are the profile
items the write touched; ``values`` are raw register words from ``address`` on. Only
``source == "modbus"`` writes come from a Modbus master (the agent, or its native watchdog);
``control`` is the PLC program (the operator's HMI), ``plc watchdog`` the PLC's own fallback.

What counts as the *safe state* at the PLC (:func:`is_safe_write`): every point the write
touches (an output, or the ``[plc_remote]`` flag, named ``plc_remote`` in the log) is at its
safe raw value (the flag's is ``remote_value``: the PLC program must take the agent's safe
values), or - for an output whose failsafe policy is ``ramp`` - moves toward it from what
the PLC held just before, or - for ``hold_last`` - keeps what it held.
:func:`first_safe_write` wants the *full* safe set (every output of the profile and the flag,
written by one tick: entering a safe state always writes all of them), so a recommendation
that happens to set the heater to 0 %, or the flag written alone when the twin takes
authority, is never mistaken for the safe state.

The twin-authority figures (issue 12) are judged here too: the flag's writes (the shed of a
``release`` output and the takeover), the longest gap between heartbeat-register writes
across a restart, the band a temperature series stayed in, and the largest step of each
output when the twin takes the outputs back (:func:`return_steps`) or of what the plant got
(:func:`trace_max_step`, over the sim PLC program's ``trace``).

Only 16-bit and BOOL outputs are compared value by value; a 32-bit output counts as safe (the
sim-tank profile has none). A record of another shape is a bug of the caller (KeyError).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.model.profile import DataType, FailsafePolicy, Output, Profile

FULL_SET_SPAN_S = 0.05  # the writes of one tick arrive within this
RATE_JITTER_S = 0.1  # the agent limits by its tick times, the PLC logs arrival times

Record = dict[str, Any]


def output_names(profile: Profile) -> frozenset[str]:
    """The outputs (not the flag)."""
    return frozenset(o.name for o in profile.outputs)


def write_names(profile: Profile) -> frozenset[str]:
    """Every point the agent may write: the outputs and the ``[plc_remote]`` flag."""
    return frozenset(o.name for o in profile.writes)


def is_output_write(rec: Record, outputs: Iterable[str]) -> bool:
    """A write a Modbus master sent that touched an output register."""
    return rec.get("source") == "modbus" and bool(set(rec.get("names", ())) & set(outputs))


def safe_raw(out: Output) -> int | None:
    """The raw register value of ``out``'s safe value; None for a 32-bit output."""
    if out.dtype is DataType.BOOL:
        return 1 if out.safe_value else 0
    if out.words == 1:
        return round((out.safe_value - out.offset) / out.scale) & 0xFFFF
    return None


def raw_of(rec: Record, out: Output) -> int | None:
    """The raw value ``rec`` wrote to ``out``; None if it did not touch it (or 32-bit)."""
    if out.name not in rec.get("names", ()) or (out.dtype is not DataType.BOOL
                                                and out.words != 1):
        return None
    values = list(rec.get("values", ()))
    i = out.address - int(rec["address"])
    return int(values[i]) if 0 <= i < len(values) else None


def eng_of(out: Output, raw: int) -> float:
    """Engineering value of a 16-bit raw word (signed for INT16)."""
    if out.dtype is DataType.BOOL:
        return float(raw)
    if out.dtype is DataType.INT16 and raw >= 0x8000:
        raw -= 0x10000
    return raw * out.scale + out.offset


def held_after(held: dict[str, int], rec: Record, profile: Profile) -> None:
    """Update ``held`` (raw value per output at the PLC) with an accepted record."""
    if not rec.get("accepted", True):
        return
    for out in profile.writes:
        raw = raw_of(rec, out)
        if raw is not None:
            held[out.name] = raw


def is_safe_write(rec: Record, profile: Profile, held: Mapping[str, int] | None = None) -> bool:
    """An accepted Modbus write that puts every output it touches in its safe state (see
    the module docstring); ``held`` is what the PLC held just before (raw), or None when
    unknown (then only the exact safe value counts)."""
    if rec.get("source") != "modbus" or not rec.get("accepted", True):
        return False
    touched = [o for o in profile.writes if o.name in rec.get("names", ())]
    if not touched:
        return False
    for out in touched:
        safe, raw = safe_raw(out), raw_of(rec, out)
        if safe is None:
            continue
        if raw is None:
            return False
        if raw == safe:
            continue
        before = None if held is None else held.get(out.name)
        if before is None:
            return False
        if out.failsafe is FailsafePolicy.RAMP and abs(safe - raw) < abs(safe - before):
            continue
        if out.failsafe is FailsafePolicy.HOLD_LAST and raw == before:
            continue
        return False
    return True


def safe_set(log: Sequence[Record], profile: Profile,
             since: float) -> tuple[Record, float] | None:
    """The first full safe set (every output and the flag, within ``FULL_SET_SPAN_S``)
    received at or after ``since``: the record that began it and when the last of its
    writes arrived (the set is complete at the PLC then)."""
    everything = write_names(profile)
    held: dict[str, int] = {}
    for i, rec in enumerate(log):
        if rec["t"] >= since and is_safe_write(rec, profile, held):
            covered = set(rec["names"]) & everything
            done = float(rec["t"])
            look: dict[str, int] = dict(held)
            held_after(look, rec, profile)
            for nxt in itertools.islice(log, i + 1, None):
                if covered >= everything or nxt["t"] - rec["t"] > FULL_SET_SPAN_S:
                    break
                if is_safe_write(nxt, profile, look):
                    covered |= set(nxt["names"]) & everything
                    done = max(done, float(nxt["t"]))
                held_after(look, nxt, profile)
            if covered >= everything:
                return rec, done
        held_after(held, rec, profile)
    return None


def first_safe_write(log: Sequence[Record], profile: Profile, since: float) -> Record | None:
    """The record that began the first full safe set at or after ``since`` (:func:`safe_set`)."""
    got = safe_set(log, profile, since)
    return None if got is None else got[0]


def unsafe_writes(log: Sequence[Record], profile: Profile, since: float,
                  until: float) -> list[Record]:
    """Modbus output writes in ``[since, until]`` that do not move toward the safe state
    (while the agent is in a safe state there must be none: recommendations are overridden)."""
    held: dict[str, int] = {}
    bad = []
    outs = write_names(profile)
    for rec in log:
        if (since <= rec["t"] <= until and is_output_write(rec, outs)
                and not is_safe_write(rec, profile, held)):
            bad.append(rec)
        held_after(held, rec, profile)
    return bad


def agent_output_writes(log: Sequence[Record], profile: Profile, since: float,
                        until: float = math.inf) -> list[Record]:
    """Accepted Modbus writes to outputs received in ``[since, until]``, in log order."""
    outs = output_names(profile)
    return [r for r in log if since <= r["t"] <= until and r.get("accepted", True)
            and is_output_write(r, outs)]


def judge_limits_and_rate(writes: Sequence[Record], profile: Profile) -> tuple[bool, str]:
    """Every written value within its output's ``[min, max]`` and every pair of writes of one
    output at most ``max_rate * (dt + RATE_JITTER_S)`` + one raw step apart."""
    for out in profile.outputs:
        series = [(float(r["t"]), eng_of(out, raw)) for r in writes
                  if (raw := raw_of(r, out)) is not None]
        for _t, v in series:
            if not out.minimum - 1e-9 <= v <= out.maximum + 1e-9:
                return False, f"{out.name} = {v:g} outside [{out.minimum:g}, {out.maximum:g}]"
        if out.max_rate is None:
            continue
        step = abs(out.scale)
        for (t0, v0), (t1, v1) in itertools.combinations(series, 2):
            if abs(v1 - v0) > out.max_rate * (t1 - t0 + RATE_JITTER_S) + step + 1e-6:
                return False, (f"{out.name} {v0:g} -> {v1:g} in {t1 - t0:.3f} s: faster than "
                               f"{out.max_rate:g} {out.unit}/s")
    return True, f"{len(writes)} writes within limits and rate"


def outputs_at_safe(outputs: Mapping[str, float], profile: Profile, tol: float = 1e-6) -> bool:
    """The PLC's outputs (engineering units, from its ``state``) all equal their safe values."""
    return all(o.name in outputs and abs(outputs[o.name] - o.safe_value) <= max(tol, o.scale / 2)
               for o in profile.outputs)


def ramp_time_s(profile: Profile) -> float:
    """The longest time a ``ramp`` output needs to cross its whole range to the safe value."""
    times = [(o.maximum - o.minimum) / o.max_rate for o in profile.outputs
             if o.failsafe is FailsafePolicy.RAMP and o.max_rate]
    return max(times, default=0.0)


def first_fallback(log: Sequence[Record], since: float) -> Record | None:
    """The first PLC-watchdog fallback pseudo-entry at or after ``since``."""
    return next((r for r in log if r["t"] >= since and r.get("source") == "plc watchdog"),
                None)


def native_lateness(beats: Sequence[float], t_frame: float, deadline_s: float,
                    period_s: float) -> float | None:
    """Seconds the native watchdog's frame (received at ``t_frame``) came past its deadline.

    The deadline runs from the agent's last kick, which follows the heartbeat-register
    write of a complete tick: the last of ``beats`` (heartbeat write times, ascending)
    before the frame, + ``deadline_s``. A result below ``-period_s / 2`` can only mean the
    agent hung between that write and its kick (the watchdog never fires early): then the
    deadline runs from the heartbeat before it. None without a heartbeat before the frame.
    """
    before = [t for t in beats if t < t_frame]
    if not before:
        return None
    late = t_frame - (before[-1] + deadline_s)
    if late < -period_s / 2 and len(before) >= 2:
        late = t_frame - (before[-2] + deadline_s)
    return late


def last_heartbeat_write(log: Sequence[Record], address: int, before: float) -> Record | None:
    """The agent's last write to the PLC heartbeat register received before ``before``."""
    hits = [r for r in log if r.get("source") == "modbus" and r.get("table") == "holding"
            and r.get("address") == address and r["t"] < before]
    return hits[-1] if hits else None


def judge_shadow(log: Sequence[Record], outputs: Iterable[str], heartbeat_address: int,
                 since: float, until: float) -> tuple[bool, str]:
    """Shadow mode writes nothing but the heartbeat register: zero Modbus output writes and
    at least one heartbeat write (the agent was alive) in ``[since, until]``. The operator's
    own settings (source ``control``) are not the agent's and do not count."""
    window = [r for r in log if since <= r["t"] <= until]
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


# --- twin authority (issue 12) -----------------------------------------------------------------

def flag_writes(log: Sequence[Record], profile: Profile, since: float,
                until: float = math.inf, value: int | None = None) -> list[Record]:
    """Accepted Modbus writes of the ``[plc_remote]`` flag in ``[since, until]`` (at raw
    ``value`` only, when given); empty for a profile without the flag."""
    if profile.plc_remote is None:
        return []
    flag = profile.plc_remote.output
    return [r for r in log if since <= r["t"] <= until and r.get("source") == "modbus"
            and r.get("accepted", True) and (raw := raw_of(r, flag)) is not None
            and (value is None or raw == value)]


def heartbeat_gap(log: Sequence[Record], address: int, since: float,
                  until: float) -> tuple[float, float] | None:
    """The longest gap (s) between consecutive heartbeat-register writes (Modbus, holding
    ``address``) received in ``[since, until]``, and when it began; None with fewer than two."""
    beats = [float(r["t"]) for r in log if r.get("source") == "modbus"
             and r.get("table") == "holding" and r.get("address") == address
             and since <= r["t"] <= until]
    gaps = [(b - a, a) for a, b in itertools.pairwise(beats)]
    return max(gaps) if gaps else None


def band(samples: Sequence[tuple[float, float]], since: float,
         until: float) -> tuple[float, float] | None:
    """(lowest, highest) value of ``(t, value)`` samples in ``[since, until]``; None if none."""
    values = [v for t, v in samples if since <= t <= until]
    return (min(values), max(values)) if values else None


def deviation(span: tuple[float, float], setpoint: float) -> float:
    """How far a (lowest, highest) band strays from ``setpoint`` at most."""
    return max(abs(span[0] - setpoint), abs(span[1] - setpoint))


def return_steps(log: Sequence[Record], profile: Profile, base: Mapping[str, float],
                 since: float, until: float) -> list[tuple[str, float, float]]:
    """Each output's steps when the twin takes it back: from ``base`` (engineering value the
    plant got at ``since``, e.g. the PLC program's last output) through every agent write of
    it in ``[since, until]``: ``(output, step, allowed)`` per write, ``allowed`` =
    ``max_rate * (dt + RATE_JITTER_S)`` + one raw step, ``dt`` from the previous value
    (the first write may take one poll period's worth: the agent ramps from its seed read).
    An output without ``max_rate`` may step freely (allowed = inf)."""
    period = profile.timing.poll_period_s
    steps: list[tuple[str, float, float]] = []
    for out in profile.outputs:
        if out.name not in base:
            continue
        prev_t, prev = since - period, base[out.name]
        for rec in log:
            raw = raw_of(rec, out)
            if (raw is None or not since <= rec["t"] <= until or rec.get("source") != "modbus"
                    or not rec.get("accepted", True)):
                continue
            value = eng_of(out, raw)
            dt = float(rec["t"]) - prev_t
            allowed = math.inf if out.max_rate is None else (
                out.max_rate * (dt + RATE_JITTER_S) + abs(out.scale) + 1e-6)
            steps.append((out.name, abs(value - prev), allowed))
            prev_t, prev = float(rec["t"]), value
    return steps


def trace_max_step(trace: Sequence[Mapping[str, Any]], profile: Profile, since: float,
                   until: float) -> tuple[str, float, float] | None:
    """The largest change between consecutive entries of the sim PLC program's ``trace``
    (what the plant got: ``heater``/``cooling``) in ``[since, until]``: ``(output, step,
    allowed)`` for the entry pair whose step uses the largest share of its allowance
    (``max_rate * (dt + RATE_JITTER_S)`` + one raw step); None without a bound program."""
    if profile.sim is None:
        return None
    keys = (("heater", profile.sim.heater), ("cooling", profile.sim.cooling))
    entries = [e for e in trace if since <= float(e["t"]) <= until]
    worst: tuple[str, float, float] | None = None
    for key, name in keys:
        out = profile.output(name)
        for a, b in itertools.pairwise(entries):
            step = abs(float(b[key]) - float(a[key]))
            dt = float(b["t"]) - float(a["t"])
            allowed = math.inf if out.max_rate is None else (
                out.max_rate * (dt + RATE_JITTER_S) + abs(out.scale) + 1e-6)
            if worst is None or step / allowed > worst[1] / worst[2]:
                worst = (name, step, allowed)
    return worst
