"""The reaction benchmark runs end to end on both paths and prints the documented JSON.

Shape and behaviour only (finite numbers, the right keys and trial count, each policy's
profile), never timing thresholds: the numbers themselves belong to the benchmark's report,
not to a test.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from agent.config.profile.load import read_toml
from agent.config.profile.parse import parse_profile
from agent.model.profile import Profile, TwinLossPolicy
from sim.bench import reaction
from sim.stack import pid_running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


UNLOADED = {"load": 0, "load_tool": None, "load_cpu_percent": None}


def run_bench(*args: str, trials: int = 2) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "reaction", *args, "--trials", str(trials),
         "--json"], capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    assert done.stderr.count("trial ") >= trials, "one progress line per trial on stderr"
    return result, done.stderr


def bench(*args: str, trials: int = 2) -> dict[str, Any]:
    return run_bench(*args, trials=trials)[0]


def check_summary(result: dict[str, Any]) -> None:
    values = [result[k] for k in ("p50_ms", "p99_ms", "max_ms")]
    assert all(isinstance(v, float | int) and math.isfinite(v) for v in values), result
    p50, p99, worst = (float(v) for v in values)
    assert p50 <= p99 <= worst


@pytest.mark.parametrize("policy", reaction.POLICIES)
def test_reaction_json_for_each_shed_policy(policy: str) -> None:
    result = bench("--path", "python", "--policy", policy)
    assert set(result) == {"path", "policy", "trials", "timeout_ms", "p50_ms", "p99_ms",
                           "max_ms", *UNLOADED}
    assert result["path"] == "python" and result["policy"] == policy
    assert {k: result[k] for k in UNLOADED} == UNLOADED
    assert result["trials"] == 2 and result["timeout_ms"] == 500
    check_summary(result)


def test_reaction_json_native() -> None:
    result = bench("--path", "native")
    assert set(result) == {"path", "trials", "deadline_ms", "p50_ms", "p99_ms", "max_ms",
                           "first_frame", *UNLOADED}
    # the safe set's first frame lands before its last (the output, after the flag's reply)
    assert set(result["first_frame"]) == {"p50_ms", "p99_ms", "max_ms"}
    assert result["first_frame"]["max_ms"] < result["max_ms"]
    assert result["path"] == "native" and result["trials"] == 2
    assert {k: result[k] for k in UNLOADED} == UNLOADED
    assert isinstance(result["deadline_ms"], int) and result["deadline_ms"] > 0
    check_summary(result)


@pytest.mark.parametrize("path", ["python", "native"])
def test_reaction_under_load_says_so_and_leaves_no_hog(path: str) -> None:
    """``--load 1``: the JSON names the load and its tool, the hog got CPU, and the hog the
    bench said it started is gone when the bench has exited."""
    result, stderr = run_bench("--path", path, "--load", "1", "--load-tool", "python",
                               trials=1)
    assert result["path"] == path and result["trials"] == 1
    assert (result["load"], result["load_tool"]) == (1, "python")
    # /proc counts CPU in clock ticks: one at each end over a trial of at least 0.2 s (the
    # shorter deadline a trial waits out) is up to 10 % of a core
    resolution = 100.0 * 2 / (os.sysconf("SC_CLK_TCK") * 0.2)
    assert 0 < result["load_cpu_percent"] <= 100.0 + resolution + 0.5
    check_summary(result)
    started = re.search(r"load: 1 x python hog at SCHED_OTHER nice 0 \(pids (\d+)\)", stderr)
    assert started is not None, stderr[-2000:]
    assert not pid_running(int(started[1]))


def test_reaction_refuses_a_negative_load() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "reaction", "--load", "-1"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "--load must be >= 0" in done.stderr
    assert "Traceback" not in done.stderr


def parsed(policy: str) -> Profile:
    return parse_profile(read_toml(reaction.policy_profile(policy), "test"), "test")


@pytest.mark.timeout(10)
def test_each_policy_has_its_profile() -> None:
    release, local, safe = parsed("release"), parsed("local"), parsed("safe")
    assert {o.on_twin_loss for o in release.outputs} == {TwinLossPolicy.RELEASE}
    assert release.plc_remote is not None and release.sim is not None
    assert release.sim.program is not None, "the PLC program takes the plant back"
    assert local.plc_remote is None and local.sim is not None and local.sim.program is None
    cooling = local.output(reaction.LOCAL_OUTPUT)
    assert cooling.on_twin_loss is TwinLossPolicy.LOCAL
    assert cooling.local_value == reaction.LOCAL_VALUE != reaction.AWAY_VALUE
    assert local.output("heater_power").on_twin_loss is TwinLossPolicy.HOLD
    assert {o.on_twin_loss for o in safe.outputs} == {TwinLossPolicy.SAFE}
    assert safe.twin_loss_is_hazard and not release.twin_loss_is_hazard
    for p in (release, local, safe):
        assert p.authority.return_holdoff_s == reaction.RETURN_HOLDOFF_S
    with pytest.raises(ValueError, match="unknown policy"):
        reaction.policy_profile("hold")


@pytest.mark.timeout(10)
def test_the_shed_write_of_each_policy_is_found_in_a_write_log() -> None:
    def rec(t: float, table: str, address: int, values: list[int],
            names: list[str]) -> dict[str, Any]:
        return {"seq": 0, "t": t, "unit": 1, "fc": 5 if table == "coil" else 16,
                "table": table, "address": address, "values": values, "names": names,
                "accepted": True, "error": None, "source": "modbus"}

    flag_local = rec(10.0, "coil", 1, [0], ["plc_remote"])
    assert reaction.shed_write_t([flag_local], parsed("release"), "release", 9.0) == 10.0
    assert reaction.shed_write_t([{**flag_local, "values": [1]}], parsed("release"),
                                 "release", 9.0) is None, "the takeover is not the shed"
    step = rec(10.1, "holding", 101, [210], ["cooling_valve"])
    assert reaction.shed_write_t([flag_local, step], parsed("local"), "local", 9.0) == 10.1
    safe_set = [rec(10.2, "holding", 100, [0, 1000], ["heater_power", "cooling_valve"]),
                rec(10.21, "coil", 1, [1], ["plc_remote"])]
    assert reaction.shed_write_t(safe_set, parsed("safe"), "safe", 9.0) == 10.21, \
        "the full set, complete with the flag"
    assert reaction.shed_write_t(safe_set[:1], parsed("safe"), "safe", 9.0) is None
