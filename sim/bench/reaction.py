"""Reaction benchmark: how late does the agent's answer to a lost twin land at the PLC?

``python -m sim.bench reaction --path python [--policy local|release|safe] [--trials N]
[--load N [--load-tool auto|stress-ng|python]] [--json]`` (``--path native``:
:mod:`sim.bench.native`, the native watchdog after a hang)

What is measured: how late, past the moment it became due, the agent's answer reaches the
PLC, by clocks that are not the agent's (the twin's and the PLC's, CLOCK_MONOTONIC).

The sim PLC, the sim twin and the agent (``mode = "active"``) run as separate processes
(``sim.stack.Stack``). The twin's loss sheds its authority (issue 12); what the agent writes
then is the profile's ``on_twin_loss`` policy, one per run:

==========  ===============================================================================
policy      the profile, and the write measured at the PLC
==========  ===============================================================================
release     sim-tank as shipped (both outputs ``release``, the PLC program behind the
            ``[plc_remote]`` flag): the flag's write at ``local_value``
local       sim-tank as a dumb coupler (no flag, no program), the cooling valve
            ``local`` (``local_value`` ``LOCAL_VALUE``), the heater ``hold``: the first
            ramp step of the cooling valve
safe        sim-tank with both outputs ``safe`` (the twin's supervision is a protection
            layer): the full safe set, the flag at ``remote_value`` included, complete at
            the PLC (:func:`sim.demo.judge.safe_set`)
==========  ===============================================================================

Each trial waits until the agent reports NORMAL and twin authority REMOTE (for ``local``:
the twin then recommends the cooling valve away from its local value, and the trial waits
until the PLC holds it), waits a random fraction of a poll period (so the loss lands at any
phase of the loop), stops the twin's heartbeats, and then reads two clocks that are not the
agent's: the twin's record of when it sent its last heartbeat (deadline = that + the
profile's heartbeat timeout) and the sim PLC's write log (when the write arrived).
Lateness = arrival - deadline, both CLOCK_MONOTONIC; arrival is the write log's ``t``, when
the request's first byte reached the sim PLC (its data-received callback, before decoding).
The heartbeats are resumed and the twin earns authority back (auto return after
``RETURN_HOLDOFF_S``; for ``safe`` the plant first recovers, auto policy, short hold-off)
before the next trial.

Under load (``--load N``, :mod:`sim.bench.load`): N CPU hogs at normal priority (SCHED_OTHER,
nice 0; ``stress-ng --cpu N`` or Python busy loops) run from before the first trial to after
the last, and a hog that dies fails the run. In a loaded run the sim PLC and the sim twin run
at SCHED_FIFO ``SIM_RT_PRIORITY`` (20): they stand in for separate machines, so the hogs must
not delay their stamps and replies (that delay would be counted as the agent's), and 20 is
below the agent's own real-time priority (40), so they never preempt the agent they measure.
The agent runs as its profile and the machine let it; it competes with the hogs.

JSON: ``{"path": "python", "policy": P, "trials": N, "timeout_ms": T, "p50_ms", "p99_ms",
"max_ms", "load": N, "load_tool": "stress-ng"|"python"|null, "load_cpu_percent": C|null}``
(``--path native``: ``deadline_ms`` instead of ``timeout_ms``, no policy); ``load_cpu_percent``
is the share of a core each hog got on average, proof the load was there.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.config.profile.load import read_toml
from agent.config.profile.parse import parse_profile
from agent.model.profile import Profile
from sim.bench.load import SIM_RT_PRIORITY, TOOLS, LoadError, cpu_load
from sim.bench.stats import report, summary_ms
from sim.demo.judge import flag_writes, safe_set
from sim.stack import Stack, output_writes, recommend_script, sim_tank_text, wait_for

SAFE_OUTPUT = "heater_power"
POLICIES = ("local", "release", "safe")
LOCAL_OUTPUT = "cooling_valve"
LOCAL_VALUE = 80.0  # the cooling valve's local_value under the "local" policy
AWAY_VALUE = 20.0  # the twin holds the valve here before each "local" trial
RETURN_HOLDOFF_S = 0.3
WAIT_S = 30.0


def bench_profile(holdoff_s: float = 0.3) -> str:
    """sim-tank with a short auto-recovery hold-off, so trials follow each other quickly."""
    text = sim_tank_text()
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', text)
    return re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", text)


def table_removed(text: str, name: str) -> str:
    """``text`` without its TOML table ``[name]`` (header, a comment after it, and body)."""
    return re.sub(rf"(?ms)^\[{re.escape(name)}\][^\n]*\n.*?(?=^\[|\Z)", "", text)


def policy_profile(policy: str) -> str:
    """The profile text of ``policy`` (see the module docstring): short recovery and
    return hold-offs. ValueError for an unknown policy."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    text = table_removed(bench_profile(), "authority")
    if policy == "local":
        text = re.sub(r"(?m)^(on_twin_loss|local_value) = .*\n", "", text)
        text = table_removed(table_removed(text, "plc_remote"), "sim.program")
        extra = iter(['on_twin_loss = "hold"\n',
                      f'on_twin_loss = "local"\nlocal_value = {LOCAL_VALUE}\n'])
        text = re.sub(r"(?m)^failsafe = .*\n", lambda m: m.group(0) + next(extra), text)
    elif policy == "safe":
        text = re.sub(r'(?m)^on_twin_loss = .*$', 'on_twin_loss = "safe"', text)
    return text + f'\n[authority]\nreturn = "auto"\nreturn_holdoff_s = {RETURN_HOLDOFF_S}\n'


