"""Property tests never make a landing random (tests/conftest.py): the default profile draws
the same examples on every run with a printed seed; the fuzz profile explores beyond it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[1]
TEST = "tests/core/test_heartbeat.py::test_jitter_up_to_half_the_timeout_never_trips"  # 200


def examples(*options: str, scale: str = "3") -> tuple[list[str], str]:
    """The examples one run of TEST tried (verbose output) and its whole output."""
    env = {**os.environ, "TWINGUARD_FUZZ_SCALE": scale}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--hypothesis-verbosity=verbose", *options, TEST],
        cwd=ROOT, capture_output=True, text=True, timeout=100, env=env, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    lines = run.stdout.splitlines()
    tried = [lines[i + 1] for i, line in enumerate(lines) if line.startswith("Test case:")]
    return tried, run.stdout


@pytest.fixture(scope="module")
def ci_run() -> tuple[list[str], str]:
    return examples()


def test_the_default_profile_is_the_same_every_run_and_says_its_seed(
        ci_run: tuple[list[str], str]) -> None:
    first, out = ci_run
    again, _ = examples()
    assert first == again and len(first) >= 100
    assert "hypothesis: profile ci, seed 1313" in out  # in the summary (and the header)


def test_the_fuzz_profile_explores_more_with_the_seed_it_prints(
        ci_run: tuple[list[str], str]) -> None:
    ci, _ = ci_run
    fuzz, out = examples("--hypothesis-profile=fuzz", "--hypothesis-seed=4242")
    assert "hypothesis: profile fuzz, seed 4242" in out
    assert len(fuzz) > 2 * len(ci)  # 3 x the examples (less what hypothesis skips)
    replay, _ = examples("--hypothesis-profile=fuzz", "--hypothesis-seed=4242")
    assert replay == fuzz  # a seed the bench printed replays the run


def test_sim_bench_fuzz_prints_its_seed_and_passes_it_on() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sim.bench", "fuzz", "--seed", "7", "--scale", "2", "--json",
         "--", TEST], cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "fuzz: seed 7, scale 2" in run.stderr
    assert "hypothesis: profile fuzz, seed 7" in run.stdout
    assert json.loads(run.stdout.splitlines()[-1])["seed"] == 7
