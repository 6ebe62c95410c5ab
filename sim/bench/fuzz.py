"""``python -m sim.bench fuzz [--seed N] [--scale K] [--json] [PYTEST ARGS...]``: explore.

CI's property tests draw the same examples on every run (profile ``ci``, a fixed seed:
``tests/conftest.py``), so a landing never depends on luck, and they never look further.
This runs them the other way: pytest on the property tests only (``-m hypothesis``; or the
paths and options given after ``--``) with the ``fuzz`` profile, a random seed (or
``--seed``) printed before the run, and every test's ``max_examples`` multiplied by
``--scale`` (default 20). Needs the checkout (it runs ``tests/``); runs for minutes.

A failure prints the seed to replay it (``--seed N`` with the same arguments) and
hypothesis' ``@reproduce_failure`` blob; what it finds belongs in the suite as an
``@example`` or a regression test. Exit status: pytest's. With ``--json`` the last line is
``{"seed": N, "scale": K, "exit": E, "elapsed_s": S}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def command(seed: int, extra: list[str]) -> list[str]:
    """The pytest command line for one exploring run."""
    targets = extra or ["-m", "hypothesis", "tests"]
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--hypothesis-profile=fuzz", f"--hypothesis-seed={seed}", *targets]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None, help="replay this seed (default: random)")
    p.add_argument("--scale", type=int, default=20,
                   help="multiply every property test's max_examples by this (default 20)")
    p.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    p.add_argument("pytest_args", nargs="*",
                   help="after --: what pytest runs (default: -m hypothesis tests)")
    args = p.parse_args(argv)
    if args.scale < 1:
        p.error("--scale must be at least 1")
    if not (ROOT / "tests" / "conftest.py").is_file():
        print(f"fuzz: no tests/ under {ROOT}: run it from a checkout", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz: seed {seed}, scale {args.scale} (replay: python -m sim.bench fuzz "
          f"--seed {seed} --scale {args.scale})", file=sys.stderr, flush=True)
    start = time.monotonic()
    env = {**os.environ, "TWINGUARD_FUZZ_SCALE": str(args.scale)}
    # our own interpreter running pytest on the checkout's tests
    code = subprocess.call(command(seed, args.pytest_args), cwd=ROOT, env=env)  # noqa: S603
    elapsed = time.monotonic() - start
    if code:
        print(f"fuzz: FAILED with seed {seed}: replay with --seed {seed}", file=sys.stderr)
    if args.json:
        print(json.dumps({"seed": seed, "scale": args.scale, "exit": code,
                          "elapsed_s": round(elapsed, 1)}))
    return code
