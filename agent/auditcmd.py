"""``twinguard audit verify|show``: check and read the agent's hash-chained audit log.

The log is ``STATE_DIR/audit.sqlite`` (``--state-dir``, default as ``twinguard run``) or the
file given with ``--file``. ``verify`` exits 0 if the whole chain and its head anchor check
out, 1 listing every problem otherwise; ``show`` prints one readable line per record
(``--last N`` for the tail).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

AUDIT_FILE = "audit.sqlite"


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    for name, text in (("verify", "verify the hash chain"), ("show", "print the records")):
        p = sub.add_parser(name, help=text)
        where = p.add_mutually_exclusive_group()
        where.add_argument("--state-dir", type=Path, default=None, metavar="D")
        where.add_argument("--file", type=Path, default=None, metavar="F")
        if name == "show":
            p.add_argument("--last", type=int, default=0, metavar="N")


def audit_path(state_dir: Path) -> Path:
    return state_dir / AUDIT_FILE


def main(args: argparse.Namespace) -> int:
    """Verify or show the audit log."""
    from agent.io.audit import AuditLog, format_record  # noqa: PLC0415
    from agent.runcmd import DEFAULT_STATE_DIR  # noqa: PLC0415

    path: Path = args.file or audit_path(
        args.state_dir or Path(os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR))
    if not path.is_file():
        print(f"twinguard audit: {path}: no such file", file=sys.stderr)
        return 2
    with AuditLog(path) as log:
        if args.audit_action == "verify":
            result = log.verify()
            for problem in result.problems:
                print(f"{path}: {problem}")
            print(f"{path}: {result.records} records, "
                  f"{'chain verified' if result.ok else 'VERIFICATION FAILED'}")
            return 0 if result.ok else 1
        records = list(log.records())
    for record in records[-args.last:] if args.last > 0 else records:
        print(format_record(record))
    return 0
