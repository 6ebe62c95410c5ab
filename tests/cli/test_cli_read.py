"""``twinguard read`` as a real subprocess against the simulated PLC as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(40)

SIM_TANK = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml"


def twinguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_read_json_against_the_sim(sim_plc: SimPlcProcess) -> None:
    proc = twinguard(
        "read", "--profile", "sim-tank", "--tcp", f"127.0.0.1:{sim_plc.port}", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    state = sim_plc.control.state()
    assert list(doc) == ["signals", "plc_watchdog"]
    assert set(doc["signals"]) == {"temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b"}
    for name, entry in doc["signals"].items():
        assert set(entry) == {"raw", "value", "unit", "quality"}, name
        assert entry["quality"] == "good"
        assert isinstance(entry["raw"], list) and all(isinstance(r, int) for r in entry["raw"])
    assert doc["signals"]["temp_a"]["unit"] == "degC"
    assert len(doc["signals"]["pressure_b"]["raw"]) == 2
    assert doc["signals"]["temp_b"]["value"] == pytest.approx(state["temperature"], abs=0.5)
    assert doc["signals"]["pressure_a"]["value"] == pytest.approx(state["pressure"], abs=0.05)


def test_read_table_for_the_commissioning_engineer(sim_plc: SimPlcProcess) -> None:
    proc = twinguard("read", "--profile", "sim-tank", "--tcp", f"127.0.0.1:{sim_plc.port}")
    assert proc.returncode == 0, proc.stderr
    for text in ("temp_a", "pressure_b", "input:8", "float32 (little)", "degC", "good"):
        assert text in proc.stdout, text


def test_bad_channel_exits_1_and_says_why(sim_plc: SimPlcProcess) -> None:
    sim_plc.control.fault("dropout", signal="temp_b")
    proc = twinguard(
        "read", "--profile", "sim-tank", "--tcp", f"127.0.0.1:{sim_plc.port}", "--json"
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["signals"]["temp_b"] == {
        "raw": None,
        "value": None,
        "unit": "degC",
        "quality": "bad",
    }
    assert doc["signals"]["temp_a"]["quality"] == "good"
    assert "temp_b: modbus exception 4" in proc.stderr


def test_unreachable_plc_exits_3(sim_plc: SimPlcProcess) -> None:
    port = sim_plc.port
    sim_plc.stop()
    proc = twinguard("read", "--profile", "sim-tank", "--tcp", f"127.0.0.1:{port}", "--json")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert f"cannot reach the PLC at 127.0.0.1:{port}" in proc.stderr


def test_profile_problems_exit_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        SIM_TANK.read_text().replace(
            'name = "temp_b"\ntable = "input"\naddress = 1',
            'name = "temp_b"\ntable = "input"\nadress = 1',
        )
    )
    proc = twinguard("read", "--profile", str(bad), "--tcp", "127.0.0.1:1")
    assert proc.returncode == 2
    assert f"{bad}: signals[1]" in proc.stderr
    assert "adress" in proc.stderr


def test_read_a_profile_the_sim_has_never_been_built_for() -> None:
    """pi-modbus-tcp (a WAGO coupler map) served by the sim on loopback, --tcp on both sides."""
    with SimPlcProcess("pi-modbus-tcp") as plc:
        proc = twinguard(
            "read", "--profile", "pi-modbus-tcp", "--tcp", f"127.0.0.1:{plc.port}", "--json"
        )
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    from agent.config.profile.load import load_profile

    profile = load_profile("pi-modbus-tcp")
    assert set(doc["signals"]) == {s.name for s in profile.signals}
    assert proc.returncode == 0, proc.stderr
