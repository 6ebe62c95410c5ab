"""The tools a commissioning engineer uses around the agent say what they do (issue 13).

``certs init`` writes the files the configuration docs name and names ``--force`` when it
refuses to overwrite; ``certs check`` prints whom each certificate names, its issuer and
expiry; ``config verify`` lists what a promotion changes; times in ``config verify``,
``certs check`` and ``audit show`` are ISO 8601 UTC; every option of every subcommand has a
help line and every command's ``--help`` ends with its exit codes. Each command runs as a
user runs it (a subprocess): exit code, the named cause, no traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bundle_kit import Kit
from cryptography import x509

from agent.cli.main import COMMANDS, build_parser, subparsers
from agent.config import agentconfig
from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile
from agent.io.audit import AuditKind, AuditLog
from agent.model.profile import RtuLink

pytestmark = pytest.mark.timeout(60)

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z"


def twinguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=30, check=False, cwd=cwd)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


# --- help -------------------------------------------------------------------------------

def walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found = [(path, a) for a in parser._actions
             if not isinstance(a, argparse._SubParsersAction)]
    for name, child in subparsers(parser).items():
        found += walk(child, f"{path} {name}")
    return found


def test_every_option_of_every_subcommand_has_a_help_line() -> None:
    actions = walk(build_parser(), "twinguard")
    assert len(actions) > 60  # the walk reached the actions' own options
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in actions
               if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert missing == []


def test_every_command_help_ends_with_its_exit_codes() -> None:
    parsers = subparsers(build_parser())
    assert set(parsers) == {c.name for c in COMMANDS}
    for command in COMMANDS:
        text = parsers[command.name].format_help()
        assert text.rstrip().endswith(command.exit_codes.rstrip()), command.name
        codes = re.findall(r"(?m)^  (\d+) ", command.exit_codes)
        assert codes and codes[0] == "0", command.name
        for child in subparsers(parsers[command.name]).values():  # certs init --help, ...
            assert command.exit_codes in child.format_help(), child.prog


# --- certs --------------------------------------------------------------------------------

def test_certs_init_writes_the_files_the_config_docs_name(tmp_path: Path) -> None:
    # the [twin] example of the configuration's docs, as a file beside the pki directory
    doc = agentconfig.__doc__ or ""
    block = doc[doc.index("    [twin]"):doc.index("    [telemetry]")]
    twin = "\n".join(line.strip() for line in block.splitlines()
                     if re.match(r"\s+(\[twin\]|host|port|server_name|ca|cert|key|crl) ", line))
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "tank-01"\n{twin}\n', encoding="utf-8")
    parsed = load_config(config).twin
    assert parsed is not None and parsed.crl_file is not None
    init = twinguard("certs", "init", "pki", "--device-id", "tank-01", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    revoke = twinguard("certs", "revoke", "pki", "pki/twin.crt", cwd=tmp_path)
    assert revoke.returncode == 0, revoke.stderr
    for path in (parsed.ca_file, parsed.cert_file, parsed.key_file, parsed.crl_file):
        assert path.is_file(), f"{path} named by the docs, not written by certs init/revoke"


def test_certs_init_refuses_to_overwrite_and_names_force(tmp_path: Path) -> None:
    assert twinguard("certs", "init", str(tmp_path / "pki")).returncode == 0
    ca = tmp_path / "pki" / "ca.crt"
    first = ca.read_bytes()
    again = twinguard("certs", "init", str(tmp_path / "pki"))
    assert again.returncode == 1
    assert f"{ca} exists" in again.stderr and "pass --force" in again.stderr
    assert "overwrite=True" not in again.stderr
    assert ca.read_bytes() == first
    forced = twinguard("certs", "init", str(tmp_path / "pki"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert ca.read_bytes() != first  # a new CA


def test_certs_check_names_subject_issuer_and_expiry(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert twinguard("certs", "init", str(pki), "--device-id", "tank-01",
                     "--days", "30").returncode == 0
    done = twinguard("certs", "check", str(pki / "device.crt"), "--ca", str(pki / "ca.crt"))
    assert done.returncode == 0, done.stdout + done.stderr
    cert = x509.load_pem_x509_certificate((pki / "device.crt").read_bytes())
    expires = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (f"certificate {pki / 'device.crt'}: CN=tank-01, issuer CN=twinguard demo CA, "
            f"expires {expires}") in done.stdout
    assert re.search(rf"CA {re.escape(str(pki / 'ca.crt'))}: CN=twinguard demo CA, issuer "
                     rf"CN=twinguard demo CA, expires {ISO_UTC}", done.stdout), done.stdout
    assert done.stdout.rstrip().endswith(f"{pki / 'device.crt'}: ok")
    other = tmp_path / "other"
    assert twinguard("certs", "init", str(other)).returncode == 0
    wrong = twinguard("certs", "check", str(pki / "device.crt"), "--ca", str(other / "ca.crt"))
    assert wrong.returncode == 1
    assert f"not issued by {other / 'ca.crt'}" in wrong.stdout


# --- config verify, audit show -------------------------------------------------------------

def test_config_verify_lists_what_a_promotion_changes_with_iso_times(tmp_path: Path) -> None:
    kit = Kit.new()
    in_force = tmp_path / "agent.toml"
    in_force.write_text(kit.config(), encoding="utf-8")
    promoted = kit.config("\n[telemetry]\nevery_n_polls = 5\n", mode="active")
    issued = int(time.time())
    bundle = tmp_path / "v7.bundle"
    bundle.write_bytes(kit.bundle(promoted, 7, ("ap1", "ap2", "op1"), issued=issued))
    done = twinguard("config", "verify", str(bundle), "--config", str(in_force))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "  mode: shadow -> active" in lines
    assert "  telemetry.every_n_polls: (not set) -> 5" in lines
    assert "it changes 2:" in done.stdout and "(none)" not in done.stdout
    when = dt.datetime.fromtimestamp(issued, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"issued {when}, expires " in done.stdout
    assert re.search(rf"expires {ISO_UTC}, signed by", done.stdout), done.stdout
    same = tmp_path / "v8.bundle"
    same.write_bytes(kit.bundle(kit.config(), 8, ("saf1",), issued=issued))
    nothing = twinguard("config", "verify", str(same), "--config", str(in_force))
    assert nothing.returncode == 0, nothing.stdout
    assert "it changes nothing" in nothing.stdout


def test_audit_show_times_are_iso_utc(tmp_path: Path) -> None:
    at = 1_700_000_000.25
    with AuditLog(tmp_path / "audit.sqlite", clock=lambda: at) as log:
        log.append(AuditKind.ACK, source="button")
    done = twinguard("audit", "show", "--file", str(tmp_path / "audit.sqlite"))
    assert done.returncode == 0, done.stderr
    assert "  2023-11-14T22:13:20.250Z  ack " in done.stdout, done.stdout
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all, just bytes" * 40)
    bad = twinguard("audit", "show", "--file", str(junk))
    assert bad.returncode == 1
    assert f"{junk}: not an audit log" in bad.stderr


# --- systemd-unit ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pi4-rs485-rtu", "pi-modbus-tcp"])
def test_the_unit_allows_exactly_the_devices_the_profile_names(name: str,
                                                               tmp_path: Path) -> None:
    profile = load_profile(name)
    done = twinguard("systemd-unit", "--profile", name, "--config", "/etc/twinguard/agent.toml",
                     "--exec", sys.executable)
    assert done.returncode == 0, done.stderr
    allowed = [line.removeprefix("DeviceAllow=") for line in done.stdout.splitlines()
               if line.startswith("DeviceAllow=")]
    board, link = profile.board, profile.plc.link
    named = {d for d in (board.serial_device, board.hw_watchdog,
                         link.device if isinstance(link, RtuLink) else None) if d}
    gpio = {"/dev/gpiochip0", "/dev/gpiochip4"} if board.led_green is not None else set()
    assert sorted(a.removesuffix(" rw") for a in allowed) == sorted(named | gpio)
    assert not any(a.startswith("char-") or "gpiomem" in a for a in allowed), allowed
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # the unit still passes systemd's own check
        unit = tmp_path / "twinguard.service"
        unit.write_text(done.stdout, encoding="utf-8")
        verify = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                                text=True, timeout=25, check=False)
        assert str(unit) not in verify.stdout + verify.stderr, verify.stderr


def test_a_value_no_unit_may_hold_is_exit_2() -> None:
    done = twinguard("systemd-unit", "--state-dir", "var/lib/twinguard")
    assert done.returncode == 2 and done.stdout == ""
    assert "state_dir must be a normalized absolute path: 'var/lib/twinguard'" in done.stderr


# --- the README -------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_exit_codes_match_every_command_help() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Exit codes")
    section = text[start:text.index("\n## ", start)]
    rows = {m["cmd"]: [c.strip() for c in m["cells"].split(" | ")]
            for m in re.finditer(r"(?m)^\| `(?P<cmd>[a-z-]+)` \| (?P<cells>.*) \|$", section)}
    assert set(rows) == {c.name for c in COMMANDS}
    commands = text[text.index("## Commands"):text.index("### Exit codes")]
    for command in COMMANDS:
        assert f"`twinguard {command.name}" in commands, command.name
        documented = {str(code) for code, cell in enumerate(rows[command.name]) if cell != "—"}
        if f"`{command.name}` also exits " in section:
            documented |= set(re.findall(rf"`{command.name}` also exits (\d+)", section))
        in_help = set(re.findall(r"(?m)^  (\d+) ", command.exit_codes))
        assert documented == in_help, command.name
