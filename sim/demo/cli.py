"""``twinguard demo``: run the scenarios against the simulated plant and show the figures.

Registered by ``agent/cli/demo.py`` (its ``Command("demo", ...)`` line in
``agent/cli/main.py``, exit codes in ``demo.EXIT_CODES``): its handler ``demo(args)`` calls
:func:`main` and its option adder is :func:`add_options`. This module imports only argparse
at the top (the simulated plant is imported inside :func:`main`), so the options cost the
other commands nothing.

Output: the live view (or plain lines with ``--no-live`` / when stdout is not a TTY), then a
table of the scenarios with their reaction measured at the sim PLC, and the path of the
timeline picture. With ``--json`` stdout carries exactly one JSON object::

    {"passed": true,
     "scenarios": [{"name": "shadow", "passed": true, "reaction_ms": null, "figures": {},
                    "detail": "0 output writes, ..."},
                   {"name": "active-twin-outage", "passed": true, "reaction_ms": 3.1,
                    "figures": {"band_c": 0.4, "max_step": 0.9, ...}, "detail": "..."}, ...],
     "skipped": [], "timeline": "/abs/path/timeline.svg"}

(``reaction_ms`` is each scenario's headline time, ``figures`` what else it measured at the
sim PLC - names and units in the docstrings of ``sim.demo.scenarios``, ``sim.demo.outages``,
``sim.demo.pushes`` and ``sim.demo.restart`` - and ``detail`` the verdict line of the table.)

(``skipped`` lists ``{"name", "reason"}`` for a scenario that could not run here, e.g.
``python-hang`` against an agent without its fault-injection hook.) A ``--workdir`` holding a
previous run's agent state is refused (exit 2).

and everything for humans goes to stderr. Exit 0 iff at least one scenario ran and every
scenario that ran passed; 1 otherwise (also when the simulated plant cannot be started);
2 for an unknown scenario name.
"""

from __future__ import annotations

import argparse

DEFAULT_OUT = "twinguard-demo"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` options (see the module docstring)."""
    parser.add_argument("--scenario", action="append", metavar="NAME", default=None,
                        help="run only this scenario (repeatable; default: all, in order)")
    parser.add_argument("--json", action="store_true",
                        help="print only a JSON summary on stdout (human output to stderr)")
    parser.add_argument("--workdir", metavar="DIR", default=None,
                        help="where the simulated plant keeps its files (default: a fresh "
                             "temporary directory, removed afterwards)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"where the timeline picture goes (default: ./{DEFAULT_OUT})")
    parser.add_argument("--no-live", action="store_true",
                        help="plain log lines instead of the live view")
    parser.add_argument("--quick", action="store_true",
                        help="shortened twin outages (4 s and 5 s instead of 20 s and 30 s) "
                             "and interludes, for tests")


def main(args: argparse.Namespace) -> int:
    """Run the demo as ``args`` (from :func:`add_options`) say; returns the exit code."""
    from sim.demo import run  # noqa: PLC0415 - lazy: the sim stack only when demoing

    return run.main(args)
