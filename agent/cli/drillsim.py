"""``twinguard drill --sim``: the fault campaign on the simulated plant (``sim.drill``).

A thin door from the agent's command line to ``python -m sim drill``: the options of
``twinguard drill`` that mean something to a campaign are passed on as they are; the
campaign starts its own sim PLC, sim twin and agent (``sim.stack``), never touches a real
plant, and exits 0 only when every fault was ok (``sim.drill.cli.EXIT_CODES``). Like the
demo command, this is the one place besides ``agent.cli.demo`` that imports ``sim``.
"""

from __future__ import annotations

import argparse

from sim.drill.cli import main as sim_drill


def campaign_argv(args: argparse.Namespace) -> list[str]:
    """The ``python -m sim drill`` arguments for ``twinguard drill --sim`` ones."""
    argv = ["--faults", str(args.faults)]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    for kind in args.kind or ():
        argv += ["--kind", kind]
    if args.json:
        argv.append("--json")
    if args.output is not None:
        argv += ["-o", str(args.output)]
    if args.workdir is not None:
        argv += ["--workdir", args.workdir]
    return argv


def campaign(args: argparse.Namespace) -> int:
    """Run the campaign; its exit code."""
    return sim_drill(campaign_argv(args))
