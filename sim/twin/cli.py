"""``python -m sim twin --listen HOST:PORT --pki DIR [--rate HZ] [--control PATH]
[--script FILE.json] [--ack-every N] [--no-ack] [--push BUNDLE]``.

``--push BUNDLE`` sends that signed configuration bundle (``twinguard config sign``) once,
to the first agent that connects, right after its hello; the agent's ``config_result``
replies are in ``stats`` (``config_results``). The control command ``push`` sends another.

Prints one line ``ready twin listen=HOST:PORT epoch=N control=PATH`` once serving, then
runs until SIGINT/SIGTERM. If ``--pki DIR`` holds none of the demo PKI files they are
created first (``agent.io.pki.init_pki``, device id from ``--device-id``); a partial PKI is
an error (nothing is overwritten).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from agent.io.pki import PkiPaths, init_pki
from sim.twin.control import ControlServer
from sim.twin.server import SimTwin


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim twin", description="simulated twin")
    p.add_argument("--listen", type=_hostport, default=("127.0.0.1", 15021), help="HOST:PORT")
    p.add_argument("--pki", type=Path, required=True, help="demo PKI directory")
    p.add_argument("--rate", type=float, default=10.0, help="heartbeats per second")
    p.add_argument("--control", type=Path, default=None, help="Unix socket for faults/stats")
    p.add_argument("--twin-id", default="sim-twin")
    p.add_argument("--device-id", default="sim-tank-01", help="CN if a PKI is created")
    p.add_argument("--script", type=Path, default=None,
                   help="JSON file: a list of {at_s, output, value, valid_s[, id]}")
    p.add_argument("--ack-every", type=int, default=1, help="ack telemetry every N records")
    p.add_argument("--no-ack", action="store_true", help="never acknowledge telemetry")
    p.add_argument("--push", type=Path, default=None, metavar="BUNDLE",
                   help="push this signed config bundle to the first agent that connects")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _pki(directory: Path, device_id: str) -> PkiPaths:
    paths = PkiPaths.in_dir(directory)
    present = [p for p in paths.all() if p.exists()]
    if not present:
        print(f"creating demo PKI in {directory}", file=sys.stderr)
        return init_pki(directory, device_id=device_id)
    missing = [str(p) for p in paths.all() if not p.exists()]
    if missing:
        raise SystemExit(f"error: incomplete PKI in {directory}: missing {', '.join(missing)}")
    return paths


async def _serve(args: argparse.Namespace) -> None:
    paths = _pki(args.pki, args.device_id)
    host, port = args.listen
    twin = SimTwin.from_pki(paths, host=host, port=port, rate_hz=args.rate, twin_id=args.twin_id)
    twin.set_ack(max(1, args.ack_every), not args.no_ack)
    if args.push is not None:
        twin.push_on_hello = args.push.read_bytes()
    await twin.start()
    if args.script is not None:
        twin.script(json.loads(args.script.read_text()))
    control = ControlServer(twin, args.control) if args.control else None
    await serve_until_signalled(
        twin, control,
        f"ready twin listen={host}:{twin.port} epoch={twin.epoch} control={args.control or '-'}")


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


async def serve_until_signalled(twin: _Stoppable, control: ControlServer | None,
                                ready_line: str) -> None:
    """Start ``control``, print ``ready_line`` on stdout, run until SIGINT/SIGTERM, then
    stop the control channel and ``twin`` (both twins' CLIs)."""
    if control is not None:
        await control.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(ready_line, flush=True)
    try:
        await stop.wait()
    finally:
        if control is not None:
            await control.stop()
        await twin.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``sim/__main__.py`` calls it for ``python -m sim twin``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.rate > 0:
        print("error: --rate must be > 0", file=sys.stderr)
        return 2
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
