"""``twinguard run --profile P [--config C] [--state-dir D]``: run the agent until stopped.

Loads the profile and the configuration, refuses to start without the watchdog the profile
needs (or with a bad fault-injection or watchdog environment), then runs the agent's loop
(``agent.runtime.loop.Runtime``) until SIGTERM/SIGINT, which writes the safe state on the way
out. Exit 0 after a clean stop, 2 when it refuses to start (each reason on stderr); the
runtime's own exit code otherwise (``EXIT_RESTART`` after a configuration that needs one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys

from agent.cli.common import EXIT_USAGE, profile_from_args, profile_options, report_problems
from agent.cli.common import state_dir as resolve_state_dir
from agent.config.agentconfig import load_config
from agent.model.errors import ConfigError, KeyFileExposed, ProfileError, StatusSocketInUse


def options(parser: argparse.ArgumentParser) -> None:
    """``--profile``/``--tcp``/``--rtu``, ``--config C`` and ``--state-dir D``."""
    profile_options(parser)
    parser.add_argument("--config", "-c", metavar="C", default=None,
                        help="agent configuration (TOML); without it: shadow mode, no twin")
    parser.add_argument("--state-dir", metavar="D", default=None,
                        help="where the agent keeps its state (default /var/lib/twinguard, "
                             "or $STATE_DIRECTORY under systemd)")


def run(args: argparse.Namespace) -> int:
    """Run the agent beside the PLC until SIGTERM (writes the safe state on the way out)."""
    # the whole agent only when running: building the parser and the other commands load none
    # of it (asyncio, pymodbus, ssl, gpiozero, the watchdog)
    import asyncio  # noqa: PLC0415

    from agent.runtime.loop import Runtime  # noqa: PLC0415

    try:
        profile = profile_from_args(args)
        config = load_config(args.config)
    except (ProfileError, ConfigError) as error:
        return report_problems(error)
    try:  # native guard (agent.io.guard): refuse to start without the watchdog the profile needs
        from agent.io.guard import exit_code_from_env  # noqa: PLC0415
        from agent.runtime.faultinject import settings_from_env  # noqa: PLC0415
        from firmware_bridge import load_watchdog  # noqa: PLC0415 - may raise on a bad env

        watchdog = load_watchdog(profile.require_native_watchdog)
        exit_code_from_env(os.environ)
        settings_from_env(os.environ)
    except (RuntimeError, ValueError, ImportError) as error:
        print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
        return EXIT_USAGE
    state_dir = resolve_state_dir(args.state_dir)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)

    async def serve() -> int:
        # the Modbus transports bind to the running loop: build the runtime inside it
        try:
            runtime = Runtime(profile, config, state_dir, watchdog)
        except ConfigError as error:  # the stored configuration does not fit the profile
            return report_problems(error)
        except KeyFileExposed as error:  # before OSError: it is one, and names its file
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, sqlite3.Error) as error:
            print(f"twinguard run: refusing to start: state directory {state_dir}: {error}",
                  file=sys.stderr)
            return EXIT_USAGE
        try:
            return await runtime.run()
        except StatusSocketInUse as error:
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_USAGE

    return asyncio.run(serve())
