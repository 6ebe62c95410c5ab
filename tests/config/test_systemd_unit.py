"""The rendered systemd unit: structure always, and `systemd-analyze verify` where present."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agent.config.systemd_unit import quote_arg, render_unit

# keys that systemd accumulates when repeated; every other key must appear once
MULTI = {"DeviceAllow", "ReadWritePaths", "Environment", "Wants", "After"}


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """A strict little unit parser: sections of key -> values, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            assert line[1:-1] not in sections, f"duplicate section {line}"
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and key.isidentifier(), f"bad line {line!r}"
        current[key].append(value)
    return sections


def full_unit(exe: str = "/usr/bin/twinguard") -> str:
    """Every option, real-time ones included (a profile's [realtime] defaults)."""
    return render_unit(
        exec_start=exe,
        profile="/etc/twinguard/sim tank.toml",
        config="/etc/twinguard/agent.toml",
        state_dir="/var/lib/twinguard",
        watchdog_sec=2.5,
        serial_devices=["/dev/serial0"],
        hw_watchdog="/dev/watchdog",
        sysfs_paths=["/sys/class/leds/led0/brightness"],
        rt_priority=45,
        lock_memory=True,
    )


def one(section: dict[str, list[str]], key: str) -> str:
    assert len(section[key]) == 1, f"{key}: {section[key]}"
    return section[key][0]


def test_required_keys_and_no_conflicting_duplicates() -> None:
    unit = parse(full_unit())
    assert set(unit) == {"Unit", "Service", "Install"}
    for section in unit.values():
        for key, values in section.items():
            if key not in MULTI:
                assert len(values) == 1, f"{key} given {len(values)} times"
            assert len(values) == len(set(values)), f"{key} repeats a value"
    svc = unit["Service"]
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "2500ms",
        "Restart": "always",
        "RestartSec": "1s",
        "User": "twinguard",
        "StateDirectory": "twinguard",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
        "SupplementaryGroups": "dialout gpio",
    }
    for key, value in expect.items():
        assert one(svc, key) == value, key
    assert "PrivateDevices" not in svc  # it would hide serial, GPIO and watchdog
    assert one(unit["Unit"], "StartLimitIntervalSec") == "0"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert one(svc, "ExecStart") == (
        '/usr/bin/twinguard run --profile "/etc/twinguard/sim tank.toml" '
        "--config /etc/twinguard/agent.toml"
    )
    # exactly the devices the profile names: its serial port, the header's GPIO chip, its
    # watchdog; no device class (char-ttyUSB ...) and no /dev/gpiomem
    assert svc["DeviceAllow"] == ["/dev/serial0 rw", "/dev/gpiochip0 rw", "/dev/gpiochip4 rw",
                                  "/dev/watchdog rw"]
    assert svc["ReadWritePaths"] == ["-/sys/class/leds/led0/brightness"]


def test_real_time_is_granted_by_limits_with_the_sandbox_kept() -> None:
    svc = parse(full_unit())["Service"]
    assert one(svc, "LimitRTPRIO") == "45"  # up to the watchdog thread's priority
    assert one(svc, "LimitMEMLOCK") == "256M"
    # no capability for it, and nothing that would forbid it or run the whole process RT
    assert one(svc, "CapabilityBoundingSet") == "" and one(svc, "AmbientCapabilities") == ""
    for absent in ("RestrictRealtime", "CPUSchedulingPolicy", "CPUSchedulingPriority",
                   "LimitRTTIME"):
        assert absent not in svc, absent
    assert one(svc, "SystemCallFilter") == "@system-service"


@pytest.mark.parametrize(("rt_priority", "lock_memory", "present"), [
    (None, True, {"LimitMEMLOCK"}),  # scheduling = "other"
    (30, False, {"LimitRTPRIO"}),  # lock_memory = false
    (None, False, set()),
])
def test_real_time_lines_only_for_what_the_profile_asks(
        rt_priority: int | None, lock_memory: bool, present: set[str]) -> None:
    text = render_unit(exec_start="/usr/bin/twinguard", profile="/etc/p.toml", config=None,
                       state_dir="/var/lib/twinguard", watchdog_sec=2.0,
                       rt_priority=rt_priority, lock_memory=lock_memory)
    svc = parse(text)["Service"]
    assert {k for k in ("LimitRTPRIO", "LimitMEMLOCK") if k in svc} == present
    if rt_priority is not None:
        assert one(svc, "LimitRTPRIO") == str(rt_priority)
    if not present:
        assert "real time" not in text  # no comment left over either


