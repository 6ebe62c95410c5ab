"""``twinguard config sign|cosign|verify``: make and check signed configuration bundles.

- ``config sign --key K [--key K2 ...] --version N --device D FILE.toml -o BUNDLE
  [--expires-in SECONDS]``: a bundle of FILE's text, signed by every key (the key id is the
  key file's stem, see ``twinguard keys``). The TOML must parse as an agent configuration.
- ``config cosign --key K BUNDLE -o OUT``: add a signature to an existing bundle (the second
  person of the two-person rule signs on their own machine).
- ``config verify BUNDLE [--config C] [--profile P] [--state-dir D]``: decode and print
  the bundle; with ``--config`` (the configuration in force, whose trust store is used)
  evaluate it exactly as the agent would (last version from ``D``'s config store, shadow
  mode) and print ``accepted`` with what it changes against ``C`` (``mode: shadow ->
  active``, then ``KEY.PATH: OLD -> NEW`` a line, ``agent.config.push.describe_changes``) or
  ``rejected REASON: detail``. Times are ISO 8601 UTC.

Exit codes (:data:`EXIT_CODES`, the ``--help`` epilog): 0 fine / accepted, 1 rejected or
failed, 2 bad usage or input file, 3 verify without ``--config``: the bundle decodes, but its
signatures were NOT checked (no trust store).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from agent.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    iso_utc,
    load_key,
    report_problems,
)
from agent.config.agentconfig import load_config
from agent.config.bundle import Bundle, add_signature, decode
from agent.config.profile.load import load_profile
from agent.config.push import Accepted, Current, Situation, describe_changes, evaluate
from agent.io.configstore import ConfigStore
from agent.model.errors import BundleError, ConfigError, ProfileError
from agent.model.mode import Mode

EXIT_CODES = """exit status:
  0  sign/cosign: the bundle was written; verify: accepted (with --config)
  1  verify: rejected (the reason is printed), or the bundle cannot be read or decoded;
     sign/cosign: the output cannot be written
  2  bad usage, a bad key, configuration, profile or input bundle
  3  verify without --config: the bundle decodes, but its signatures were NOT checked"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    sign = sub.add_parser("sign", help="sign a configuration file into a bundle")
    sign.add_argument("--key", action="append", required=True, type=Path, metavar="K",
                      help="a signing key file from `twinguard keys new` (repeat for more "
                           "signers; its stem is the key id)")
    sign.add_argument("--version", required=True, type=int, dest="bundle_version",
                      metavar="N", help="the bundle's version: above every version applied")
    sign.add_argument("--device", required=True, metavar="D",
                      help="the device id it is for (must equal the file's device_id)")
    sign.add_argument("--expires-in", type=float, default=7 * 86400, metavar="SECONDS",
                      help="how long the bundle may be applied (default 7 days)")
    sign.add_argument("file", type=Path, metavar="FILE.toml",
                      help="the agent configuration to sign (it must parse)")
    sign.add_argument("-o", "--output", required=True, type=Path, metavar="BUNDLE",
                      help="where the bundle goes")
    cosign = sub.add_parser("cosign", help="add a signature to a bundle")
    cosign.add_argument("--key", required=True, type=Path, metavar="K",
                        help="the second signer's key file")
    cosign.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle to co-sign")
    cosign.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                        help="where the co-signed bundle goes")
    verify = sub.add_parser("verify", help="check a bundle (as the agent would with --config)")
    verify.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle to check")
    verify.add_argument("--config", "-c", type=Path, default=None, metavar="C",
                        help="the configuration in force: its [[trust]] keys check the "
                             "signatures and the changes are listed against it")
    verify.add_argument("--profile", "-p", default=None, metavar="P",
                        help="the hardware profile in force (default sim-tank)")
    verify.add_argument("--state-dir", type=Path, default=None, metavar="D",
                        help="the agent's state directory, for the last version applied "
                             "(default: none applied)")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"twinguard config: {message}", file=sys.stderr)
    return code


