"""``twinguard run --profile P [--config C] [--state-dir D]``: run the agent until stopped.

Loads the profile and the configuration, refuses to start without the watchdog the profile
needs (or with a bad fault-injection or watchdog environment), then runs the agent's loop
(``agent.runtime.loop.Runtime``) until SIGTERM/SIGINT, which sheds the twin's authority on
the way out (a healthy plant is not touched). Exit 0 after a clean stop (also after handing
over to a successor); 2 when it refuses to start on bad input (a profile or configuration
problem, a bad environment variable, another agent on the state directory); 1 when something
the profile or configuration names is missing or unusable on this machine (a device, a
certificate file, the state directory), the cause and the fix on stderr; ``EXIT_RESTART``
(75) when a restart could not be handed over (systemd then restarts the agent).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import ssl
import sys

from agent.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    profile_from_args,
    profile_options,
    report_problems,
)
from agent.cli.common import state_dir as resolve_state_dir
from agent.config.agentconfig import load_config
from agent.model.errors import (
    ConfigError,
    DeviceUnavailable,
    KeyFileExposed,
    ProfileError,
    StatusSocketInUse,
)

EXIT_CODES = """exit status:
  0  stopped cleanly (SIGTERM/SIGINT, or handed over to its successor)
  1  something the profile or configuration names is missing or unusable on this machine
     (a device, a certificate file, the state directory, the native watchdog): cause and fix
  2  bad usage, profile, configuration or environment variable; another agent on the state
     directory
  75 a restart could not be handed over (systemd restarts the agent)"""


def options(parser: argparse.ArgumentParser) -> None:
    """``--profile``/``--tcp``/``--rtu``, ``--config C`` and ``--state-dir D``."""
    profile_options(parser)
    parser.add_argument("--config", "-c", metavar="C", default=None,
                        help="agent configuration (TOML); without it: shadow mode, no twin")
    parser.add_argument("--state-dir", metavar="D", default=None,
                        help="where the agent keeps its state (default /var/lib/twinguard, "
                             "or $STATE_DIRECTORY under systemd)")


def run(args: argparse.Namespace) -> int:
    """Run the agent beside the PLC until SIGTERM (exit codes: the module docstring)."""
    # the whole agent only when running: building the parser and the other commands load none
    # of it (asyncio, ssl, gpiozero, the watchdog)
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
    # [realtime]: memory locked and the main thread at SCHED_FIFO after the imports and before
    # the agent makes its first thread (each inherits the loop's policy); refused: one WARNING
    from agent.io.realtime import Realtime  # noqa: PLC0415

    realtime = Realtime(profile.realtime, profile.source)
    realtime.start()

    async def serve() -> int:
        # the Modbus transports bind to the running loop: build the runtime inside it
        try:
            runtime = Runtime(profile, config, state_dir, watchdog, realtime)
        except ConfigError as error:  # the stored configuration does not fit the profile
            return report_problems(error)
        except KeyFileExposed as error:  # before OSError: it is one, and names its file
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_USAGE
        except DeviceUnavailable as error:  # a file the configuration names
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_FAILED
        except ssl.SSLError as error:
            print(f"twinguard run: refusing to start: the [twin] certificates or key in "
                  f"{config.source} cannot be loaded: {error}", file=sys.stderr)
            return EXIT_FAILED
        except (OSError, sqlite3.Error) as error:
            print(f"twinguard run: refusing to start: state directory {state_dir}: {error}",
                  file=sys.stderr)
            return EXIT_FAILED
        try:
            return await runtime.run()
        except StatusSocketInUse as error:
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_USAGE
        except DeviceUnavailable as error:  # a device the profile names
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return EXIT_FAILED

    return asyncio.run(serve())
