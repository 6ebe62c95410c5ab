"""The poll, footprint and all benchmarks run end to end and print the documented JSON.

Shape and sanity only (the right keys, finite numbers, internal consistency), never the
acceptance thresholds: the figures belong to the benchmark report, not to a test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest

from agent.config.profile.load import read_toml
from agent.config.profile.parse import parse_profile
from sim.bench import all as bench_all
from sim.bench.footprint import deadline_for, profile_text, read_proc
from sim.bench.poll import Samples, summarize

POLL_KEYS = {
    "bench", "rounds", "warmup", "seed", "blocks", "agent_p50_us", "agent_p99_us",
    "bare_p50_us", "bare_p99_us", "ratio_p50", "ratio_p99", "agent_overhead_p50_us",
    "agent_requests_per_read", "bare_requests_per_read", "target_ratio_p50", "meets_target",
    "load", "load_tool", "load_cpu_percent",
}
FOOTPRINT_PER_RATE = ("rss_mb", "hwm_mb", "cpu_percent", "ticks_per_s", "window_s")


def bench(*args: str, timeout: float = 100) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", *args, "--json"],
        capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


# --- pure helpers -------------------------------------------------------------------------

def test_summarize_ratios_follow_the_samples() -> None:
    agent = tuple(range(1_000, 2_000))  # ns
    bare = tuple(v // 2 for v in agent)
    got = summarize(Samples(agent, bare, agent_requests=2 * len(agent), blocks=2))
    assert got["rounds"] == 1000
    assert got["ratio_p50"] == pytest.approx(2.0, rel=1e-2)
    assert got["ratio_p99"] == pytest.approx(2.0, rel=1e-2)
    assert got["agent_p50_us"] == pytest.approx(1.4995, abs=0.1)
    assert got["agent_requests_per_read"] == 2.0 and got["bare_requests_per_read"] == 2
    assert got["meets_target"] is False


@pytest.mark.parametrize("period", [0.1, 0.01])
def test_footprint_profiles_pass_the_checks(period: float) -> None:
    text = profile_text(period)
    profile = parse_profile(read_toml(text, "test"), "test")  # ProfileError if not
    timing = profile.timing
    assert timing.poll_period_s == period
    assert timing.watchdog_deadline_s == deadline_for(period)
    assert profile.plc.timeout_s <= timing.io_budget_s


def test_read_proc_sees_this_process() -> None:
    first = read_proc(os.getpid(), 0.0)
    sum(i * i for i in range(2_000_000))  # burn some CPU
    second = read_proc(os.getpid(), 1.0)
    assert first.rss_kib > 0 and first.hwm_kib >= first.rss_kib
    assert second.cpu_ticks >= first.cpu_ticks


# --- end to end ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_poll_json() -> None:
    got = bench("poll", "--rounds", "50")
    assert set(got) == POLL_KEYS
    assert got["rounds"] == 50 and got["blocks"] >= 1
    for key in ("agent_p50_us", "agent_p99_us", "bare_p50_us", "bare_p99_us"):
        assert finite(got[key]) and got[key] > 0, (key, got)
    assert got["agent_p50_us"] <= got["agent_p99_us"]
    assert got["bare_p50_us"] <= got["bare_p99_us"]
    assert got["ratio_p50"] == pytest.approx(got["agent_p50_us"] / got["bare_p50_us"], rel=1e-2)
    # the agent made exactly the bare client's requests: no retries, no splits
    assert got["agent_requests_per_read"] == got["bare_requests_per_read"] == got["blocks"]
    assert (got["load"], got["load_tool"], got["load_cpu_percent"]) == (0, None, None)


@pytest.mark.timeout(60)
def test_poll_under_load_json() -> None:
    got = bench("poll", "--rounds", "500", "--load", "1", "--load-tool", "python")
    assert set(got) == POLL_KEYS and got["rounds"] == 500
    assert (got["load"], got["load_tool"]) == (1, "python")
    # /proc counts CPU in clock ticks: one at each end over a run of at least 0.2 s (500
    # rounds of two round trips) is up to 10 % of a core (CI measured 102.1 % over 50 rounds)
    resolution = 100.0 * 2 / (os.sysconf("SC_CLK_TCK") * 0.2)
    assert 0 < got["load_cpu_percent"] <= 100.0 + resolution + 0.5
    assert got["agent_requests_per_read"] == got["bare_requests_per_read"] == got["blocks"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_footprint_quick_json() -> None:
    got = bench("footprint", "--quick", "--no-floor", timeout=110)  # the floor: test_bench_floor
    for rate in (10, 100):
        for key in FOOTPRINT_PER_RATE:
            value = got[f"{key}_{rate}hz"]
            assert finite(value) and value > 0, (key, rate, got)
    assert got["rss_mb"] == max(got["rss_mb_10hz"], got["rss_mb_100hz"])
    assert not [k for k in got if k.startswith(("floor_", "cpu_ratio_"))]  # --no-floor
    assert got["ticks_per_s_100hz"] > got["ticks_per_s_10hz"]  # the rate change took effect
    assert isinstance(got["meets_target"], bool)


@pytest.mark.timeout(60)
def test_all_collects_results_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_all.main(["--quick", "--only", "poll", "--json"])
    out = capsys.readouterr()
    results = json.loads(out.out.strip().splitlines()[-1])
    assert code == 0, out.err[-3000:]
    assert set(results) == {"poll"}
    assert set(results["poll"]) >= POLL_KEYS and results["poll"]["rounds"] == 300
    failed = bench_all.run_one(["poll", "--rounds", "0"])  # refused by its argument parser
    assert "exit status 2" in failed["error"] and "--rounds" in failed["stderr"]


def test_all_plan_names_every_benchmark() -> None:
    assert set(bench_all.plan(quick=True)) == {
        "reaction_local", "reaction_release", "reaction_safe", "reaction_native",
        "reaction_release_load2", "reaction_native_load2", "restart", "poll", "footprint",
        "spool", "fleet", "fleet_bridge"}
    full = bench_all.plan(quick=False, trials=7)
    assert full["reaction_native"][-1] == "7" and "--load" not in full["reaction_native"]
    assert full["reaction_native_load2"] == ["reaction", "--path", "native", "--trials", "7",
                                             "--load", "2"]
    assert full["reaction_release_load2"] == full["reaction_release"] + ["--load", "2"]
    for policy in ("local", "release", "safe"):
        args = full[f"reaction_{policy}"]
        assert args[:3] == ["reaction", "--path", "python"]
        assert args[args.index("--policy") + 1] == policy and args[-1] == "7"
    assert full["restart"] == ["restart", "--trials", "10", "--baseline", "3"]
    assert full["fleet"] == ["fleet", "--agents", "1000", "--duration", "30", "--tls"]
    assert full["fleet_bridge"] == full["fleet"] + ["--bridge"]
    assert bench_all.plan(quick=True)["restart"] == ["restart", "--trials", "2",
                                                     "--baseline", "1"]
