"""``twinguard run``: load the profile and configuration, then run the agent until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from pathlib import Path

from agent.config.agentconfig import load_config
from agent.model.errors import ConfigError, ProfileError, StatusSocketInUse

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/twinguard"


def main(args: argparse.Namespace) -> int:
    """Run the agent: returns 0 after a clean stop, 2 on a bad profile or configuration."""
    from agent.cli import profile_from_args  # noqa: PLC0415 - cli imports this module lazily
    from agent.runtime.loop import Runtime  # noqa: PLC0415 - the full stack only when running

    try:
        profile = profile_from_args(args)
        config = load_config(args.config)
    except (ProfileError, ConfigError) as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    try:  # native guard (agent.guard): refuse to start without the watchdog the profile needs
        from agent.io.guard import exit_code_from_env  # noqa: PLC0415
        from agent.runtime.faultinject import settings_from_env  # noqa: PLC0415
        from firmware_bridge import load_watchdog  # noqa: PLC0415 - may raise on a bad env

        watchdog = load_watchdog(profile.require_native_watchdog)
        exit_code_from_env(os.environ)
        settings_from_env(os.environ)
    except (RuntimeError, ValueError, ImportError) as error:
        print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir or os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)

    async def serve() -> int:
        # the Modbus transports bind to the running loop: build the runtime inside it
        try:
            runtime = Runtime(profile, config, state_dir, watchdog)
        except ConfigError as error:  # the stored configuration does not fit the profile
            for problem in error.problems:
                print(problem, file=sys.stderr)
            return 2
        except (OSError, sqlite3.Error) as error:
            print(f"twinguard run: refusing to start: state directory {state_dir}: {error}",
                  file=sys.stderr)
            return 2
        try:
            return await runtime.run()
        except StatusSocketInUse as error:
            print(f"twinguard run: refusing to start: {error}", file=sys.stderr)
            return 2

    return asyncio.run(serve())