def _write(path: Path, bundle: Bundle) -> int | None:
    """Write ``bundle`` to ``path``; None, or the exit code after saying why it failed."""
    try:
        path.write_bytes(bundle.encode())
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED)
    return None


def _describe(args: argparse.Namespace, bundle: Bundle, signed: str) -> str:
    return (f"bundle {args.bundle}: device {bundle.device_id}, version {bundle.version}, "
            f"{len(bundle.config)} characters of config, issued {iso_utc(bundle.issued_at)}, "
            f"expires {iso_utc(bundle.expires_at)}, {signed} "
            f"{', '.join(bundle.key_ids) or 'nobody'}")


def _sign(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return report_problems(exc)
    if config.device_id != args.device:
        return _fail(f"{args.file} is for device {config.device_id!r}, not {args.device!r}")
    now = int(time.time())
    bundle = Bundle(args.device, args.bundle_version, now, now + int(args.expires_in),
                    args.file.read_text(encoding="utf-8"))
    try:
        for path in args.key:
            key_id, key = load_key(path)
            bundle = add_signature(bundle, key_id, key)
        decode(bundle.encode())
    except (OSError, ValueError, BundleError) as exc:
        return _fail(str(exc))
    if (failed := _write(args.output, bundle)) is not None:
        return failed
    print(f"{args.output}: version {bundle.version} for {bundle.device_id}, signed by "
          f"{', '.join(bundle.key_ids)}, expires in {args.expires_in:g} s")
    return EXIT_OK


def _cosign(args: argparse.Namespace) -> int:
    try:
        bundle = decode(args.bundle.read_bytes())
        key_id, key = load_key(args.key)
        bundle = add_signature(bundle, key_id, key)
    except (OSError, ValueError, BundleError) as exc:
        return _fail(str(exc))
    if (failed := _write(args.output, bundle)) is not None:
        return failed
    print(f"{args.output}: signed by {', '.join(bundle.key_ids)}")
    return EXIT_OK


EXIT_UNCHECKED = 3  # verify without a trust store: decoded, signatures not checked


def _verify(args: argparse.Namespace) -> int:
    try:
        data = args.bundle.read_bytes()
        bundle = decode(data, max_bytes=max(len(data), 1))
    except (OSError, BundleError) as exc:
        return _fail(str(exc), EXIT_FAILED)
    if args.config is None:
        print(_describe(args, bundle, "claims signatures by"))
        print("signatures NOT checked (no trust store: pass --config with the configuration "
              "in force, whose [[trust]] keys verify them)", file=sys.stderr)
        return EXIT_UNCHECKED
    print(_describe(args, bundle, "signed by"))
    try:
        config = load_config(args.config)
        raw = tomllib.loads(args.config.read_text(encoding="utf-8"))
        profile = load_profile(args.profile)
    except (ConfigError, ProfileError) as exc:
        return report_problems(exc)
    last = ConfigStore(args.state_dir / "config").last_version if args.state_dir else 0
    current = Current(config, raw, profile, last, args.config.parent.resolve())
    outcome = evaluate(data, current, Situation(Mode.SHADOW, False, time.time()))
    if isinstance(outcome, Accepted):
        changes = describe_changes(current, outcome)
        print(f"accepted: mode {outcome.config.mode.value}; signers "
              f"{', '.join(outcome.signers)}; "
              + (f"it changes {len(changes)}:" if changes else "it changes nothing"))
        for line in changes:
            print(f"  {line}")
        return EXIT_OK
    print(f"rejected {outcome.reason.value}: {outcome.detail}")
    return EXIT_FAILED


def config(args: argparse.Namespace) -> int:
    """Sign, co-sign and verify configuration bundles."""
    action = {"sign": _sign, "cosign": _cosign, "verify": _verify}[args.config_action]
    return action(args)
