"""The footprint's floor (``sim.bench.floor``) runs the agent's I/O pattern against a real sim
PLC and sim twin, as its own process, and what it did is read from outside: the PLC's write
log, the twin's records, ``/proc``. No CPU figure is asserted (speed belongs in the bench)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from agent.config.profile.load import load_profile
from agent.io.twin.settings import to_ms
from sim.bench import floor, footprint
from sim.bench.native import heartbeat_writes
from sim.plc.harness import HarnessError
from sim.stack import DEVICE_ID, Stack

pytestmark = pytest.mark.timeout(60)

FLOOR_KEYS = {"rss_mb", "hwm_mb", "cpu_percent", "ticks_per_s", "window_s", "threads",
              "overruns", "heartbeats_read"}
RATE_HZ = 20.0


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def test_floor_ticks_at_the_plc_and_greets_the_twin() -> None:
    with Stack(start_agent=False) as stack:
        profile = load_profile(stack.profile_path)
        # the rate is asserted here, from the write log, with a margin for a loaded machine
        got = floor.measure(stack, profile, RATE_HZ, settle_s=0.2, window_s=1.0, tolerance=0.5)
        log = stack.plc.write_log()
        hellos = stack.twin.stats()["agent_hellos"]
    assert set(got) == FLOOR_KEYS
    assert all(finite(v) for v in got.values()), got
    assert got["rss_mb"] > 0 and got["window_s"] >= 0.9
    assert got["threads"] == 1  # one asyncio loop, nothing else
    assert got["heartbeats_read"] >= 1
    # every tick wrote the next heartbeat value and the PLC acknowledged it
    wd = profile.plc_watchdog
    beats = heartbeat_writes(log, wd.heartbeat_address, wd.unit_id)
    values = [r["values"][0] for r in beats]
    assert values == list(range(1, len(values) + 1)), values
    span = beats[-1]["t"] - beats[0]["t"]
    assert span > 1.0 and 0.6 * RATE_HZ <= (len(beats) - 1) / span <= 1.4 * RATE_HZ
    assert 0.6 * RATE_HZ <= got["ticks_per_s"] <= 1.4 * RATE_HZ
    # the agent's hello: its device id, version and the profile's heartbeat timing
    assert len(hellos) == 1
    _, _, device, version, timeout_ms, late_ms = hellos[0]
    assert (device, version) == (DEVICE_ID, __version__)
    assert (timeout_ms, late_ms) == (to_ms(profile.timing.heartbeat_timeout_s),
                                     to_ms(profile.timing.heartbeat_late_s))


def test_floor_without_a_plc_fails_with_the_reason() -> None:
    with Stack(start_agent=False) as stack:
        profile = load_profile(stack.profile_path)
        stack.plc.stop()
        with pytest.raises(HarnessError) as err:
            floor.measure(stack, profile, RATE_HZ, settle_s=0.0, window_s=1.0)
    text = str(err.value)
    assert f"floor: FloorFailed: cannot connect to the PLC at 127.0.0.1:{stack.plc.port}" \
        in text and "Traceback" not in text, text


def test_floor_program_refuses_a_bad_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"rate_hz": 10}')
    done = subprocess.run([sys.executable, "-m", "sim.bench.floorprog", str(plan)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("floor: ValueError: not a floor plan"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("ticks", "ok"), [(20, True), (22, True), (18, True),
                                           (15, False), (25, False), (0, False)])
def test_check_rate_allows_ten_percent_or_two_ticks(ticks: int, ok: bool) -> None:
    if ok:
        floor.check_rate(ticks, 10.0, 2.0)
    else:
        with pytest.raises(floor.FloorError, match="asked 10 Hz"):
            floor.check_rate(ticks, 10.0, 2.0)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_footprint_reports_the_floor_beside_the_agent() -> None:
    # the floor's rate is checked loosely: a loaded machine must not fail the test
    got = footprint.run(settle_s=1.0, window_10hz_s=2.0, window_100hz_s=2.0,
                        floor_tolerance=0.5)
    for rate in (10, 100):
        agent, base = got[f"cpu_percent_{rate}hz"], got[f"floor_cpu_percent_{rate}hz"]
        assert finite(base) and finite(got[f"floor_rss_mb_{rate}hz"]), got
        assert got[f"floor_ticks_per_s_{rate}hz"] == pytest.approx(rate, rel=0.5)
        ratio = got[f"cpu_ratio_{rate}hz"]
        if base > 0:
            assert ratio == pytest.approx(agent / base, abs=0.01)
        else:
            assert ratio is None