def test_the_command_renders_the_profiles_realtime_table(tmp_path: Path) -> None:
    """`twinguard systemd-unit` reads [realtime] from the profile: FIFO asks LimitRTPRIO at
    the watchdog's priority, "other" and lock_memory = false leave the lines out."""
    base = (Path(__file__).parents[2] / "hw_profiles" / "sim-tank.toml").read_text()
    cases = {"": {"LimitRTPRIO": ["45"], "LimitMEMLOCK": ["256M"]},
             "[realtime]\nloop_priority = 20\nwatchdog_priority = 30\n":
                 {"LimitRTPRIO": ["30"], "LimitMEMLOCK": ["256M"]},
             '[realtime]\nscheduling = "other"\nlock_memory = false\n': {}}
    for i, (table, want) in enumerate(cases.items()):
        profile = tmp_path / f"p{i}.toml"
        profile.write_text(f"{base}\n{table}")
        done = subprocess.run(
            [sys.executable, "-m", "agent", "systemd-unit", "--profile", str(profile),
             "--exec", "/usr/bin/twinguard"],
            capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        svc = parse(done.stdout)["Service"]
        assert {k: svc[k] for k in ("LimitRTPRIO", "LimitMEMLOCK") if k in svc} == want


def test_minimal_unit_allows_no_device_and_no_group() -> None:
    svc = parse(
        render_unit(
            exec_start="/opt/tg/bin/twinguard",
            profile="/etc/twinguard/p.toml",
            config=None,
            state_dir="/srv/twinguard",
            watchdog_sec=3,
            gpio=False,
        )
    )["Service"]
    assert one(svc, "DevicePolicy") == "closed"
    assert "DeviceAllow" not in svc
    assert "SupplementaryGroups" not in svc
    assert "StateDirectory" not in svc
    assert svc["ReadWritePaths"] == ["/srv/twinguard"]  # outside /var/lib: must exist
    assert one(svc, "ExecStart") == "/opt/tg/bin/twinguard run --profile /etc/twinguard/p.toml"
    assert one(svc, "WatchdogSec") == "3s"


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("/etc/a.toml", "/etc/a.toml"),
        ("/etc/my profile.toml", '"/etc/my profile.toml"'),
        ("/etc/100%.toml", "/etc/100%%.toml"),
        ("/etc/$HOME.toml", '"/etc/$$HOME.toml"'),
        ('/etc/"q".toml', '"/etc/\\"q\\".toml"'),
    ],
)
def test_quote_arg(arg: str, quoted: str) -> None:
    assert quote_arg(arg) == quoted


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"exec_start": "twinguard"}, "exec_start"),
        ({"exec_start": "/usr/bin/../bin/twinguard"}, "exec_start"),
        ({"profile": "/etc/p.toml\nExecStartPre=/bin/sh"}, "control characters"),
        ({"state_dir": "var/lib/tg"}, "state_dir"),
        ({"state_dir": "/"}, "state_dir"),
        ({"watchdog_sec": 0}, "watchdog_sec"),
        ({"user": "root; rm"}, "user"),
        ({"serial_devices": ["ttyUSB0"]}, "serial device"),
        ({"sysfs_paths": ["/sys/class/leds/led 0"]}, "sysfs path"),
        ({"rt_priority": 0}, "rt_priority"),
    ],
)
def test_bad_arguments_are_refused(kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "exec_start": "/usr/bin/twinguard",
        "profile": "/etc/p.toml",
        "config": None,
        "state_dir": "/var/lib/twinguard",
        "watchdog_sec": 2.0,
    }
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        render_unit(**args)  # type: ignore[arg-type]


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.timeout(30)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    path = tmp_path / "twinguard.service"
    path.write_text(full_unit(exe=sys.executable))  # verify checks the binary exists
    bad = tmp_path / "broken.service"
    bad.write_text(full_unit(exe=sys.executable).replace("WatchdogSec=2500ms", "WatchdogSec=x"))

    def verify(unit: Path) -> str:
        done = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=25,
            check=False,
        )
        return done.stdout + done.stderr if done.returncode else done.stderr

    # systemd 252 exits 0 on "unknown key"/"failed to parse" warnings; they name the file
    assert str(path) not in verify(path), verify(path)
    assert str(bad) in verify(bad)  # the check itself can fail
