"""The ``twinguard`` command line: the parser, the table of commands, the entry point.

Each subcommand is one module of this package with a handler ``def NAME(args) -> int`` and
an option adder ``options(parser)``, and one ``Command(...)`` line in :data:`COMMANDS`. To
add one: write the module (what only it needs imported inside its handler, so that building
the parser stays light) and register it here.

Exit codes and the format of problems: see the package docstring (``agent.cli``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import agent
from agent.cli import (
    ack,
    audit,
    certs,
    check,
    config,
    demo,
    keys,
    read,
    run,
    status,
    systemd_unit,
)

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Options = Callable[[argparse.ArgumentParser], None]


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
    Command("check", check.check, (check.options,)),
    Command("read", read.read, (read.options,)),
    Command("run", run.run, (run.options,)),
    Command("demo", demo.demo, (demo.options,)),
    Command("systemd-unit", systemd_unit.systemd_unit, (systemd_unit.options,)),
    Command("keys", keys.keys, (keys.options,)),
    Command("config", config.config, (config.options,)),
    Command("audit", audit.audit, (audit.options,)),
    Command("certs", certs.certs, (certs.options,)),
    Command("status", status.status, (status.options,)),
    Command("ack", ack.ack, (ack.options,)),
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
