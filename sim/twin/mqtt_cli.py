"""``python -m sim mqtt-twin --server HOST:PORT [--server ...] --pki DIR --key FILE
[--host-id H] [--group G] [--rate HZ] [--control PATH] [--ack-every N] [--no-ack]
[--ack-period S] [--no-heartbeats] [--push BUNDLE --push-device D]``:
the simulated twin through brokers.

``--pki DIR``: a :class:`sim.broker.pki.FleetPki` directory (the broker's; the
``twin-host`` client certificate is made there if missing). ``--key FILE``: the twin's
Ed25519 signing key (PEM), made if missing, its public key written to ``FILE.pub`` (base64,
as ``[fleet] twin_keys`` takes it).
``--no-heartbeats``: start with heartbeats stopped (a forger: STATE online, no proof).

Prints one line ``ready mqtt-twin servers=H:P,... epoch=N key=BASE64 control=PATH`` once
connected to every server, then runs until SIGINT/SIGTERM (a clean stop publishes STATE
offline).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.broker.acl import HOST_USER
from sim.broker.pki import FleetPki
from sim.twin.cli import _hostport, serve_until_signalled
from sim.twin.control import ControlServer
from sim.twin.mqtt import MqttTwin, load_key
from sim.twin.mqtt_control import MQTT_COMMANDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim mqtt-twin",
                                description="simulated twin over MQTT 5 (Sparkplug host)")
    p.add_argument("--server", type=_hostport, action="append", required=True,
                   help="HOST:PORT of a broker (repeat for more)")
    p.add_argument("--pki", type=Path, required=True, help="the fleet PKI directory")
    p.add_argument("--key", type=Path, required=True, help="Ed25519 signing key (PEM)")
    p.add_argument("--host-id", default="twin", help="Sparkplug Primary Host id")
    p.add_argument("--group", default="plant", help="Sparkplug group id")
    p.add_argument("--client-cn", default=HOST_USER, help="client certificate CN")
    p.add_argument("--rate", type=float, default=10.0, help="heartbeats per second")
    p.add_argument("--control", type=Path, default=None, help="Unix socket for faults/stats")
    p.add_argument("--ack-every", type=int, default=1, help="ack telemetry every N records")
    p.add_argument("--no-ack", action="store_true", help="never move the ack forward")
    p.add_argument("--ack-period", type=float, default=1.0,
                   help="seconds between two acks (echoes) to a device at most")
    p.add_argument("--no-heartbeats", action="store_true", help="start with heartbeats off")
    p.add_argument("--push", type=Path, default=None, metavar="BUNDLE",
                   help="publish this signed bundle retained on --push-device's config topic")
    p.add_argument("--push-device", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def _serve(args: argparse.Namespace) -> None:
    pki = FleetPki(args.pki)
    twin = MqttTwin(args.server, pki.client_context(args.client_cn), load_key(args.key),
                    host_id=args.host_id, group=args.group, rate_hz=args.rate,
                    client_id=args.client_cn, ack_period_s=args.ack_period)
    twin.set_ack(max(1, args.ack_every), not args.no_ack)
    if args.no_heartbeats:
        twin.stop_heartbeats()
    await twin.start()
    if args.push is not None:
        twin.push(args.push.read_bytes(), args.push_device)
    control = ControlServer(twin, args.control, MQTT_COMMANDS) if args.control else None
    servers = ",".join(f"{h}:{p}" for h, p in args.server)
    await serve_until_signalled(
        twin, control, f"ready mqtt-twin servers={servers} epoch={twin.epoch} "
                       f"key={twin.public_key} control={args.control or '-'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``python -m sim mqtt-twin``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.rate > 0:
        print("error: --rate must be > 0", file=sys.stderr)
        return 2
    if args.push is not None and args.push_device is None:
        print("error: --push needs --push-device", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args))
    except (TimeoutError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
