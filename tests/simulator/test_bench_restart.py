"""The restart benchmark: hand-over restarts (pushed bundles) and a plain stop + start.

Behaviour and shape only: the outputs untouched and the PLC watchdog never tripped through
a hand-over, finite gaps, the documented keys. The gaps themselves are the benchmark's
report, not a test's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from agent.config.profile.load import read_toml
from agent.config.profile.parse import parse_profile
from agent.model.profile import TwinLossPolicy
from sim.bench import restart

KEYS = {"bench", "trials", "plc_timeout_ms", "handover_p50_ms", "handover_p99_ms",
        "handover_max_ms", "baseline_trials", "baseline_p50_ms", "baseline_p99_ms",
        "baseline_max_ms", "ratio_p50", "handover_output_writes", "handover_watchdog_trips",
        "baseline_watchdog_trips"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_restart_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "restart", "--trials", "2", "--baseline", "1",
         "--json"], capture_output=True, text=True, timeout=230, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    got: dict[str, Any] = json.loads(lines[0])
    assert set(got) == KEYS
    assert got["bench"] == "restart" and got["trials"] == 2 and got["baseline_trials"] == 1
    assert got["handover_output_writes"] == 0, "the outputs untouched by a hand-over"
    assert got["handover_watchdog_trips"] == 0, "the PLC watchdog never fell back"
    for key in ("handover_p50_ms", "handover_p99_ms", "handover_max_ms", "baseline_p50_ms"):
        assert isinstance(got[key], float | int) and math.isfinite(got[key]) and got[key] > 0
    assert got["handover_p50_ms"] <= got["handover_p99_ms"] <= got["handover_max_ms"]
    assert got["ratio_p50"] == pytest.approx(got["baseline_p50_ms"] / got["handover_p50_ms"],
                                             rel=0.01)
    assert done.stderr.count("trial ") == 2 and done.stderr.count("baseline ") == 1


@pytest.mark.timeout(10)
def test_restart_profile_writes_nothing_on_a_shed() -> None:
    profile = parse_profile(read_toml(restart.restart_profile(), "test"), "test")
    assert {o.on_twin_loss for o in profile.outputs} == {TwinLossPolicy.HOLD}
    assert profile.plc_remote is None and profile.sim is not None and profile.sim.program is None
    assert profile.plc_watchdog.expected_timeout_ms == restart.PLC_TIMEOUT_MS
    assert profile.plc_watchdog.heartbeat_address == restart.HB_ADDRESS


@pytest.mark.timeout(10)
def test_summary_ratio_and_percentiles() -> None:
    got = restart.summary([0.05, 0.07, 0.06], [1.2, 1.4], writes=0, trips=0, base_trips=1)
    assert set(got) == KEYS
    assert got["handover_p50_ms"] == pytest.approx(60.0)
    assert got["handover_max_ms"] == pytest.approx(70.0)
    assert got["baseline_p50_ms"] == pytest.approx(1300.0)
    assert got["ratio_p50"] == pytest.approx(1300.0 / 60.0, rel=0.01)
    assert got["baseline_watchdog_trips"] == 1
