"""Evaluate a pushed configuration bundle (sans-IO): accept it, or refuse it with a reason.

``evaluate(data, current, situation)`` runs the checks in this order and stops at the first
that fails (each refusal has one ``Reason`` code, sent to the twin and audited):

=============================  ===============================================================
``Reason``                     refused because
=============================  ===============================================================
``too_large``                  the bundle is above ``max_bytes`` (checked before decoding)
``malformed``                  not a well-formed bundle (``agent.config.bundle``)
``unsigned``                   no signatures at all
``unknown_key``                a signature's key id is not in the trust store in force
``bad_signature``              a signature does not verify with its key
``wrong_device``               ``device_id`` is not this agent's
``not_yet_valid``              ``issued_at`` is more than ``CLOCK_SKEW_S`` in the future
``expired``                    ``expires_at`` has passed (wall clock)
``replay``                     ``version`` equals the last version applied
``rollback``                   ``version`` is below the last version applied
``bad_toml``                   the configuration text is not TOML
``invalid_config``             it fails the checks of a local file (``agent.config``), changes
                               ``device_id``, or its overrides do not fit the profile
                               (``agent.config.effective``)
``role_not_allowed``           a change no signer's role may make (``agent.config.roles``)
``approvers_required``         ``mode = "active"`` without two distinct approver keys
``safety_change_while_active`` a safety section changes while the agent is ``active`` with
                               outputs not held safe: apply it in shadow or fail-safe
=============================  ===============================================================

The trust store used is always the one **in force** (``current.config.trust``), never the
one in the bundle: a bundle cannot vouch for itself. Versions are compared with the
persisted counter the caller passes in (``current.last_version``).

Wall time (``situation.wall_now``, Unix seconds) is used only for the bundle's validity
window, whose times come from the signer's wall clock. Pure apart from Ed25519 verification;
never raises for any bundle bytes (anything else raised is a bug).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.agentconfig import AgentConfig, TrustedKey, parse_config
from agent.config.bundle import BUNDLE_MAX, Bundle, decode, verify_signature
from agent.config.effective import effective_profile
from agent.config.policyconfig import check_policy
from agent.config.roles import authorize, changed_paths, is_safety_path, leaves
from agent.model.errors import BundleError, ConfigError
from agent.model.mode import Mode
from agent.model.profile import Profile

__all__ = ["CLOCK_SKEW_S", "Accepted", "Current", "Reason", "Rejected", "Situation", "evaluate"]

CLOCK_SKEW_S = 300.0


class Reason(enum.Enum):
    """Why a bundle was refused (see the table in the module docstring)."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_DEVICE = "wrong_device"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REPLAY = "replay"
    ROLLBACK = "rollback"
    BAD_TOML = "bad_toml"
    INVALID_CONFIG = "invalid_config"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    APPROVERS_REQUIRED = "approvers_required"
    SAFETY_CHANGE_WHILE_ACTIVE = "safety_change_while_active"


@dataclass(frozen=True)
class Current:
    """What is in force: the parsed config, its raw TOML data, the hardware profile, the
    persisted last applied version, and the directory relative config paths resolve in."""

    config: AgentConfig
    data: Mapping[str, Any]
    profile: Profile
    last_version: int
    base: Path


@dataclass(frozen=True)
class Situation:
    """The agent right now: control mode, whether outputs are held safe, the wall clock."""

    mode: Mode
    outputs_safe: bool
    wall_now: float


@dataclass(frozen=True)
class Accepted:
    bundle: Bundle
    config: AgentConfig  # the new configuration
    data: Mapping[str, Any]  # its raw TOML data (the next diff's base)
    profile: Profile  # the effective profile (hardware profile + overrides)
    changes: tuple[str, ...]  # changed key paths (``mode`` excluded)
    signers: tuple[str, ...]  # key ids whose signatures verified, sorted, once each

    @property
    def version(self) -> int:
        return self.bundle.version


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str
    version: int | None = None  # None when the bundle could not be decoded
    key_ids: tuple[str, ...] = ()


Outcome = Accepted | Rejected

SHOWN_CHARS = 60  # a changed value longer than this is cut (a [[trust]] list, say)


