"""What the commands share: options, the state directory, exit codes, error reporting."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config.profile.load import load_profile, with_connection
from agent.io.status_client import socket_path
from agent.model.errors import AgentNotRunning, ConfigError, ProfileError, ProtocolError
from agent.model.profile import Profile, RtuLink, TcpLink

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3  # the PLC (read) or the agent (status, ack) cannot be reached

DEFAULT_STATE_DIR = "/var/lib/twinguard"


# --- options -----------------------------------------------------------------------------

def profile_option(parser: argparse.ArgumentParser) -> None:
    """``--profile P``: a profile file or the name of a shipped profile."""
    parser.add_argument("--profile", "-p", metavar="P", default=None,
                        help="profile file or shipped profile name (default: sim-tank)")


def profile_options(parser: argparse.ArgumentParser) -> None:
    """``--profile P`` and the mutually exclusive ``--tcp HOST:PORT`` / ``--rtu DEVICE``."""
    profile_option(parser)
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--tcp", metavar="HOST:PORT", default=None,
                      help="override the profile's PLC connection with Modbus TCP")
    link.add_argument("--rtu", metavar="DEVICE", default=None,
                      help="override the PLC connection with Modbus RTU on DEVICE "
                           "(keeps the profile's serial settings, else 19200 8E1)")


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def state_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--state-dir D``: where the running agent's status socket is."""
    parser.add_argument("--state-dir", type=Path, default=None, metavar="D",
                        help="the agent's state directory (default as `twinguard run`)")


# --- what the options name ----------------------------------------------------------------

def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` with ``--tcp``/``--rtu`` applied.

    Raises ``ProfileError`` (all problems) for a bad profile or override.
    """
    profile = load_profile(args.profile)
    return with_connection(profile, tcp=args.tcp, rtu=args.rtu)


def state_dir(given: str | Path | None) -> Path:
    """``--state-dir`` if given, else ``$STATE_DIRECTORY`` (systemd), else the default."""
    return Path(given or os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR)


def describe_link(profile: Profile) -> str:
    """``tcp HOST:PORT unit U`` or ``rtu DEVICE 19200 8E1 unit U``."""
    link = profile.plc.link
    if isinstance(link, TcpLink):
        host = f"[{link.host}]" if ":" in link.host else link.host
        where = f"tcp {host}:{link.port}"
    else:
        assert isinstance(link, RtuLink)
        where = (f"rtu {link.device} {link.baudrate} "
                 f"{link.bytesize}{link.parity.value}{link.stopbits}")
    return f"{where} unit {profile.plc.unit_id}"


def iso_utc(when: float | dt.datetime, *, ms: bool = False) -> str:
    """``when`` (Unix seconds or an aware datetime) as ISO 8601 UTC: ``2025-03-01T12:00:05Z``
    (``...05.123Z`` with ``ms``)."""
    t = when if isinstance(when, dt.datetime) else dt.datetime.fromtimestamp(when, dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds" if ms else "seconds") \
        .replace("+00:00", "Z")


def load_key(path: Path) -> tuple[str, Ed25519PrivateKey]:
    """``(key id, private key)`` from a ``.key`` file; ValueError if not an Ed25519 key."""
    # cryptography only where a key is used: it stays out of the other commands' memory
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return path.stem, key


# --- reporting -----------------------------------------------------------------------------

def report_problems(error: ProfileError | ConfigError) -> int:
    """Every problem of a profile or configuration on stderr, one a line; exit code 2."""
    for problem in error.problems:
        print(problem, file=sys.stderr)
    return EXIT_USAGE


def ask_agent(command: str, given: Path | None, what: Callable[[Path], int]) -> int:
    """Call ``what(socket path)`` and turn the status client's errors into a message and an
    exit code: 3 when the agent is not running, 1 for no access, a timeout or a reply that
    makes no sense."""
    path = socket_path(state_dir(given))
    try:
        return what(path)
    except AgentNotRunning as exc:
        print(f"twinguard {command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except PermissionError:
        print(f"twinguard {command}: permission denied on {path}: run as the agent's user "
              "or a member of its group", file=sys.stderr)
        return EXIT_FAILED
    except (ProtocolError, OSError) as exc:  # TimeoutError is an OSError
        print(f"twinguard {command}: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
