"""``twinguard read`` for a first contact, as mbpoll/modpoll users expect (issue 13).

Each test runs ``twinguard read`` as a real process against the simulated PLC as a real
process (TCP, or RTU through a socat pty pair): the overrides ``--unit``, ``--baud``,
``--parity``, ``--stopbits``, ``--timeout`` change what goes on the wire (a unit the PLC does
not serve answers exception 2; a pty that refuses parity opens only with ``--parity N``),
``--raw`` shows every register in hex and decimal, and the last line sums up the BAD
readings with their reasons. Asserted: the exit code, the named cause, no traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim.plc.harness import SimPlcProcess, SocatPair, pty_accepts_parity

pytestmark = pytest.mark.timeout(60)

SIGNALS = ("temp_a", "temp_b", "temp_c", "pressure_a", "pressure_b")
COUPLER = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-coupler.toml"


def read(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "agent", "read", *args], capture_output=True,
                          text=True, timeout=30, check=False)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_unit_override_reads_from_that_unit_and_sums_up_what_is_bad(
        sim_plc: SimPlcProcess) -> None:
    tcp = f"127.0.0.1:{sim_plc.port}"
    other = read("--tcp", tcp, "--unit", "7")
    assert other.returncode == 1, other.stderr
    assert f"PLC at tcp {tcp} unit 7" in other.stdout
    assert "u7 input:0" in other.stdout  # the signals moved to the unit asked for
    # the sim PLC serves unit 1 only: unit 7 answers exception 2, one reason for all five
    assert last_line(other.stdout).startswith(
        "5 of 5 signals BAD: temp_a, temp_b, temp_c, pressure_a, pressure_b (modbus "
        "exception 2")
    assert "timeout register (holding 201, unit 7) could not be read" in other.stdout
    same = read("--tcp", tcp, "--unit", "1", "--timeout", "0.4")
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"PLC at tcp {tcp} unit 1, timeout 0.4 s" in same.stdout
    assert last_line(same.stdout) == "all 5 signals GOOD"


def test_the_summary_names_each_bad_signal_with_its_reason(sim_plc: SimPlcProcess) -> None:
    sim_plc.control.fault("dropout", signal="temp_b")
    tcp = f"127.0.0.1:{sim_plc.port}"
    table = read("--tcp", tcp)
    as_json = read("--tcp", tcp, "--json")
    assert table.returncode == 1 and as_json.returncode == 1
    line = "1 of 5 signals BAD: temp_b (modbus exception 4"
    assert last_line(table.stdout).startswith(line), table.stdout
    assert any(x.startswith(line) for x in as_json.stderr.splitlines()), as_json.stderr


def test_raw_shows_every_register_in_hex_and_decimal(sim_plc: SimPlcProcess) -> None:
    plain = read("--tcp", f"127.0.0.1:{sim_plc.port}")
    raw = read("--tcp", f"127.0.0.1:{sim_plc.port}", "--raw")
    assert raw.returncode == 0, raw.stdout + raw.stderr
    cells = re.findall(r"\b([0-9A-F]{4})=(\d+)\b", raw.stdout)
    # 3 int16 + 2 float32 signals: 7 registers, each hex and its decimal value
    assert len(cells) == 7, raw.stdout
    assert all(int(hx, 16) == int(dec) for hx, dec in cells), cells
    assert not re.search(r"\b[0-9A-F]{4}=\d+", plain.stdout)  # hex only without --raw


@pytest.mark.parametrize(("args", "option", "reason"), [
    (("--unit", "248"), "--unit", "expected an integer from 0 to 247, got '248'"),
    (("--unit", "two"), "--unit", "expected an integer from 0 to 247"),
    (("--timeout", "0"), "--timeout", "more than 0 and at most 60, got '0'"),
    (("--timeout", "nan"), "--timeout", "got 'nan'"),
    (("--timeout", "1e9"), "--timeout", "at most 60"),
    (("--baud", "9600"), "--baud", "only for a serial link: add --rtu DEVICE"),
    (("--parity", "N"), "--parity", "only for a serial link"),
    (("--stopbits", "2"), "--stopbits", "only for a serial link"),
    (("--rtu", "/dev/ttyUSB0", "--baud", "12345"), "--baud", "'12345' is not a standard rate"),
    (("--rtu", "/dev/ttyUSB0", "--parity", "X"), "--parity", "expected N, E or O"),
    (("--rtu", "/dev/ttyUSB0", "--stopbits", "3"), "--stopbits", "from 1 to 2, got '3'"),
    (("--rtu", "/dev/ttyUSB0", "--unit", "0"), "--unit", "0 is the RTU broadcast address"),
])
def test_a_bad_override_is_exit_2_naming_the_option(args: tuple[str, ...], option: str,
                                                    reason: str) -> None:
    done = read("--profile", "sim-tank", *args)  # checked before anything is opened
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert re.search(rf"sim-tank\.toml: {re.escape(option)}: .*{re.escape(reason)}",
                     done.stderr), done.stderr


def test_two_bad_overrides_are_both_named() -> None:
    done = read("--unit", "x", "--timeout", "-1")
    assert done.returncode == 2
    assert ": --unit: " in done.stderr and ": --timeout: " in done.stderr


def test_rtu_serial_overrides_reach_the_port(tmp_path: Path) -> None:
    # the sim PLC on a pty, no parity, 2 stop bits (every pty accepts that)
    text = COUPLER.read_text(encoding="utf-8")
    tcp = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
    assert tcp in text
    profile = tmp_path / "coupler-rtu-n2.toml"
    profile.write_text(text.replace(tcp, 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\n'
                                         'parity = "N"\n'), encoding="utf-8")
    with SocatPair() as pair, SimPlcProcess(str(profile), rtu=pair.a):
        refuses = not pty_accepts_parity(pair.b)
        default = read("--profile", "sim-tank", "--rtu", pair.b)  # 19200 8E1
        none = read("--profile", "sim-tank", "--rtu", pair.b, "--parity", "n")
        every = read("--profile", "sim-tank", "--rtu", pair.b, "--baud", "9600", "--parity",
                     "N", "--stopbits", "1", "--unit", "1", "--timeout", "0.5")
    if refuses:  # this kernel refuses parity on ptys: only the override opens the port
        assert default.returncode == 3, default.stdout
        assert "19200 8E1 refused" in default.stderr
    assert none.returncode == 0, none.stdout + none.stderr
    assert f"PLC at rtu {pair.b} 19200 8N2 unit 1, timeout 0.1 s" in none.stdout
    assert last_line(none.stdout) == "all 5 signals GOOD"
    assert every.returncode == 0, every.stdout + every.stderr
    assert f"PLC at rtu {pair.b} 9600 8N1 unit 1, timeout 0.5 s" in every.stdout
    assert last_line(every.stdout) == "all 5 signals GOOD"