def describe_changes(current: Current, accepted: Accepted) -> tuple[str, ...]:
    """What applying ``accepted`` over ``current`` changes, one ``KEY.PATH: OLD -> NEW`` a
    line: the mode first (``mode: shadow -> active``, from the parsed values), then every
    changed key path in order; a key not set is ``(not set)``. Empty if nothing changes."""
    old_mode, new_mode = current.config.mode, accepted.config.mode
    lines = [f"mode: {old_mode.value} -> {new_mode.value}"] if old_mode is not new_mode else []
    old, new = leaves(current.data), leaves(accepted.data)
    lines += [f"{path}: {_shown(old.get(path))} -> {_shown(new.get(path))}"
              for path in accepted.changes]
    return tuple(lines)


def _shown(value: object) -> str:
    if value is None:  # TOML has no null: None is a key that is not there
        return "(not set)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def _signers(bundle: Bundle, trust: tuple[TrustedKey, ...]) -> tuple[TrustedKey, ...] | Rejected:
    by_id = {k.key_id: k for k in trust}
    keys: dict[str, TrustedKey] = {}

    def reject(reason: Reason, detail: str) -> Rejected:
        return Rejected(reason, detail, bundle.version, bundle.key_ids)

    if not bundle.signatures:
        return reject(Reason.UNSIGNED, "the bundle carries no signature")
    for sig in bundle.signatures:
        key = by_id.get(sig.key_id)
        if key is None:
            return reject(Reason.UNKNOWN_KEY, f"key {sig.key_id!r} is not in the trust store")
        if not verify_signature(bundle, sig, key.public_key):
            return reject(Reason.BAD_SIGNATURE, f"signature by {sig.key_id!r} does not verify")
        keys[key.key_id] = key
    return tuple(keys.values())


def evaluate(data: bytes, current: Current, situation: Situation,
             max_bytes: int = BUNDLE_MAX) -> Outcome:
    """Accept or refuse bundle bytes ``data``; see the module docstring."""
    try:
        bundle = decode(data, max_bytes)
    except BundleError as exc:
        reason = Reason.TOO_LARGE if exc.too_large else Reason.MALFORMED
        return Rejected(reason, str(exc))
    signers = _signers(bundle, current.config.trust)
    if isinstance(signers, Rejected):
        return signers

    def reject(reason: Reason, detail: str) -> Rejected:
        return Rejected(reason, detail, bundle.version, bundle.key_ids)

    if bundle.device_id != current.config.device_id:
        return reject(Reason.WRONG_DEVICE, f"bundle is for {bundle.device_id!r}, this agent is "
                                           f"{current.config.device_id!r}")
    if bundle.issued_at > situation.wall_now + CLOCK_SKEW_S:
        return reject(Reason.NOT_YET_VALID, f"issued at {bundle.issued_at}, in the future")
    if bundle.expires_at <= situation.wall_now:
        return reject(Reason.EXPIRED, f"expired at {bundle.expires_at} (now "
                                      f"{int(situation.wall_now)})")
    if bundle.version == current.last_version:
        return reject(Reason.REPLAY, f"version {bundle.version} was already applied")
    if bundle.version < current.last_version:
        return reject(Reason.ROLLBACK, f"version {bundle.version} is below the last applied "
                                       f"version {current.last_version}")
    source = f"bundle v{bundle.version}"
    try:
        raw = tomllib.loads(bundle.config)
    except tomllib.TOMLDecodeError as exc:
        return reject(Reason.BAD_TOML, f"invalid TOML: {exc}")
    try:
        config = parse_config(raw, source, current.base)
        profile = effective_profile(current.profile, config.overrides, source)
        check_policy(profile, config.telemetry.policy, source)
    except ConfigError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return reject(Reason.INVALID_CONFIG, f"{first.path}: {first.reason}{more}")
    if config.device_id != current.config.device_id:
        return reject(Reason.INVALID_CONFIG, f"device_id: a pushed config cannot change the "
                                             f"device id ({config.device_id!r})")
    changes = changed_paths(current.data, raw)
    auth = authorize(changes, signers, current.config.mode, config.mode)
    if not auth.ok:
        reason = Reason.APPROVERS_REQUIRED if auth.approvers else Reason.ROLE_NOT_ALLOWED
        return reject(reason, auth.detail)
    safety = [p for p in changes if is_safety_path(p)]
    if safety and situation.mode is Mode.ACTIVE and not situation.outputs_safe:
        return reject(Reason.SAFETY_CHANGE_WHILE_ACTIVE,
                      f"{safety[0]} is a safety setting; apply it in shadow mode or fail-safe")
    return Accepted(bundle, config, raw, profile, changes,
                    tuple(sorted(k.key_id for k in signers)))
