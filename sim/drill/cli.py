"""``python -m sim drill --faults N [--seed S] [--json] [-o FILE.json|FILE.html] ...``

The randomized fault campaign against the simulated plant (:mod:`sim.drill`). For the lead's
``twinguard drill --sim``: :func:`add_options` adds the options to a parser and :func:`run`
runs them; :func:`main` is ``python -m sim drill``. Only argparse is imported at the top.

The seed (drawn when not given) is printed first on stderr and recorded in the report; one
line per fault follows on stderr. When a fault was not ok, the plant's files (the agent's
log, the sim PLC's write log, ...) are kept and their directory printed. ``--json`` prints
exactly one JSON object on stdout (:mod:`sim.drill.report`); ``-o`` writes the report to a
file, as JSON for ``.json`` and as a self-contained HTML page otherwise (``.html``);
repeatable. ``--kind NAME`` (repeatable)
plays exactly those kinds in that order instead of drawing them.

Exit codes: 0 every fault ok (0 missed, 0 late, 0 false); 1 a fault was not ok, or the plant
could not be started; 2 bad usage (an unknown kind, a bad count, an output that cannot be
written).
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

EXIT_CODES = {0: "every fault ok: 0 missed, 0 late, 0 false",
              1: "a fault missed, late or false, or the plant could not be started",
              2: "bad usage"}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faults", type=int, default=200, metavar="N",
                        help="how many faults to draw (default 200)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="the seed that reproduces the sequence (default: drawn, printed)")
    parser.add_argument("--kind", action="append", default=None, metavar="NAME",
                        help="play exactly this kind (repeatable, in order) instead of drawing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                        help="write the report: FILE.json as JSON, else a self-contained "
                             "HTML page (repeatable)")
    parser.add_argument("--workdir", metavar="DIR", default=None,
                        help="where the plant keeps its files (default: a temporary directory, "
                             "removed if every fault was ok, kept and named otherwise)")
    parser.add_argument("--no-realtime", action="store_true",
                        help="the agent asks nothing of the scheduler (default: the profile's "
                             "[realtime], as in production)")


def _check_outputs(paths: list[str]) -> str | None:
    for p in paths:
        parent = Path(p).resolve().parent
        if not parent.is_dir():
            return f"{p}: directory {parent} does not exist"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the campaign ``args`` describe; the exit code."""
    from sim.drill.campaign import run_campaign  # noqa: PLC0415 - lazy: the plant only here
    from sim.drill.faults import BY_NAME  # noqa: PLC0415
    from sim.drill.report import FaultResult, dumps, html  # noqa: PLC0415

    if args.faults < 1 and not args.kind:
        print("drill: --faults must be at least 1 (or name kinds with --kind)", file=sys.stderr)
        return 2
    unknown = [k for k in args.kind or () if k not in BY_NAME]
    if unknown:
        print(f"drill: unknown kind {', '.join(unknown)}; one of {', '.join(BY_NAME)}",
              file=sys.stderr)
        return 2
    problem = _check_outputs(args.output)
    if problem:
        print(f"drill: {problem}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"drill: seed {seed}", file=sys.stderr)

    def progress(r: FaultResult) -> None:
        rx = "" if r.reaction_ms is None else f" {r.reaction_ms:+.1f} ms"
        print(f"drill: #{r.index:<3} {r.kind:<22} {r.verdict:<6} seen {r.seen}{rx}"
              + (f" ({'; '.join(r.notes)})" if r.notes else ""), file=sys.stderr)

    workdir = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="twinguard-drill-"))
    try:
        report = run_campaign(args.faults, seed, kinds=args.kind, workdir=workdir,
                              realtime=False if args.no_realtime else None, progress=progress)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"drill: the simulated plant could not be run: {exc} (its files: {workdir})",
              file=sys.stderr)
        return 1
    if not args.workdir:
        if report.passed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # the agent's log, the PLC's write log: what the faults that failed left
            print(f"drill: kept the plant's files in {workdir}", file=sys.stderr)
    for p in args.output:
        Path(p).write_text(dumps(report) if p.endswith(".json") else html(report))
        print(f"drill: wrote {p}", file=sys.stderr)
    if args.json:
        sys.stdout.write(dumps(report))
    t = report.totals.get("all", {})
    print(f"drill: seed {seed}: {t.get('count', 0)} faults, {t.get('ok', 0)} ok, "
          f"{t.get('missed', 0)} missed, {t.get('late', 0)} late, {t.get('false', 0)} false "
          f"in {report.wall_s:g} s", file=sys.stderr)
    return 0 if report.passed else 1


def main(argv: list[str]) -> int:
    """``python -m sim drill ...``"""
    parser = argparse.ArgumentParser(
        prog="python -m sim drill", description="a randomized fault campaign against the "
        "simulated plant, judged at the sim PLC",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    add_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args)
