"""``twinguard systemd-unit``: print a ``twinguard.service`` for this profile.

The devices the unit allows come from the hardware profile (serial port, hardware watchdog,
the fault LED's sysfs file); ``WatchdogSec`` is generous against the agent's own pings (at
most every 0.5 s from complete ticks) but far below a human's patience.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from agent.cli.common import (
    DEFAULT_STATE_DIR,
    EXIT_OK,
    EXIT_USAGE,
    profile_option,
    report_problems,
)
from agent.config.profile.load import load_profile
from agent.config.systemd_unit import render_unit
from agent.model.errors import ProfileError
from agent.model.profile import RtuLink, Scheduling

EXIT_CODES = """exit status:
  0  the unit was printed
  2  bad usage, a profile with problems, or a value no unit may hold (a relative path,
     a control character, a bad user name)"""


def options(parser: argparse.ArgumentParser) -> None:
    profile_option(parser)
    parser.add_argument("--config", "-c", metavar="C", default=None,
                        help="agent configuration file the unit passes to `twinguard run`")
    parser.add_argument("--state-dir", metavar="D", default=DEFAULT_STATE_DIR,
                        help=f"the agent's state directory, absolute (default "
                             f"{DEFAULT_STATE_DIR}: StateDirectory=twinguard)")
    parser.add_argument("--user", default="twinguard", help="service user (default twinguard)")
    parser.add_argument("--exec", dest="exec_start", default=None,
                        help="absolute path of the twinguard executable (default: this one)")


def watchdog_sec(deadline_s: float) -> float:
    """systemd's WatchdogSec for a profile whose native watchdog deadline is ``deadline_s``."""
    return max(5.0, round(10 * deadline_s, 1))


def systemd_unit(args: argparse.Namespace) -> int:
    """Print a systemd unit (Type=notify, WatchdogSec, Restart=always, sandboxed) for a profile."""
    try:
        profile = load_profile(args.profile)
    except ProfileError as error:
        return report_problems(error)
    ref = args.profile or "sim-tank"
    if Path(ref).is_file():
        ref = str(Path(ref).resolve())
    exec_start = args.exec_start or shutil.which("twinguard") or str(
        Path(sys.executable).with_name("twinguard"))
    board = profile.board
    serial = {d for d in (board.serial_device,) if d}
    if isinstance(profile.plc.link, RtuLink):
        serial.add(profile.plc.link.device)
    try:
        unit = render_unit(
            exec_start=str(Path(exec_start).absolute()),
            profile=ref,
            config=str(Path(args.config).absolute()) if args.config else None,
            state_dir=args.state_dir,
            watchdog_sec=watchdog_sec(profile.timing.watchdog_deadline_s),
            user=args.user,
            serial_devices=sorted(serial),
            gpio=any(p is not None for p in (board.led_green, board.led_amber, board.led_red,
                                             board.reset_button)),
            hw_watchdog=board.hw_watchdog,
            sysfs_paths=[board.fault_led] if board.fault_led else [],
            rt_priority=(profile.realtime.watchdog_priority
                         if profile.realtime.scheduling is Scheduling.FIFO else None),
            lock_memory=profile.realtime.lock_memory,
        )
    except ValueError as exc:  # a value no unit may hold: never written with a guess
        print(f"twinguard systemd-unit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(unit, end="")
    return EXIT_OK