def heartbeat_timeout_s(profile_text: str) -> float:
    match = re.search(r"(?m)^heartbeat_timeout_s = ([0-9.]+)", profile_text)
    assert match is not None
    return float(match[1])


def shed_write_t(log: list[dict[str, Any]], profile: Profile, policy: str,
                 since: float) -> float | None:
    """When the write that answers the twin's loss under ``policy`` arrived at the PLC
    (the first at or after ``since``); None while it has not."""
    if policy == "release":
        assert profile.plc_remote is not None
        hits = flag_writes(log, profile, since, value=profile.plc_remote.local_value)
        return float(hits[0]["t"]) if hits else None
    if policy == "local":
        writes = output_writes(log, LOCAL_OUTPUT, since=since)
        return float(writes[0]["t"]) if writes else None
    got = safe_set(log, profile, since)
    return None if got is None else got[1]


def _prepare(stack: Stack, profile: Profile, policy: str, since: float) -> None:
    """Wait until the twin holds authority (and, for ``local``, the valve away from its
    local value, so the shed has a ramp to make)."""
    stack.wait_state("normal", timeout=WAIT_S, since=since)
    stack.wait_authority("remote", timeout=WAIT_S, since=since)
    if policy == "local":
        stack.twin.request(recommend_script([(0.0, LOCAL_OUTPUT, AWAY_VALUE, 60.0)]))
        wait_for(lambda: abs(stack.plc.control.state()["outputs"][LOCAL_OUTPUT] - AWAY_VALUE)
                 < 0.05, WAIT_S, f"{LOCAL_OUTPUT} at {AWAY_VALUE:g} %")
    elif profile.plc_remote is not None:
        value = profile.plc_remote.remote_value
        wait_for(lambda: stack.plc.control.state().get("plc_remote") == value, WAIT_S,
                 "the flag at remote_value")


def python_trials(trials: int, rng: random.Random, log: Any, policy: str = "release", *,
                  sim_rt_priority: int | None = None,
                  after_trial: Callable[[], None] = lambda: None,
                  stack_factory: Callable[..., Stack] = Stack) -> tuple[list[float], float]:
    """Run ``trials`` twin losses under ``policy``; lateness of each shed write (s), and the
    heartbeat timeout (s). ``sim_rt_priority``: the sims' SCHED_FIFO priority (loaded runs);
    ``after_trial`` is called after each trial (the load's check); ``stack_factory``: the
    plant (a :class:`sim.fleet_stack.FleetStack` puts a broker between twin and agent)."""
    text = policy_profile(policy)
    profile = parse_profile(read_toml(text, "bench"), "bench")
    timeout = profile.timing.heartbeat_timeout_s
    period = profile.timing.poll_period_s
    lateness: list[float] = []
    with stack_factory(profile_text=text, mode="active",
                       sim_rt_priority=sim_rt_priority) as stack:
        since = 0.0
        for i in range(trials):
            _prepare(stack, profile, policy, since)
            time.sleep(rng.uniform(0.0, period))
            stack.twin.request({"cmd": "stop"})
            deadline = float(stack.twin.stats(last=1)["last_heartbeat_t"]) + timeout

            def landed(deadline: float = deadline) -> float | None:
                return shed_write_t(stack.plc.write_log(), profile, policy, deadline - 0.2)

            t_write: float = wait_for(landed, timeout + 5.0, f"the {policy} write at the PLC")
            late = t_write - deadline
            lateness.append(late)
            print(f"trial {i + 1}/{trials}: {policy} {late * 1000:+.3f} ms", file=log,
                  flush=True)
            after_trial()
            since = time.monotonic()
            stack.twin.request({"cmd": "resume"})
    return lateness, timeout


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench reaction")
    p.add_argument("--path", choices=("python", "native"), default="python")
    p.add_argument("--policy", choices=POLICIES, default="release",
                   help="the on_twin_loss policy whose write is measured (python path)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="N CPU hogs at normal priority for the whole run (default 0)")
    p.add_argument("--load-tool", choices=TOOLS, default="auto",
                   help="stress-ng, Python busy loops, or auto: stress-ng where it is there")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be >= 1")
    if args.load < 0:
        p.error("--load must be >= 0")
    rng = random.Random(args.seed)
    rt = SIM_RT_PRIORITY if args.load else None
    try:
        with cpu_load(args.load, args.load_tool, sys.stderr) as load:
            if args.path == "python":
                lateness, timeout = python_trials(args.trials, rng, sys.stderr, args.policy,
                                                  sim_rt_priority=rt, after_trial=load.check)
                result: dict[str, Any] = {"path": "python", "policy": args.policy,
                                          "trials": args.trials,
                                          "timeout_ms": round(timeout * 1000),
                                          **summary_ms(lateness)}
            else:
                from sim.bench.native import native_trials  # noqa: PLC0415

                lateness, first, deadline = native_trials(
                    args.trials, rng, sys.stderr, sim_rt_priority=rt, after_trial=load.check)
                result = {"path": "native", "trials": args.trials,
                          "deadline_ms": round(deadline * 1000), **summary_ms(lateness),
                          "first_frame": summary_ms(first)}
    except LoadError as exc:
        print(f"reaction: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reaction: interrupted", file=sys.stderr)
        return 130
    return report({**result, **load.fields()}, args.json)
