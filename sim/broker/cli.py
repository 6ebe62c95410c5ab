"""``python -m sim.broker {fetch,where,examples}``.

* ``fetch [--cache DIR] [--force]``: make mosquitto available (a system one on PATH, else
  Debian's package unpacked into the cache, :mod:`sim.broker.binary`); prints where it is.
  Exit 1 with one line saying what is missing when it cannot (CI carries on; the broker
  tests then skip).
* ``where``: the binary :func:`~sim.broker.binary.locate` finds, exit 1 if none.
* ``examples [--check] [--dir DIR]``: write the documented example files
  (``sim/broker/examples/``); ``--check`` exits 1 naming those that differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.broker.binary import BrokerUnavailable, fetch, locate
from sim.broker.conf import example_files

EXAMPLES = Path(__file__).resolve().parent / "examples"


def _examples(directory: Path, check: bool) -> int:
    stale = []
    for name, text in example_files().items():
        path = directory / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(name)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"sim.broker examples: out of date in {directory}: {', '.join(stale)} "
              "(run python -m sim.broker examples)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.broker",
                                     description="the mosquitto broker for fleet tests")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="make mosquitto available (Debian's package)")
    p_fetch.add_argument("--cache", type=Path, help="cache directory (default: see docs)")
    p_fetch.add_argument("--force", action="store_true", help="download again")
    sub.add_parser("where", help="print the mosquitto binary that would be used")
    p_ex = sub.add_parser("examples", help="write the example ACL and configurations")
    p_ex.add_argument("--check", action="store_true", help="only check they are current")
    p_ex.add_argument("--dir", type=Path, default=EXAMPLES)
    args = parser.parse_args(argv)
    if args.cmd == "examples":
        return _examples(args.dir, args.check)
    if args.cmd == "where":
        found = locate()
        if found is None:
            print("sim.broker where: no mosquitto (run python -m sim.broker fetch)",
                  file=sys.stderr)
            return 1
        print(found.path)
        return 0
    try:
        got = fetch(args.cache, force=args.force)
    except BrokerUnavailable as exc:
        print(f"sim.broker fetch: no mosquitto: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sim.broker fetch: no mosquitto: {exc}", file=sys.stderr)
        return 1
    print(f"mosquitto {got.version}: {got.path} ({got.source})")
    return 0
