"""``python -m sim.bench all [--quick] [--json]``: every benchmark, one JSON object.

Runs, one after the other and each in a fresh interpreter (``python -m sim.bench NAME
--json``, so one benchmark's memory, threads or event loop cannot colour the next)::

    reaction_local    reaction --path python --policy local --trials T   (T = 20; --quick: 3)
    reaction_release  reaction --path python --policy release --trials T
    reaction_safe     reaction --path python --policy safe --trials T
    reaction_native   reaction --path native --trials T
    reaction_release_load2  reaction --path python --policy release --trials T --load 2
    reaction_native_load2   reaction --path native --trials T --load 2
    restart           restart --trials R --baseline B       (R = 10, B = 3; --quick: 2, 1)
    poll              poll --rounds R                       (R = 2000; --quick: 300)
    footprint         footprint                             (--quick: 1 s settle, 2 s windows)
    spool             spool --records N                     (N = 100000; --quick: 5000)
    fleet             fleet --agents N --duration S --tls   (N = 1000, S = 30; --quick: 100, 5)
    fleet_bridge      the same with --bridge

and prints ``{"reaction_local": {...}, "reaction_release": {...}, "reaction_safe": {...},
"reaction_native": {...}, "reaction_release_load2": {...}, "reaction_native_load2": {...},
"restart": {...}, "poll": {...}, "footprint": {...}, "spool": {...}, "fleet": {...},
"fleet_bridge": {...}}``, each entry the benchmark's own JSON object plus ``elapsed_s``.
The ``_load2`` runs are the same benchmarks with 2 CPU hogs at normal priority for the
whole run (``sim.bench.load``; every reaction entry says its ``load``), the sims at
SCHED_FIFO below the agent. A benchmark that fails (exit status, no JSON line) does not
stop the others: its entry is ``{"error": "..."}`` with the tail of its stderr, and the
exit status is 1. Each benchmark's progress goes to stderr as it runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from sim.bench.reaction import POLICIES

TIMEOUT_S = 1800.0
LOAD = 2  # CPU hogs in the loaded reaction runs: every core of a Pi-class board (and this) busy


def plan(quick: bool, trials: int | None = None) -> dict[str, list[str]]:
    """Name -> ``python -m sim.bench`` arguments for each benchmark of the suite."""
    t = str(trials if trials is not None else (3 if quick else 20))
    shed = {f"reaction_{policy}": ["reaction", "--path", "python", "--policy", policy,
                                   "--trials", t] for policy in POLICIES}
    loaded = ["--load", str(LOAD)]
    fleet = ["fleet", "--agents", "100" if quick else "1000", "--duration",
             "5" if quick else "30", "--tls"]
    return {
        **shed,
        "reaction_native": ["reaction", "--path", "native", "--trials", t],
        f"reaction_release_load{LOAD}": ["reaction", "--path", "python", "--policy",
                                         "release", "--trials", t, *loaded],
        f"reaction_native_load{LOAD}": ["reaction", "--path", "native", "--trials", t,
                                        *loaded],
        "restart": ["restart", "--trials", "2" if quick else "10",
                    "--baseline", "1" if quick else "3"],
        "poll": ["poll", "--rounds", "300" if quick else "2000"],
        "footprint": ["footprint", *(["--quick"] if quick else [])],
        "spool": ["spool", *(["--records", "5000"] if quick else [])],
        "fleet": fleet,
        "fleet_bridge": [*fleet, "--bridge"],
    }


def _relay(stream: IO[str], tail: deque[str]) -> None:
    """Copy a child's stderr to ours line by line (live progress), keeping the last lines."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line)


def run_one(args: list[str], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Run one benchmark in a child interpreter; its JSON object, or ``{"error": ...}``."""
    argv = [sys.executable, "-m", "sim.bench", *args, "--json"]
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=30)
    with subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        relay = threading.Thread(target=_relay, args=(proc.stderr, tail), daemon=True)
        relay.start()
        killer = threading.Timer(timeout_s, proc.kill)  # a hung benchmark must not hang all
        killer.start()
        try:
            stdout = proc.stdout.read()
            proc.wait()
        finally:
            killer.cancel()
        relay.join(5.0)
    if time.monotonic() - started >= timeout_s:
        return {"error": f"timed out after {timeout_s:g} s", "stderr": "".join(tail)[-2000:]}
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit status {proc.returncode}", "stderr": "".join(tail)[-2000:]}
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"no JSON on the last line of stdout: {exc}", "stdout": lines[-1][:500]}
    if not isinstance(result, dict):
        return {"error": "the last line of stdout is JSON but not an object"}
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench all", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized run (about a minute)")
    p.add_argument("--trials", type=int, default=None, help="reaction trials per path")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only this entry (repeatable): " + ", ".join(plan(False)))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        p.error("--trials must be >= 1")
    suite = plan(args.quick, args.trials)
    unknown = set(args.only or ()) - set(suite)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    for name, bench_args in suite.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: python -m sim.bench {' '.join(bench_args)}", file=sys.stderr,
              flush=True)
        results[name] = run_one(bench_args)
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        print(json.dumps(results, indent=2, sort_keys=True))
    return 1 if any("error" in r for r in results.values()) else 0
