"""The harness itself: restart on the same port, kill, clean stop, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pymodbus.client import ModbusTcpClient

from sim.plc.harness import SimPlcProcess

pytestmark = pytest.mark.timeout(30)


def _write_heater(port: int, raw: int) -> None:
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    assert c.connect()
    assert not c.write_register(100, raw).isError()
    c.close()


def test_restart_keeps_port_and_appends_to_the_write_log() -> None:
    with SimPlcProcess("sim-coupler") as plc:  # no program moving the heater
        port, pid = plc.port, plc.pid
        _write_heater(port, 100)
        plc.restart()
        assert plc.port == port and plc.pid != pid
        assert plc.control.state()["outputs"]["heater_power"] == 0.0  # powered up safe again
        _write_heater(port, 200)
        assert [r["values"] for r in plc.write_log()] == [[100], [200]]
        assert plc.stop() == 0  # SIGTERM: clean exit
        assert not plc.control_path.exists()


def test_write_log_is_read_incrementally_and_matches_the_file() -> None:
    """Polled between writes, write_log() equals a full parse of the file each time; a line
    still being written is left for a later call."""
    with SimPlcProcess("sim-coupler") as plc:
        def whole_file() -> list[dict[str, object]]:
            lines = plc.write_log_path.read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]

        assert plc.write_log() == []
        for raw in (10, 20, 30):
            _write_heater(plc.port, raw)
            assert plc.write_log() == whole_file()
        assert [r["values"] for r in plc.write_log()] == [[10], [20], [30]]
        plc.stop()
        last = json.dumps({**whole_file()[-1], "seq": 3, "values": [40]})
        with plc.write_log_path.open("a") as f:
            f.write(last[:20])  # half a line: the writer is in the middle of it
        assert len(plc.write_log()) == 3
        with plc.write_log_path.open("a") as f:
            f.write(last[20:] + "\n")
        assert [r["values"] for r in plc.write_log()] == [[10], [20], [30], [40]]


def test_kill_is_a_power_cut() -> None:
    with SimPlcProcess() as plc:
        plc.kill()
        assert plc.proc is not None and plc.proc.returncode == -9
        with pytest.raises(OSError):
            plc.control.state()


@pytest.mark.parametrize(
    "args",
    [
        ["--profile", "no-such-profile", "--tcp", "127.0.0.1:0"],
        ["--tcp", "127.0.0.1:99999"],
        ["--tcp", "127.0.0.1:0", "--watchdog-ms", "-5"],
        ["--rtu", "relative/path"],
        [],
    ],
)
def test_cli_rejects_bad_arguments(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sim", "plc", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip()


def test_sim_main_lists_subcommands() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sim"], check=False, capture_output=True, text=True, timeout=20
    )
    assert run.returncode == 2 and "plc" in run.stderr and "twin" in run.stderr
