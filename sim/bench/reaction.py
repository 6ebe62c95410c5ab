"""Reaction benchmark: how late does the safe state land at the PLC after a deadline?

``python -m sim.bench reaction --path python [--trials N] [--json]``

The sim PLC, the sim twin and the agent run as separate processes (``sim.stack.Stack``).
Each trial waits until the agent reports NORMAL, waits a random fraction of a poll period
(so the fault lands at any phase of the loop), stops the twin's heartbeats, and then reads
two clocks that are not the agent's: the twin's record of when it sent its last heartbeat
(deadline = that + the profile's heartbeat timeout) and the sim PLC's write log (when the
safe-state write arrived). Lateness = arrival - deadline. Both are CLOCK_MONOTONIC.
The heartbeats are resumed and the agent recovers (auto policy, short hold-off) before the
next trial.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from typing import Any

from sim.bench.stats import summary_ms
from sim.stack import Stack, output_writes, sim_tank_text, wait_for

SAFE_OUTPUT = "heater_power"


def bench_profile(holdoff_s: float = 0.3) -> str:
    """sim-tank with a short auto-recovery hold-off, so trials follow each other quickly."""
    text = sim_tank_text()
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', text)
    return re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", text)


def heartbeat_timeout_s(profile_text: str) -> float:
    match = re.search(r"(?m)^heartbeat_timeout_s = ([0-9.]+)", profile_text)
    assert match is not None
    return float(match[1])


def python_trials(trials: int, rng: random.Random, log: Any) -> tuple[list[float], float]:
    """Run ``trials`` heartbeat losses; lateness of each safe-state write, in seconds."""
    text = bench_profile()
    timeout = heartbeat_timeout_s(text)
    lateness: list[float] = []
    with Stack(profile_text=text) as stack:
        since = 0.0
        for i in range(trials):
            stack.wait_state("normal", timeout=30, since=since)
            time.sleep(rng.uniform(0.0, 0.1))
            stack.twin.request({"cmd": "stop"})
            stopped = time.monotonic()
            last_hb = float(stack.twin.stats(last=1)["last_heartbeat_t"])
            deadline = last_hb + timeout

            def landed(deadline: float = deadline) -> list[dict[str, Any]]:
                return output_writes(stack.plc.write_log(), SAFE_OUTPUT, since=deadline - 0.2)

            writes = wait_for(landed, timeout + 5.0, "safe-state write at the PLC")
            late = writes[0]["t"] - deadline
            lateness.append(late)
            print(f"trial {i + 1}/{trials}: {late * 1000:+.3f} ms", file=log, flush=True)
            since = time.monotonic()
            stack.twin.request({"cmd": "resume"})
            del stopped
    return lateness, timeout


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench reaction")
    p.add_argument("--path", choices=("python", "native"), default="python")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    if args.path == "python":
        lateness, timeout = python_trials(args.trials, rng, sys.stderr)
        result: dict[str, Any] = {"path": "python", "trials": args.trials,
                                  "timeout_ms": round(timeout * 1000), **summary_ms(lateness)}
    else:
        from sim.bench.native import native_trials  # noqa: PLC0415

        lateness, deadline = native_trials(args.trials, rng, sys.stderr)
        result = {"path": "native", "trials": args.trials,
                  "deadline_ms": round(deadline * 1000), **summary_ms(lateness)}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>12}: {v}")
    return 0
