"""Making each fault of the catalogue happen on a live :class:`sim.stack.Stack`, and undoing it.

One function per :class:`sim.drill.faults.Kind` (``INJECTORS``): it makes the fault (through
the sim PLC's and the sim twin's control channels, or a signal to a process), holds it long
enough for its deadline and budget to pass (or until the PLC has seen the expected action),
clears it and restarts whatever it killed; it returns the times the judge needs
(:class:`Made`). Nothing here judges. The ways of making each fault are the end-to-end
tests' and the demo's (``tests/e2e``, ``sim/demo/scenarios.py``): the twin's ``stop`` /
``half_open`` / ``garbage`` / ``bye`` / ``healthy`` / ``vanish`` / ``delay``, the PLC's
``fault`` kinds, SIGUSR2 with ``TWINGUARD_FAULT_INJECTION=1``, SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.model.profile import Profile
from sim.demo.judge import first_fallback, flag_writes, safe_set
from sim.demo.plant import start_process
from sim.drill.faults import BY_NAME, Expect, Kind, deadline
from sim.stack import SimTwinProcess, Stack, spool_seqs, wait_for
from sim.twin.server import GARBAGE

log = logging.getLogger(__name__)

MARGIN_S = 0.3  # a fault is held this long past its deadline + budget before it is judged
SEEN_HOLD_S = 0.2  # ... or this long after the expected action was seen at the PLC
STEADY_MAX_S = 120.0  # the plant holds still within this before a stuck-sensor fault
TEMPERATURE = ("temp_a", "temp_b", "temp_c")
PRESSURE = ("pressure_a", "pressure_b")


@dataclass
class Drill:
    """The live plant a campaign works on; ``rng`` is the current fault's own generator."""

    stack: Stack
    profile: Profile
    rng: random.Random = field(default_factory=random.Random)
    agent_restarts: int = 0
    twin_restarts: int = 0

    def log(self) -> list[dict[str, Any]]:
        return self.stack.plc.write_log()


@dataclass(frozen=True)
class Made:
    """What one injection did: when (CLOCK_MONOTONIC), the deadline's base where the
    injector knows it, the fault's parameters, and the telemetry seq newest before an
    agent kill (None: no kill)."""

    t_fault: float
    t_clear: float
    base_t: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    newest_seq: int | None = None


# --- waiting ---------------------------------------------------------------------------------

def _seen(d: Drill, kind: Kind, since: float) -> bool:
    """The PLC shows the action ``kind`` expects (never true for NOTHING)."""
    log_, profile = d.log(), d.profile
    if kind.expect is Expect.SHED and profile.plc_remote is not None:
        return bool(flag_writes(log_, profile, since, value=profile.plc_remote.local_value))
    if kind.expect in (Expect.FAILSAFE, Expect.NATIVE):
        return safe_set(log_, profile, since) is not None
    if kind.expect is Expect.FALLBACK:
        return first_fallback(log_, since) is not None
    return False


def hold(d: Drill, kind: Kind, t_fault: float, *, base_t: float | None = None,
         at_least_s: float = 0.0) -> None:
    """Keep the fault on until the PLC has shown the expected action (+ ``SEEN_HOLD_S``) or
    its deadline + budget + ``MARGIN_S`` has passed, and for ``at_least_s`` in any case."""
    dl = deadline(kind, d.profile)
    end = (base_t if base_t is not None else t_fault) + dl.delay_s + dl.budget_s + MARGIN_S
    first = t_fault + at_least_s
    while True:
        now = time.monotonic()
        if now >= max(end, first):
            return
        if now >= first and _seen(d, kind, t_fault):
            time.sleep(SEEN_HOLD_S)
            return
        time.sleep(0.02)


def _last_heartbeat_before(d: Drill, t: float) -> float | None:
    beats = [float(h[0]) for h in d.stack.twin.stats(last=200)["heartbeats"] if h[0] < t]
    return beats[-1] if beats else None


