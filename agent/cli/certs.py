"""``twinguard certs init|revoke|check``: the demo PKI for mutual TLS (``agent.io.pki``).

- ``certs init DIR [--device-id ID] [--twin-name NAME] [--days N] [--force]``: a local CA,
  a device (client) and a twin (server) certificate, for trials and tests.
- ``certs revoke DIR CERT... [--crl FILE]``: add certificates to the CA's CRL
  (default ``DIR/crl.pem``; point the agent's ``twin.crl`` at it).
- ``certs check CERT --ca CA [--crl FILE]``: expiry, issuer and revocation; exit 1 if bad.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK

EXIT_CODES = """exit status:
  0  init/revoke: the files were written; check: every certificate is fine
  1  init: a file exists (pass --force to replace them all); check: a problem (expired, not
     yet valid, not issued by the CA, revoked); a file cannot be read, parsed or written
  2  bad usage"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a demo CA, device and twin certificate")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--device-id", default="twinguard")
    init.add_argument("--twin-name", default="localhost")
    init.add_argument("--days", type=int, default=825)
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    revoke = sub.add_parser("revoke", help="revoke certificates (write the CA's CRL)")
    revoke.add_argument("dir", type=Path, metavar="DIR")
    revoke.add_argument("certs", type=Path, nargs="+", metavar="CERT")
    revoke.add_argument("--crl", type=Path, default=None, metavar="FILE")
    check = sub.add_parser("check", help="check a certificate's expiry, issuer, revocation")
    check.add_argument("cert", type=Path, metavar="CERT")
    check.add_argument("--ca", type=Path, required=True, metavar="CA")
    check.add_argument("--crl", type=Path, default=None, metavar="FILE")


def certs(args: argparse.Namespace) -> int:
    """Create and check the demo PKI for mutual TLS."""
    # the PKI (cryptography) only when asked for: it stays out of the other commands' memory
    from agent.io import pki  # noqa: PLC0415

    try:
        if args.certs_action == "init":
            paths = pki.init_pki(args.dir, device_id=args.device_id, twin_name=args.twin_name,
                                 days=args.days, overwrite=args.force)
            for p in paths.all():
                print(p)
            return EXIT_OK
        if args.certs_action == "revoke":
            ca = pki.PkiPaths.in_dir(args.dir)
            crl = args.crl or args.dir / "crl.pem"
            count = pki.make_crl(ca.ca_cert, ca.ca_key, args.certs, crl)
            print(f"{crl}: {count} revoked")
            return EXIT_OK
        problems = pki.check_cert(args.cert, args.ca, args.crl)
    except (OSError, ValueError) as exc:
        print(f"twinguard certs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for problem in problems:
        print(f"{args.cert}: {problem}")
    if not problems:
        print(f"{args.cert}: ok")
    return EXIT_FAILED if problems else EXIT_OK
