"""``twinguard demo [--scenario NAME] [--json]``: the simulated plant and the scenarios.

The one place in ``agent`` that imports ``sim``: the demo is the simulated plant's
(``sim.demo``); this module only registers it. ``sim.demo.cli`` imports nothing but argparse
at its top, the simulated plant only when the demo runs.
"""

from __future__ import annotations

import argparse

from sim.demo import cli as demo_cli

options = demo_cli.add_options

EXIT_CODES = """exit status:
  0  at least one scenario ran and every scenario that ran passed
  1  a scenario failed, or the simulated plant could not be started
  2  bad usage, an unknown scenario name, or a --workdir holding a previous run's state"""


def demo(args: argparse.Namespace) -> int:
    """Run the whole chain of defence against the simulated plant, with figures (no hardware)."""
    return demo_cli.main(args)
