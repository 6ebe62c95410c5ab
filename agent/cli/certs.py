"""``twinguard certs init|revoke|check``: the demo PKI for mutual TLS (``agent.io.pki``).

- ``certs init DIR [--device-id ID] [--twin-name NAME] [--days N] [--force]``: a local CA,
  a device (client) and a twin (server) certificate, for trials and tests (``DIR/ca.crt``,
  ``ca.key``, ``device.crt``, ``device.key``, ``twin.crt``, ``twin.key``); existing files are
  kept unless ``--force``.
- ``certs revoke DIR CERT... [--crl FILE]``: add certificates to the CA's CRL
  (default ``DIR/crl.pem``; point the agent's ``twin.crl`` at it).
- ``certs check CERT --ca CA [--crl FILE]``: prints the CN, issuer, validity (ISO 8601
  UTC) and serial of the certificate and of the CA, then ``ok`` or each problem (expired, not
  yet valid, not issued by the CA, revoked); exit 1 if there is one.

The file names are those the agent configuration's docs use (``agent.config.agentconfig``:
``twin.ca = "pki/ca.crt"``, ``twin.cert = "pki/device.crt"``, ``twin.key``, ``twin.crl =
"pki/crl.pem"``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK, iso_utc

EXIT_CODES = """exit status:
  0  init/revoke: the files were written; check: every certificate is fine
  1  init: a file exists (pass --force to replace them all); check: a problem (expired, not
     yet valid, not issued by the CA, revoked); a file cannot be read, parsed or written
  2  bad usage"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a demo CA, device and twin certificate")
    init.add_argument("dir", type=Path, metavar="DIR",
                      help="directory for ca.crt/.key, device.crt/.key, twin.crt/.key")
    init.add_argument("--device-id", default="twinguard", metavar="ID",
                      help="the device certificate's CN: the agent's device_id "
                           "(default twinguard)")
    init.add_argument("--twin-name", default="localhost", metavar="NAME",
                      help="the twin certificate's CN and DNS/IP name: the agent's "
                           "twin.server_name (default localhost)")
    init.add_argument("--days", type=int, default=825, metavar="N",
                      help="validity of every certificate in days (default 825)")
    init.add_argument("--force", action="store_true",
                      help="replace existing files (a new CA: every certificate it signed "
                           "stops verifying)")
    revoke = sub.add_parser("revoke", help="revoke certificates (write the CA's CRL)")
    revoke.add_argument("dir", type=Path, metavar="DIR",
                        help="the directory of `certs init` (its ca.crt and ca.key sign)")
    revoke.add_argument("certs", type=Path, nargs="+", metavar="CERT",
                        help="certificate file(s) to revoke")
    revoke.add_argument("--crl", type=Path, default=None, metavar="FILE",
                        help="the CRL to write, keeping what it revoked (default DIR/crl.pem; "
                             "the agent's twin.crl)")
    check = sub.add_parser("check", help="check a certificate's expiry, issuer, revocation")
    check.add_argument("cert", type=Path, metavar="CERT", help="the certificate to check")
    check.add_argument("--ca", type=Path, required=True, metavar="CA",
                       help="the CA certificate it must be issued by")
    check.add_argument("--crl", type=Path, default=None, metavar="FILE",
                       help="a CRL of that CA it must not be revoked by")


def _describe(label: str, path: Path) -> str:
    """``LABEL PATH: CN=..., issuer CN=..., expires T (valid from T), serial S`` (ISO 8601
    UTC)."""
    from agent.io.pki import describe_cert  # noqa: PLC0415 - cryptography: see certs()

    info = describe_cert(path)
    return (f"{label} {path}: CN={info.subject}, issuer CN={info.issuer}, expires "
            f"{iso_utc(info.not_after)} (valid from {iso_utc(info.not_before)}), serial "
            f"{info.serial:x}")


def certs(args: argparse.Namespace) -> int:
    """Create and check the demo PKI for mutual TLS."""
    # the PKI (cryptography) only when asked for: it stays out of the other commands' memory
    from agent.io import pki  # noqa: PLC0415

    try:
        if args.certs_action == "init":
            try:
                paths = pki.init_pki(args.dir, device_id=args.device_id,
                                     twin_name=args.twin_name, days=args.days,
                                     overwrite=args.force)
            except FileExistsError as exc:
                print(f"twinguard certs init: {exc.filename or args.dir} exists; refusing to "
                      "overwrite it (pass --force to replace the CA and every certificate)",
                      file=sys.stderr)
                return EXIT_FAILED
            for p in paths.all():
                print(p)
            return EXIT_OK
        if args.certs_action == "revoke":
            ca = pki.PkiPaths.in_dir(args.dir)
            crl = args.crl or args.dir / "crl.pem"
            count = pki.make_crl(ca.ca_cert, ca.ca_key, args.certs, crl)
            print(f"{crl}: {count} revoked")
            return EXIT_OK
        print(_describe("certificate", args.cert))
        print(_describe("CA", args.ca))
        problems = pki.check_cert(args.cert, args.ca, args.crl)
    except (OSError, ValueError) as exc:
        print(f"twinguard certs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for problem in problems:
        print(f"{args.cert}: {problem}")
    if not problems:
        print(f"{args.cert}: ok")
    return EXIT_FAILED if problems else EXIT_OK
