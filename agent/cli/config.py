"""``twinguard config sign|cosign|verify``: make and check signed configuration bundles.

- ``config sign --key K [--key K2 ...] --version N --device D FILE.toml -o BUNDLE
  [--expires-in SECONDS]``: a bundle of FILE's text, signed by every key (the key id is the
  key file's stem, see ``twinguard keys``). The TOML must parse as an agent configuration.
- ``config cosign --key K BUNDLE -o OUT``: add a signature to an existing bundle (the second
  person of the two-person rule signs on their own machine).
- ``config verify BUNDLE [--config C] [--profile P] [--state-dir D]``: decode and print
  the bundle; with ``--config`` (the configuration in force, whose trust store is used)
  evaluate it exactly as the agent would (last version from ``D``'s config store, shadow
  mode) and print ``accepted`` or ``rejected REASON: detail``.

Exit codes: 0 fine / accepted, 1 rejected or failed, 2 bad usage or input file, 3 verify
without ``--config``: the bundle decodes, but its signatures were NOT checked (no trust store).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_key, report_problems
from agent.config.agentconfig import load_config
from agent.config.bundle import Bundle, add_signature, decode
from agent.config.profile.load import load_profile
from agent.config.push import Accepted, Current, Situation, evaluate
from agent.io.configstore import ConfigStore
from agent.model.errors import BundleError, ConfigError, ProfileError
from agent.model.mode import Mode

EXIT_CODES = """exit status:
  0  sign/cosign: the bundle was written; verify: accepted (with --config)
  1  verify: rejected (the reason is printed), or the bundle cannot be read or decoded
  2  bad usage, a bad key, configuration or profile, or an output that cannot be written
  3  verify without --config: the bundle decodes, but its signatures were NOT checked"""


def options(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    sign = sub.add_parser("sign", help="sign a configuration file into a bundle")
    sign.add_argument("--key", action="append", required=True, type=Path, metavar="K")
    sign.add_argument("--version", required=True, type=int, dest="bundle_version")
    sign.add_argument("--device", required=True)
    sign.add_argument("--expires-in", type=float, default=7 * 86400, metavar="SECONDS")
    sign.add_argument("file", type=Path, metavar="FILE.toml")
    sign.add_argument("-o", "--output", required=True, type=Path, metavar="BUNDLE")
    cosign = sub.add_parser("cosign", help="add a signature to a bundle")
    cosign.add_argument("--key", required=True, type=Path, metavar="K")
    cosign.add_argument("bundle", type=Path, metavar="BUNDLE")
    cosign.add_argument("-o", "--output", required=True, type=Path, metavar="OUT")
    verify = sub.add_parser("verify", help="check a bundle (as the agent would with --config)")
    verify.add_argument("bundle", type=Path, metavar="BUNDLE")
    verify.add_argument("--config", "-c", type=Path, default=None, metavar="C")
    verify.add_argument("--profile", "-p", default=None, metavar="P")
    verify.add_argument("--state-dir", type=Path, default=None, metavar="D")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"twinguard config: {message}", file=sys.stderr)
    return code


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
    args.output.write_bytes(bundle.encode())
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
    args.output.write_bytes(bundle.encode())
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
        print(f"bundle {args.bundle}: device {bundle.device_id}, version {bundle.version}, "
              f"{len(bundle.config)} characters of config, issued {bundle.issued_at}, expires "
              f"{bundle.expires_at}, claims signatures by "
              f"{', '.join(bundle.key_ids) or 'nobody'}")
        print("signatures NOT checked (no trust store: pass --config with the configuration "
              "in force, whose [[trust]] keys verify them)", file=sys.stderr)
        return EXIT_UNCHECKED
    print(f"bundle {args.bundle}: device {bundle.device_id}, version {bundle.version}, "
          f"{len(bundle.config)} characters of config, issued {bundle.issued_at}, expires "
          f"{bundle.expires_at}, signed by {', '.join(bundle.key_ids) or 'nobody'}")
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
        print(f"accepted: changes {', '.join(outcome.changes) or '(none)'}; mode "
              f"{outcome.config.mode.value}; signers {', '.join(outcome.signers)}")
        return EXIT_OK
    print(f"rejected {outcome.reason.value}: {outcome.detail}")
    return EXIT_FAILED


def config(args: argparse.Namespace) -> int:
    """Sign, co-sign and verify configuration bundles."""
    action = {"sign": _sign, "cosign": _cosign, "verify": _verify}[args.config_action]
    return action(args)
