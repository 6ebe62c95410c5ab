"""The ``twinguard`` command line: the parser, the table of commands, the entry point.

Each subcommand is one module of this package with a handler ``def NAME(args) -> int`` and
an option adder ``options(parser)``, and one ``Command(...)`` line in :data:`COMMANDS`. To
add one: write the module (what only it needs imported inside its handler, so that building
the parser stays light) and register it here.

Exit codes and the format of problems: see the package docstring (``agent.cli``); each
command's own are its module's ``EXIT_CODES``, the epilog of its ``--help`` (and of its
actions' ``--help``), and the README's "Exit codes" table.
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
    drill,
    keys,
    playbook,
    read,
    run,
    status,
    systemd_unit,
)

__all__ = ["COMMANDS", "Command", "build_parser", "main", "subparsers"]

Handler = Callable[[argparse.Namespace], int]
Options = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, handler (whose docstring's first line is the help), the
    option adders it takes and its exit codes (the ``--help`` epilog)."""

    name: str
    handler: Handler
    options: tuple[Options, ...]
    exit_codes: str

    @property
    def help(self) -> str:
        return (self.handler.__doc__ or self.name).strip().splitlines()[0]


COMMANDS: tuple[Command, ...] = (
    Command("check", check.check, (check.options,), check.EXIT_CODES),
    Command("read", read.read, (read.options,), read.EXIT_CODES),
    Command("run", run.run, (run.options,), run.EXIT_CODES),
    Command("demo", demo.demo, (demo.options,), demo.EXIT_CODES),
    Command("systemd-unit", systemd_unit.systemd_unit, (systemd_unit.options,),
            systemd_unit.EXIT_CODES),
    Command("keys", keys.keys, (keys.options,), keys.EXIT_CODES),
    Command("config", config.config, (config.options,), config.EXIT_CODES),
    Command("audit", audit.audit, (audit.options,), audit.EXIT_CODES),
    Command("certs", certs.certs, (certs.options,), certs.EXIT_CODES),
    Command("status", status.status, (status.options,), status.EXIT_CODES),
    Command("ack", ack.ack, (ack.options,), ack.EXIT_CODES),
    Command("drill", drill.drill, (drill.options,), drill.EXIT_CODES),
    Command("playbook", playbook.playbook, (playbook.options,), playbook.EXIT_CODES),
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
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           epilog=command.exit_codes,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        for add in command.options:
            add(p)
        _epilog_below(p, command.exit_codes)
        p.set_defaults(handler=command.handler)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s subcommands (or actions), by name; empty if it has none."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse keeps them nowhere public
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _epilog_below(parser: argparse.ArgumentParser, epilog: str) -> None:
    """The command's exit codes also under each of its actions' ``--help``
    (``twinguard certs init --help``), unless an action has its own."""
    for child in subparsers(parser).values():
        if child.epilog is None:
            child.epilog = epilog
            child.formatter_class = argparse.RawDescriptionHelpFormatter
        _epilog_below(child, epilog)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``twinguard`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    return handler(args)
