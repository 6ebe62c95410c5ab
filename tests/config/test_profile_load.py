"""Loading profiles from files and the shipped package; overriding the PLC connection."""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path

import pytest

from agent.config.profile.load import DEFAULT_PROFILE, list_profiles, load_profile, with_connection
from agent.model.errors import ProfileError
from agent.model.profile import Parity, RtuLink, TcpLink

pytestmark = pytest.mark.timeout(10)

SIM_TANK = (files("hw_profiles") / "sim-tank.toml").read_text(encoding="utf-8")


def one_problem(exc: pytest.ExceptionInfo[ProfileError]) -> tuple[str, str, str]:
    assert len(exc.value.problems) == 1, exc.value.problems
    p = exc.value.problems[0]
    return p.file, p.path, p.reason


def test_none_means_the_default_shipped_profile() -> None:
    assert DEFAULT_PROFILE in list_profiles()
    assert load_profile(None) == load_profile("sim-tank") == load_profile("sim-tank.toml")


def test_a_path_is_read_as_given(tmp_path: Path) -> None:
    path = tmp_path / "rig.toml"
    path.write_text(SIM_TANK.replace('port = 15020', 'port = 1502'), encoding="utf-8")
    for ref in (path, str(path)):
        profile = load_profile(ref)
        assert profile.source == str(path)
        assert profile.plc.link == TcpLink("127.0.0.1", 1502)


def test_schema_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rig.toml"
    path.write_text(SIM_TANK.replace("led_green = 17", "led_gren = 17"), encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert one_problem(exc) == (str(path), "board.led_gren",
                                "unknown key (did you mean 'led_green'?)")


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("require_native_watchdog = true\n[board\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    file, where, reason = one_problem(exc)
    assert file == str(path)
    assert where.startswith("line 2, column ")
    assert reason.startswith("invalid TOML: ")


def test_toml_error_at_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.toml"
    path.write_text("a = ", encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert one_problem(exc)[1] == "end of file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'K\xfchlung'\n".encode("latin-1"))
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert "not UTF-8" in one_problem(exc)[2]


def test_unknown_name_lists_the_shipped_profiles() -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile("sim-tnak")
    file, _, reason = one_problem(exc)
    assert file == "sim-tnak"
    assert all(name in reason for name in list_profiles())


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as exc:
        load_profile(tmp_path / "nope.toml")
    assert one_problem(exc)[2] == "no such file"


# --- with_connection -----------------------------------------------------------------------

def test_tcp_override() -> None:
    base = load_profile("sim-tank")
    moved = with_connection(base, tcp="10.0.0.5:5020")
    assert moved.plc.link == TcpLink("10.0.0.5", 5020)
    assert dataclasses.replace(moved, plc=base.plc) == base  # nothing else changed
    assert base.plc.link == TcpLink("127.0.0.1", 15020)  # the original is untouched
    assert with_connection(base, tcp="[::1]:502").plc.link == TcpLink("::1", 502)
    assert with_connection(base, tcp="plc.local").plc.link == TcpLink("plc.local", 502)
    assert with_connection(base) is base


def test_rtu_override_of_a_tcp_profile_is_19200_8e1() -> None:
    moved = with_connection(load_profile("sim-tank"), rtu="/dev/ttyUSB0")
    assert moved.plc.link == RtuLink("/dev/ttyUSB0", 19200, Parity.EVEN, 1, 8)


def test_rtu_override_keeps_the_serial_settings(tmp_path: Path) -> None:
    base = load_profile("pi4-rs485-rtu")
    assert isinstance(base.plc.link, RtuLink)
    moved = with_connection(base, rtu="/dev/ttyUSB1")
    assert moved.plc.link == dataclasses.replace(base.plc.link, device="/dev/ttyUSB1")


@pytest.mark.parametrize(("tcp", "rtu", "path", "fragment"), [
    ("host:0", None, "--tcp", "between 1 and 65535"),
    ("host:http", None, "--tcp", "between 1 and 65535"),
    ("a:b:c", None, "--tcp", "expected HOST:PORT"),
    ("", None, "--tcp", "expected HOST:PORT"),
    (None, "ttyUSB0", "--rtu", "serial device path"),
    ("h:1", "/dev/ttyUSB0", "--rtu", "not both"),
])
def test_bad_overrides(tcp: str | None, rtu: str | None, path: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as exc:
        with_connection(load_profile("sim-tank"), tcp=tcp, rtu=rtu)
    _, where, reason = one_problem(exc)
    assert where == path
    assert fragment in reason
