"""``twinguard check --profile P [--tcp H:P | --rtu DEV]``: validate a hardware profile.

Exit 0 and a one-line summary, or exit 2 and one ``FILE: KEY.PATH: reason`` line per problem.
A profile that requires the native watchdog where it would not be used here (not built, or
``TWINGUARD_WATCHDOG`` says otherwise) gets a warning on stderr: ``twinguard run`` would
refuse it on this machine.
"""

from __future__ import annotations

import argparse
import sys

import firmware_bridge
from agent.cli.common import (
    EXIT_OK,
    describe_link,
    profile_from_args,
    profile_options,
    report_problems,
)
from agent.model.errors import ProfileError

EXIT_CODES = """exit status:
  0  the profile is valid (a warning on stderr if this machine lacks the native watchdog it needs)
  2  bad usage or the profile has problems (one FILE: KEY.PATH: reason line each)"""

options = profile_options


def check(args: argparse.Namespace) -> int:
    """Validate a hardware profile and print a one-line summary."""
    try:
        profile = profile_from_args(args)
    except ProfileError as error:
        return report_problems(error)
    print(f"{profile.source}: ok \N{EM DASH} {len(profile.signals)} signals, "
          f"{len(profile.groups)} groups, {len(profile.outputs)} outputs, "
          f"{len(profile.trips)} trips, {describe_link(profile)}")
    problem = firmware_bridge.native_problem()
    if problem is not None and profile.require_native_watchdog:
        print(f"warning: {profile.source} sets require_native_watchdog = true, but {problem}: "
              "`twinguard run` refuses to start with it on this machine", file=sys.stderr)
    return EXIT_OK
