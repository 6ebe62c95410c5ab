"""``twinguard audit verify|show``: check and read the agent's hash-chained audit log.

The log is ``STATE_DIR/audit.sqlite`` (``--state-dir``, default as ``twinguard run``) or the
file given with ``--file``. ``verify`` exits 0 if the whole chain and its head anchor check
out, 1 listing every problem otherwise; ``show`` prints one readable line per record,
its time in ISO 8601 UTC (``--last N`` for the tail).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, iso_utc, state_dir
from agent.io.audit import AuditLog, AuditRecord, audit_path

EXIT_CODES = """exit status:
  0  verify: the whole chain and its head anchor check out; show: the records were printed
  1  verify: a record was edited, deleted or reordered (each problem listed); the file is not
     an audit log
  2  bad usage, or no audit log at that path"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    for name, text in (("verify", "verify the hash chain"), ("show", "print the records")):
        p = sub.add_parser(name, help=text)
        where = p.add_mutually_exclusive_group()
        where.add_argument("--state-dir", type=Path, default=None, metavar="D",
                           help="the agent's state directory: its audit.sqlite (default as "
                                "`twinguard run`)")
        where.add_argument("--file", type=Path, default=None, metavar="F",
                           help="an audit log file (a copy, say) instead")
        if name == "show":
            p.add_argument("--last", type=int, default=0, metavar="N",
                           help="only the last N records (default all)")


def line(r: AuditRecord) -> str:
    """One readable line: ``seq  2025-03-01T12:00:05.123Z  kind  key=value ...``."""
    try:
        items = " ".join(f"{k}={v}" for k, v in r.fields.items())
    except ValueError:  # not JSON: shown as stored (verify says what is wrong)
        items = r.body
    return f"{r.seq:6d}  {iso_utc(r.ts_ms / 1000, ms=True)}  {r.kind:<17} {items}"


def audit(args: argparse.Namespace) -> int:
    """Verify or show the audit log."""
    path: Path = args.file or audit_path(state_dir(args.state_dir))
    if not path.is_file():
        print(f"twinguard audit: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        with AuditLog(path) as log:
            if args.audit_action == "verify":
                result = log.verify()
                for problem in result.problems:
                    print(f"{path}: {problem}")
                print(f"{path}: {result.records} records, "
                      f"{'chain verified' if result.ok else 'VERIFICATION FAILED'}")
                return EXIT_OK if result.ok else EXIT_FAILED
            records = list(log.records())
    except sqlite3.Error as exc:
        print(f"twinguard audit: {path}: not an audit log ({exc})", file=sys.stderr)
        return EXIT_FAILED
    for record in records[-args.last:] if args.last > 0 else records:
        print(line(record))
    return EXIT_OK
