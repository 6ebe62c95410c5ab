"""The ``twinguard`` command line.

Each subcommand is one handler ``def name(args: argparse.Namespace) -> int`` plus one
``Command(...)`` line in ``COMMANDS``; shared options (``--profile``, ``--tcp``/``--rtu``,
``--json``) are small functions that add them to a parser. To add ``run``, ``status`` and
the rest: write the handler (import its module lazily inside it, so ``twinguard check``
stays fast and works where optional parts are missing) and register it.

Exit codes: 0 success; 1 the command failed at run time; 2 bad usage or a bad profile
(argparse's own convention for usage errors). Problems go to stderr, one per line, as
``FILE: KEY.PATH: reason``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import agent
from agent import auditcmd, certscmd, configcmd, keyscmd
from agent.config.profile.load import load_profile, with_connection
from agent.model.errors import ProfileError
from agent.model.profile import Profile, RtuLink, TcpLink

__all__ = ["COMMANDS", "Command", "build_parser", "describe_link", "main", "profile_from_args"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]
Options = Callable[[argparse.ArgumentParser], None]


# --- shared options ----------------------------------------------------------------------

def profile_options(parser: argparse.ArgumentParser) -> None:
    """``--profile P`` and the mutually exclusive ``--tcp HOST:PORT`` / ``--rtu DEVICE``."""
    parser.add_argument("--profile", "-p", metavar="P", default=None,
                        help="profile file or shipped profile name (default: sim-tank)")
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--tcp", metavar="HOST:PORT", default=None,
                      help="override the profile's PLC connection with Modbus TCP")
    link.add_argument("--rtu", metavar="DEVICE", default=None,
                      help="override the PLC connection with Modbus RTU on DEVICE "
                           "(keeps the profile's serial settings, else 19200 8E1)")


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` with ``--tcp``/``--rtu`` applied.

    Raises ``ProfileError`` (all problems) for a bad profile or override.
    """
    profile = load_profile(args.profile)
    return with_connection(profile, tcp=args.tcp, rtu=args.rtu)


def describe_link(profile: Profile) -> str:
    """``tcp HOST:PORT unit U`` or ``rtu DEVICE 19200 8E1 unit U``."""
    link = profile.plc.link
    if isinstance(link, TcpLink):
        host = f"[{link.host}]" if ":" in link.host else link.host
        where = f"tcp {host}:{link.port}"
    else:
        assert isinstance(link, RtuLink)
        where = (f"rtu {link.device} {link.baudrate} "
                 f"{link.bytesize}{link.parity.value}{link.stopbits}")
    return f"{where} unit {profile.plc.unit_id}"


def report_problems(error: ProfileError) -> int:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    return EXIT_USAGE


# --- handlers ----------------------------------------------------------------------------

def check(args: argparse.Namespace) -> int:
    """Validate a hardware profile and print a one-line summary."""
    try:
        profile = profile_from_args(args)
    except ProfileError as error:
        return report_problems(error)
    print(f"{profile.source}: ok \N{EM DASH} {len(profile.signals)} signals, "
          f"{len(profile.groups)} groups, {len(profile.outputs)} outputs, "
          f"{len(profile.trips)} trips, {describe_link(profile)}")
    return EXIT_OK


def read(args: argparse.Namespace) -> int:
    """Read every signal of the profile once from the PLC and print it."""
    try:
        from agent import readcmd  # noqa: PLC0415 - lazy: the Modbus stack is not needed by check
    except ModuleNotFoundError as exc:
        if exc.name != "agent.readcmd":
            raise
        print("twinguard read: not available in this build (agent.readcmd is missing)",
              file=sys.stderr)
        return EXIT_FAILED
    result: int = readcmd.main(args)
    return result


def run(args: argparse.Namespace) -> int:
    """Run the agent beside the PLC until SIGTERM (writes the safe state on the way out)."""
    from agent import runcmd  # noqa: PLC0415 - lazy: the full runtime only when running

    return runcmd.main(args)


def run_options(parser: argparse.ArgumentParser) -> None:
    """``--config C`` and ``--state-dir D`` (see agent.runcmd)."""
    parser.add_argument("--config", "-c", metavar="C", default=None,
                        help="agent configuration (TOML); without it: shadow mode, no twin")
    parser.add_argument("--state-dir", metavar="D", default=None,
                        help="where the agent keeps its state (default /var/lib/twinguard, "
                             "or $STATE_DIRECTORY under systemd)")


def demo(args: argparse.Namespace) -> int:
    """Run the whole chain of defence against the simulated plant, with figures (no hardware)."""
    from sim.demo import cli as demo_cli  # noqa: PLC0415 - lazy: the sim only when demoing

    return demo_cli.main(args)


def demo_options(parser: argparse.ArgumentParser) -> None:
    from sim.demo import cli as demo_cli  # noqa: PLC0415

    demo_cli.add_options(parser)


def status(args: argparse.Namespace) -> int:
    """Show the running agent's state, votes, counters and recent events."""
    from agent import statuscmd  # noqa: PLC0415 - lazy: rich only when showing status

    return statuscmd.status_main(args)


def ack(args: argparse.Namespace) -> int:
    """Acknowledge a latched FAILSAFE (the console equivalent of the reset button)."""
    from agent import statuscmd  # noqa: PLC0415 - lazy, as status

    return statuscmd.ack_main(args)


def state_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--state-dir D``: where the running agent's status socket is (see agent.statuscmd)."""
    parser.add_argument("--state-dir", type=Path, default=None, metavar="D",
                        help="the agent's state directory (default as `twinguard run`)")


def systemd_unit(args: argparse.Namespace) -> int:
    """Print a systemd unit (Type=notify, WatchdogSec, Restart=always, sandboxed) for a profile."""
    from agent import unitcmd  # noqa: PLC0415

    return unitcmd.main(args)


def unit_options(parser: argparse.ArgumentParser) -> None:
    from agent import unitcmd  # noqa: PLC0415 - argparse only

    unitcmd.add_options(parser)


# --- registry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """One subcommand: its name, handler (whose docstring's first line is the help) and
    the option adders it takes."""

    name: str
    handler: Handler
    options: tuple[Options, ...] = ()

    @property
    def help(self) -> str:
        return (self.handler.__doc__ or self.name).strip().splitlines()[0]


COMMANDS: tuple[Command, ...] = (
    Command("check", check, (profile_options,)),
    Command("read", read, (profile_options, json_option)),
    Command("run", run, (profile_options, run_options)),
    Command("demo", demo, (demo_options,)),
    Command("systemd-unit", systemd_unit, (unit_options,)),
    Command("keys", keyscmd.main, (keyscmd.options,)),
    Command("config", configcmd.main, (configcmd.options,)),
    Command("audit", auditcmd.main, (auditcmd.options,)),
    Command("certs", certscmd.main, (certscmd.options,)),
    Command("status", status, (state_dir_option, json_option)),
    Command("ack", ack, (state_dir_option,)),
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinguard",
        description="Fail-safe control agent beside a PLC, supervised by a digital twin.")
    parser.add_argument("--version", action="version", version=f"twinguard {agent.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        for add in command.options:
            add(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``twinguard`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    return handler(args)
