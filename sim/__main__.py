"""``python -m sim SUBCOMMAND ...``: the simulated plant.

Subcommands are looked up in ``SUBCOMMANDS`` (name -> "module:function"), imported lazily;
each function takes ``argv`` (the arguments after the subcommand) and returns an exit code.
Engineer F's simulated twin plugs in as ``twin`` -> ``sim.twin.cli:main``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

SUBCOMMANDS: dict[str, str] = {
    "plc": "sim.plc.cli:main",
    "twin": "sim.twin.cli:main",
    "mqtt-twin": "sim.twin.mqtt_cli:main",
    "drill": "sim.drill.cli:main",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SUBCOMMANDS:
        print(f"usage: python -m sim {{{','.join(SUBCOMMANDS)}}} ...", file=sys.stderr)
        return 2
    module, _, func = SUBCOMMANDS[args[0]].partition(":")
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return entry(args[1:])


if __name__ == "__main__":
    sys.exit(main())
