"""``python -m sim plc``: run the simulated PLC from a hardware profile.

    python -m sim plc --profile sim-tank (--tcp HOST:PORT | --rtu DEVICE)
                      [--control PATH] [--write-log PATH] [--seed N] [--watchdog-ms N]
                      [--strict-map]

``--tcp`` port 0 picks a free port (the "ready" line says which). ``--rtu`` uses the profile's
serial settings, or 19200 8E1 for a TCP profile (``agent.config.profile.load.with_connection``, the
same rule as the agent's). Prints one line starting with ``ready`` to stdout when serving;
SIGTERM/SIGINT stop it cleanly. Exit status 2 for bad arguments or profile. ``--strict-map``
makes every undeclared address answer exception 2 (default: undeclared addresses between a
table's lowest and highest declared one read as 0, like a real PLC's process image).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from agent.config.profile.load import load_profile, with_connection
from agent.model.errors import ProfileError
from agent.model.profile import Profile, RtuLink
from sim.plc.plc import SimPlc
from sim.plc.serve import run
from sim.plc.writelog import WriteLog

log = logging.getLogger(__name__)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0..65535), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim plc", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="sim-tank", help="profile name or TOML file")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=_host_port, metavar="HOST:PORT")
    where.add_argument("--rtu", metavar="DEVICE", help="serial device, e.g. a socat pty")
    p.add_argument("--control", metavar="PATH", help="Unix socket for the control channel")
    p.add_argument("--write-log", metavar="PATH", help="append every write as a JSON line")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--watchdog-ms", type=int, default=None, metavar="N",
                   help="PLC watchdog timeout (default: the profile's; 0 disables)")  # fmt: skip
    p.add_argument("--strict-map", action="store_true",
                   help="every undeclared address answers exception 2 (default: undeclared "
                        "addresses inside a table's declared span read as 0)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    if args.watchdog_ms is not None and not 0 <= args.watchdog_ms <= 0xFFFF:
        print("--watchdog-ms must be 0..65535", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile)
        if args.rtu is not None:
            profile = with_connection(profile, rtu=args.rtu)
    except ProfileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    rtu = profile.plc.link if args.rtu is not None else None
    assert rtu is None or isinstance(rtu, RtuLink)
    try:
        asyncio.run(_main(args, profile, rtu))
    except (OSError, RuntimeError) as exc:
        print(f"sim plc: {exc}", file=sys.stderr)
        return 1
    return 0


async def _main(args: argparse.Namespace, profile: Profile, rtu: RtuLink | None) -> None:
    plc = SimPlc(
        profile,
        seed=args.seed,
        watchdog_ms=args.watchdog_ms,
        write_log=WriteLog(args.write_log),
        answer_foreign_units=rtu is None,
        strict_map=args.strict_map,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(where: str) -> None:
        print(f"ready {where} pid={os.getpid()}", flush=True)

    await run(plc, tcp=args.tcp, rtu=rtu, control=args.control, stop=stop, on_ready=ready)
    log.info("stopped")
