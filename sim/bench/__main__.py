"""``python -m sim.bench NAME [options]``: run one benchmark (or ``all``) and print JSON.

Each benchmark is a module of this package with ``main(argv) -> int``. ``fuzz`` is not a
benchmark but lives here with the other long runs outside CI: it explores the property
tests with a random seed and many more examples (``sim.bench.fuzz``); ``all`` leaves it out,
and ``safety-case`` (``sim.bench.safety_case``), which runs nothing: it tabulates the latest
drill campaign's figures per hazard.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = ("reaction", "restart", "poll", "footprint", "floor", "spool", "fleet", "all",
           "fuzz", "safety-case")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHES:
        print(f"usage: python -m sim.bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"sim.bench.{args[0].replace('-', '_')}")
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