# --- the twin and its link -------------------------------------------------------------------

def restart_twin(d: Drill) -> None:
    """Start the sim twin again on its port (after a kill), and its recommendations."""
    stack = d.stack
    port = stack.twin.port
    with contextlib.suppress(OSError):
        stack.twin.proc.kill()
    stack.twin = SimTwinProcess(stack.workdir, stack.workdir / "pki",
                                extra_args=("--listen", f"127.0.0.1:{port}"))
    start_process(stack, d.profile, lambda _text: None)
    d.twin_restarts += 1


def twin_frozen(d: Drill, kind: Kind) -> Made:
    pid = d.stack.twin.proc.pid
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        hold(d, kind, t0, at_least_s=1.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    t1 = time.monotonic()
    return Made(t0, t1, _last_heartbeat_before(d, t0), {"stopped_s": round(t1 - t0, 3)})


def twin_killed(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.proc.kill()
    hold(d, kind, t0)
    t1 = time.monotonic()
    restart_twin(d)
    return Made(t0, t1)


def twin_garbage(d: Drill, kind: Kind) -> Made:
    which = d.rng.choice(sorted(GARBAGE))
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "garbage", "kind": which})
    hold(d, kind, t0)
    return Made(t0, time.monotonic(), params={"garbage": which})


def twin_bye(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "bye", "reason": "drill"})
    hold(d, kind, t0)
    return Made(t0, time.monotonic())


def twin_unhealthy(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "healthy", "value": False})
    hold(d, kind, t0, at_least_s=1.0)
    d.stack.twin.request({"cmd": "healthy", "value": True})
    t1 = time.monotonic()
    sick = [float(h[0]) for h in d.stack.twin.stats(last=200)["heartbeats"]
            if h[0] >= t0 and not h[4]]
    return Made(t0, t1, sick[0] if sick else None)


def twin_slow(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "delay", "ms": 100})
    time.sleep(1.5)
    d.stack.twin.request({"cmd": "delay", "ms": 0})
    return Made(t0, time.monotonic(), params={"delay_ms": 100})


def link_half_open(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "half_open"})
    hold(d, kind, t0)
    return Made(t0, time.monotonic(), _last_heartbeat_before(d, t0))


