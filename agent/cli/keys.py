"""``twinguard keys new --id ID --role ROLE --out DIR``: a signing key for config bundles.

Writes ``DIR/ID.key`` (Ed25519 private key, PKCS#8 PEM, mode 0600 from creation; keep it
offline) and ``DIR/ID.pub`` (base64 of the raw 32-byte public key), and prints the
``[[trust]]`` entry to paste into the agent's configuration. The key id is the file's stem:
``twinguard config sign --key DIR/ID.key`` signs as ``ID``. Existing files are never
overwritten (exit 1).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from agent.config.agentconfig import Role
from agent.config.fields import is_identifier

ROLES = tuple(role.value for role in Role)  # operator, engineer, safety, approver

EXIT_CODES = """exit status:
  0  the key was written and its [[trust]] entry printed
  1  a key file of that id exists (never overwritten), or DIR cannot be written
  2  bad usage or key id"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="create an Ed25519 signing key and print its trust entry")
    new.add_argument("--id", required=True, dest="key_id", help="key id (letters, digits, -_)")
    new.add_argument("--role", required=True, choices=ROLES,
                     help="what its signatures may change (the [[trust]] entry's role)")
    new.add_argument("--out", required=True, type=Path, metavar="DIR",
                     help="where ID.key (private, 0600) and ID.pub go")


def trust_entry(key_id: str, role: str, public_raw: bytes) -> str:
    return (f'[[trust]]\nid = "{key_id}"\nrole = "{role}"\n'
            f'public_key = "{base64.b64encode(public_raw).decode()}"\n')


def keys(args: argparse.Namespace) -> int:
    """Manage signing keys for configuration bundles."""
    # cryptography only where a key is made: it stays out of the other commands' memory
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    key_id: str = args.key_id
    if not is_identifier(key_id.replace("-", "_")):
        print(f"twinguard keys: bad key id {key_id!r}: letters, digits, '-' and '_' only",
              file=sys.stderr)
        return EXIT_USAGE
    out: Path = args.out
    private, public = out / f"{key_id}.key", out / f"{key_id}.pub"
    for p in (private, public):
        if p.exists():
            print(f"twinguard keys: {p} exists; refusing to overwrite", file=sys.stderr)
            return EXIT_FAILED
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes_raw()
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public.write_text(base64.b64encode(raw).decode() + "\n", encoding="ascii")
    except OSError as exc:
        print(f"twinguard keys: cannot write {exc.filename or out}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"# {private} (keep it secret), {public}")
    print(trust_entry(key_id, args.role, raw), end="")
    return EXIT_OK
