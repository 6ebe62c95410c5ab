"""``twinguard check``: exit codes and output format, in process and as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

import agent
from agent.cli.main import COMMANDS, build_parser, main
from agent.config.profile.load import list_profiles, load_profile
from agent.model.profile import TcpLink

pytestmark = pytest.mark.timeout(30)

SIM_TANK = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+): (?P<path>[^:]+): (?P<reason>.+)$")


def bad_profile(tmp_path: Path) -> Path:
    """sim-tank with three mistakes: a typo, a read-only output, an impossible timing."""
    text = (SIM_TANK.replace("led_green = 17", "led_gren = 17")
            .replace('name = "cooling_valve"\ntable = "holding"',
                     'name = "cooling_valve"\ntable = "input"')
            .replace("watchdog_deadline_s = 0.2", "watchdog_deadline_s = 1.5"))
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list_profiles())
def test_check_ok_prints_one_summary_line(name: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--profile", name]) == 0
    out, err = capsys.readouterr()
    p = load_profile(name)
    link = p.plc.link
    if isinstance(link, TcpLink):
        where = f"tcp {link.host}:{link.port}"
    else:
        where = (f"rtu {link.device} {link.baudrate} "
                 f"{link.bytesize}{link.parity.value}{link.stopbits}")
    assert err == ""
    assert out == (f"{p.source}: ok \N{EM DASH} {len(p.signals)} signals, "
                   f"{len(p.groups)} groups, {len(p.outputs)} outputs, {len(p.trips)} trips, "
                   f"{where} unit {p.plc.unit_id}\n")


def test_check_default_profile_and_tcp_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert capsys.readouterr().out.endswith(", tcp 127.0.0.1:15020 unit 1\n")
    assert main(["check", "--tcp", "192.0.2.7:1502"]) == 0
    assert capsys.readouterr().out.endswith(", tcp 192.0.2.7:1502 unit 1\n")
    assert main(["check", "--rtu", "/dev/ttyUSB0"]) == 0
    assert capsys.readouterr().out.endswith(", rtu /dev/ttyUSB0 19200 8E1 unit 1\n")


def test_check_bad_profile_exits_2_with_one_line_per_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bad_profile(tmp_path)
    assert main(["check", "--profile", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    parsed = [PROBLEM_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert {m["file"] for m in parsed if m} == {str(path)}
    assert {m["path"] for m in parsed if m} == {
        "board.led_gren", "outputs[1].table", "timing.watchdog_deadline_s"}
    assert f"{path}: outputs[1].table: input registers are read-only" in lines


def test_check_bad_override_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--tcp", "localhost:99999"]) == 2
    err = capsys.readouterr().err
    assert re.match(r"^\S+sim-tank\.toml: --tcp: port must be", err)


def test_tcp_and_rtu_together_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--tcp", "h:1", "--rtu", "/dev/x"])
    assert exc.value.code == 2


def test_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"twinguard {agent.__version__}"
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_read_is_registered_with_its_options() -> None:
    assert [c.name for c in COMMANDS][:2] == ["check", "read"]
    args = build_parser().parse_args(["read", "--profile", "x", "--tcp", "h:1", "--json"])
    assert (args.command, args.profile, args.tcp, args.rtu, args.json) == (
        "read", "x", "h:1", None, True)
    assert args.handler.__name__ == "read"


@pytest.mark.timeout(60)
def test_python_dash_m_agent_check(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "agent", "check", "--profile", "sim-tank"],
                        capture_output=True, text=True, timeout=50, check=False)
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(r"\S+sim-tank\.toml: ok \u2014 5 signals, 2 groups, 2 outputs, "
                        r"2 trips, tcp 127\.0\.0\.1:15020 unit 1\n", ok.stdout)
    path = bad_profile(tmp_path)
    bad = subprocess.run([sys.executable, "-m", "agent", "check", "--profile", str(path)],
                         capture_output=True, text=True, timeout=50, check=False)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert f"{path}: board.led_gren: unknown key (did you mean 'led_green'?)" in (
        bad.stderr.splitlines())