def link_drop(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    d.stack.twin.request({"cmd": "vanish", "s": 1.0})
    hold(d, kind, t0, at_least_s=1.0)
    return Made(t0, time.monotonic(), params={"vanish_s": 1.0})


# --- the sensors -----------------------------------------------------------------------------

def _signal_fault(d: Drill, kind: Kind, faults: list[tuple[str, str, float | None]],
                  at_least_s: float = 0.0) -> Made:
    plc = d.stack.plc.control
    t0 = time.monotonic()
    for sig, what, value in faults:
        plc.fault(what, signal=sig, value=value)
    hold(d, kind, t0, at_least_s=at_least_s)
    plc.clear()
    return Made(t0, time.monotonic(), params={
        "faults": [f"{sig} {what}" + ("" if v is None else f" {v:g}") for sig, what, v in faults]})


def _temperature_group(profile: Profile) -> tuple[float, float]:
    """(stuck_after_s, discrepancy) of the temperature group."""
    g = next(g for g in profile.groups if g.name == "temperature")
    return g.stuck_after_s or 0.0, g.discrepancy


def wait_steady(d: Drill, seconds: float, span_c: float, timeout: float = STEADY_MAX_S) -> float:
    """Wait until the true temperature has moved less than ``span_c`` over ``seconds``
    (sampled at the PLC); returns the span of that window. TimeoutError after ``timeout``."""
    samples: deque[tuple[float, float]] = deque()
    end = time.monotonic() + timeout
    while True:
        st = d.stack.plc.control.state()
        now = float(st["t"])
        samples.append((now, float(st["temperature"])))
        while samples and samples[0][0] < now - seconds:
            samples.popleft()
        values = [v for _t, v in samples]
        if now - samples[0][0] >= seconds * 0.95 and max(values) - min(values) < span_c:
            return max(values) - min(values)
        if time.monotonic() > end:
            raise TimeoutError(f"the tank did not hold still ({span_c:g} degC over "
                               f"{seconds:g} s) within {timeout:g} s")
        time.sleep(0.1)


def sensor_stuck(d: Drill, kind: Kind) -> Made:
    """In a steady plant (the precondition: the voting's STUCK needs peers that move more
    than discrepancy / 4, so a stuck channel is told apart only in a moving plant) a
    channel frozen at what it reads is right, and must cause nothing. The peers' span over
    the hold is recorded (``peers_span_c``)."""
    after_s, discrepancy = _temperature_group(d.profile)
    steady = wait_steady(d, after_s, discrepancy / 8)
    sig = d.rng.choice(TEMPERATURE)
    plc = d.stack.plc.control
    t0 = time.monotonic()
    plc.fault("stuck", signal=sig)
    peers: dict[str, list[float]] = {p: [] for p in TEMPERATURE if p != sig}
    while time.monotonic() < t0 + after_s + deadline(kind, d.profile).budget_s + MARGIN_S:
        served = plc.state()["signals"]
        for p, values in peers.items():
            values.append(float(served[p]))
        time.sleep(0.1)
    plc.clear()
    span = max(max(v) - min(v) for v in peers.values())
    return Made(t0, time.monotonic(), params={
        "faults": [f"{sig} stuck"], "steady_span_c": round(steady, 3),
        "peers_span_c": round(span, 3), "peers_moved_at_c": discrepancy / 4})


def sensor_drift(d: Drill, kind: Kind) -> Made:
    return _signal_fault(d, kind, [(d.rng.choice(TEMPERATURE), "drift", 50.0)])


def sensor_offset(d: Drill, kind: Kind) -> Made:
    return _signal_fault(d, kind, [(d.rng.choice(TEMPERATURE), "offset", None)])


def sensor_out_of_range(d: Drill, kind: Kind) -> Made:
    return _signal_fault(d, kind, [(d.rng.choice(TEMPERATURE + PRESSURE), "out_of_range", None)])


def sensor_dropout(d: Drill, kind: Kind) -> Made:
    return _signal_fault(d, kind, [(d.rng.choice(TEMPERATURE + PRESSURE), "dropout", None)])


def sensor_2oo3_lost(d: Drill, kind: Kind) -> Made:
    two = d.rng.sample(TEMPERATURE, 2)
    how = [d.rng.choice([("out_of_range", None), ("offset", 40.0), ("drift", 50.0)])
           for _ in two]
    return _signal_fault(d, kind, [(s, w, v) for s, (w, v) in zip(two, how, strict=True)])


def sensor_trip(d: Drill, kind: Kind) -> Made:
    return _signal_fault(d, kind, [(s, "offset", 40.0) for s in TEMPERATURE])


# --- the PLC ---------------------------------------------------------------------------------

def _plc_fault(d: Drill, kind: Kind, what: str, seconds: float,
               delay_ms: float | None = None) -> Made:
    plc = d.stack.plc.control
    t0 = time.monotonic()
    plc.fault(what, delay_ms=delay_ms)
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    plc.clear()
    t1 = time.monotonic()
    if kind.expect is not Expect.NOTHING:
        hold(d, kind, t0, base_t=t1 if what == "stop" else None)
    params: dict[str, Any] = {"seconds": seconds}
    if delay_ms is not None:
        params["delay_ms"] = delay_ms
    return Made(t0, t1, params=params)


def plc_silent(d: Drill, kind: Kind) -> Made:
    return _plc_fault(d, kind, "stop", 0.4)


def plc_slow(d: Drill, kind: Kind) -> Made:
    return _plc_fault(d, kind, "slow", 0.6, delay_ms=300.0)


def plc_slow_within(d: Drill, kind: Kind) -> Made:
    return _plc_fault(d, kind, "slow", 1.5, delay_ms=5.0)


def plc_malformed(d: Drill, kind: Kind) -> Made:
    return _plc_fault(d, kind, "malformed", 0.5)


def plc_drop(d: Drill, kind: Kind) -> Made:
    t0 = time.monotonic()
    dropped = d.stack.plc.control.fault("drop").get("dropped")
    time.sleep(1.0)
    return Made(t0, time.monotonic(), params={"dropped": dropped})


# --- the agent -------------------------------------------------------------------------------

def newest_seq(stack: Stack) -> int:
    """The highest telemetry seq committed to the agent's spool or received by the twin."""
    received = stack.twin.request({"cmd": "telemetry"})["max_seq"]
    return max([*spool_seqs(stack.state_dir), received or 0])


def restart_agent(d: Drill) -> None:
    agent = d.stack.agent
    if agent is not None and agent.alive():
        agent.kill()
    d.stack.start_agent()
    d.agent_restarts += 1


def python_hang(d: Drill, kind: Kind) -> Made:
    agent = d.stack.agent
    assert agent is not None, "the campaign always runs an agent"
    t0 = time.monotonic()
    agent.signal(signal.SIGUSR2)
    hold(d, kind, t0)
    t1 = time.monotonic()
    restart_agent(d)
    return Made(t0, t1)


def agent_kill9(d: Drill, kind: Kind) -> Made:
    agent = d.stack.agent
    assert agent is not None, "the campaign always runs an agent"
    newest = newest_seq(d.stack)
    time.sleep(d.rng.uniform(0.0, 0.5))  # somewhere in a tick, a spool commit, a send
    t0 = time.monotonic()
    agent.kill()
    hold(d, kind, t0)
    t1 = time.monotonic()
    restart_agent(d)
    return Made(t0, t1, newest_seq=max(newest, newest_seq(d.stack)))


def agent_kill9_spooling(d: Drill, kind: Kind) -> Made:
    """The twin vanishes, records pile up in the spool, the agent is killed among them."""
    agent = d.stack.agent
    assert agent is not None, "the campaign always runs an agent"
    stack = d.stack
    before = newest_seq(stack)
    stack.twin.request({"cmd": "vanish", "s": 2.0})
    wait_for(lambda: max(spool_seqs(stack.state_dir), default=0) > before, 5.0,
             "records committed to the spool while the twin is away", 0.02)
    time.sleep(d.rng.uniform(0.0, 0.3))
    newest = max(spool_seqs(stack.state_dir), default=before)
    t0 = time.monotonic()
    agent.kill()
    hold(d, kind, t0)
    t1 = time.monotonic()
    restart_agent(d)
    return Made(t0, t1, newest_seq=max(newest, before))


Injector = Callable[[Drill, Kind], Made]
INJECTORS: dict[str, Injector] = {
    "twin-frozen": twin_frozen,
    "twin-killed": twin_killed,
    "twin-garbage": twin_garbage,
    "twin-bye": twin_bye,
    "twin-unhealthy": twin_unhealthy,
    "twin-slow": twin_slow,
    "link-half-open": link_half_open,
    "link-drop": link_drop,
    "sensor-stuck": sensor_stuck,
    "sensor-drift": sensor_drift,
    "sensor-offset": sensor_offset,
    "sensor-out-of-range": sensor_out_of_range,
    "sensor-dropout": sensor_dropout,
    "sensor-2oo3-lost": sensor_2oo3_lost,
    "sensor-trip": sensor_trip,
    "plc-silent": plc_silent,
    "plc-slow": plc_slow,
    "plc-slow-within": plc_slow_within,
    "plc-drop": plc_drop,
    "plc-malformed": plc_malformed,
    "python-hang": python_hang,
    "agent-kill9": agent_kill9,
    "agent-kill9-spooling": agent_kill9_spooling,
}
assert set(INJECTORS) == set(BY_NAME), "every kind of the catalogue has its injector"
