"""THE role table: which signer role may change which key of the agent configuration.

A configuration bundle carries the *whole* configuration; what it changes is the set of
leaf key paths whose value differs from the configuration in force (``changed_paths``),
computed on the raw TOML data, so adding a key with its default value is a change too
(conservative). Tables are walked down to their leaves; arrays (``trust``) are one leaf.

Each changed path needs a signature from a key whose role owns it (``owner``):

=====================================  ==========  ========================================
key path (``*`` = one name)            role        why
=====================================  ==========  ========================================
``telemetry.*``, ``spool.*``           operator    telemetry and reporting
``telemetry.policy.*``,                operator    data minimisation (what leaves the
``telemetry.policy.signals.*``,                    device; ``agent.config.policyconfig``)
``telemetry.policy.signals.*.*``
``recommendations.max_validity_s``     engineer    recommendation limits
``twin.*`` (not ``ca``/``crl``)        engineer    where the twin is, timeouts
``fleet.*``                            engineer    the brokers, group, host id, keepalive
``fleet.twin_keys``                    safety      who may make the twin ALIVE
``fleet.echo_timeout_s``               safety      how soon a delaying broker is a loss
``overrides.timing.poll_period_s``     engineer    poll period
``overrides.outputs.*.minimum``        engineer    output limits (only within the profile)
``overrides.outputs.*.maximum``        engineer
``overrides.outputs.*.max_rate``       engineer
``overrides.outputs.*.safe_value``     safety      safe values
``overrides.timing.*`` (timeouts)      safety      heartbeat / watchdog timeouts
``overrides.trips.*.limit``            safety      trips
``overrides.groups.*.*``               safety      voting tolerances
``confirm.window_s``                   safety      the revert window
``trust``                              safety      who may sign
``twin.ca``, ``twin.crl``              safety      whom the agent trusts as its twin
``device_id``                          safety      (a push can never change it anyway)
anything not listed                    safety      safety first
=====================================  ==========  ========================================

Roles do not nest: a safety key cannot sign an operator change; a bundle touching several
owners' keys carries one signature per owner.

``mode`` is special (``mode_rule``): going to ``active`` needs signatures of **two distinct
approver keys** (distinct public keys: one key signing twice, or one public key listed under
two ids, counts once); going to ``shadow`` is allowed to any trusted signer (demotion fails
toward safety). Keeping the mode needs nothing.

Pure: no I/O. Nothing here raises for any input of the documented types.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.config.agentconfig import Role, TrustedKey
from agent.model.mode import Mode

__all__ = [
    "APPROVERS_FOR_ACTIVE", "ROLE_TABLE", "Authorization", "authorize", "changed_paths",
    "is_safety_path", "leaves", "owner",
]

APPROVERS_FOR_ACTIVE = 2

ROLE_TABLE: tuple[tuple[str, Role], ...] = (
    ("telemetry.*", Role.OPERATOR),
    ("telemetry.policy.*", Role.OPERATOR),
    ("telemetry.policy.signals.*", Role.OPERATOR),
    ("telemetry.policy.signals.*.*", Role.OPERATOR),
    ("spool.*", Role.OPERATOR),
    ("recommendations.max_validity_s", Role.ENGINEER),
    ("twin.ca", Role.SAFETY),
    ("twin.crl", Role.SAFETY),
    ("twin.*", Role.ENGINEER),
    ("fleet.twin_keys", Role.SAFETY),
    ("fleet.echo_timeout_s", Role.SAFETY),
    ("fleet.*", Role.ENGINEER),
    ("overrides.timing.poll_period_s", Role.ENGINEER),
    ("overrides.timing.*", Role.SAFETY),
    ("overrides.outputs.*.minimum", Role.ENGINEER),
    ("overrides.outputs.*.maximum", Role.ENGINEER),
    ("overrides.outputs.*.max_rate", Role.ENGINEER),
    ("overrides.outputs.*.safe_value", Role.SAFETY),
    ("overrides.trips.*.limit", Role.SAFETY),
    ("overrides.groups.*.*", Role.SAFETY),
    ("confirm.window_s", Role.SAFETY),
    ("trust", Role.SAFETY),
    ("device_id", Role.SAFETY),
)
"""First match wins; ``*`` matches exactly one dotted segment."""


def _match(pattern: str, path: str) -> bool:
    parts, pats = path.split("."), pattern.split(".")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, p)
                                           for a, p in zip(parts, pats, strict=True))


def owner(path: str) -> Role:
    """The role that may change ``path`` (SAFETY for anything the table does not list)."""
    for pattern, role in ROLE_TABLE:
        if _match(pattern, path):
            return role
    return Role.SAFETY


def is_safety_path(path: str) -> bool:
    """True if changing ``path`` changes a safety section (refused while active)."""
    return owner(path) is Role.SAFETY


def leaves(data: Mapping[str, Any]) -> dict[str, object]:
    """Every leaf of ``data`` by its dotted key path (an array is one leaf)."""
    out: dict[str, object] = {}
    _leaves(data, "", out)
    return out


def _leaves(data: object, prefix: str, out: dict[str, object]) -> None:
    if isinstance(data, Mapping):  # an empty table changes nothing: it has no leaves
        for key, value in data.items():
            _leaves(value, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = data


def changed_paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """Sorted leaf key paths added, removed or changed from ``old`` to ``new``.

    ``mode`` is left out (``mode_rule`` decides it on the parsed values).
    """
    a, b = leaves(old), leaves(new)
    paths = {p for p in a.keys() | b.keys() if p != "mode" and (p not in a or p not in b
                                                                 or a[p] != b[p])}
    return tuple(sorted(paths))


@dataclass(frozen=True)
class Authorization:
    """Outcome of ``authorize``: ``ok``, or the first reason it is not (``missing_role`` for
    a path no signer may change, ``approvers`` for a promotion without two approvers)."""

    ok: bool
    detail: str = ""
    missing_role: bool = False
    approvers: bool = False


def authorize(changes: Iterable[str], signers: Iterable[TrustedKey], old_mode: Mode,
              new_mode: Mode) -> Authorization:
    """May ``signers`` (keys whose signatures verified) make ``changes`` and the mode change?"""
    keys = list(signers)
    roles = {k.role for k in keys}
    for path in changes:
        role = owner(path)
        if role not in roles:
            signed = ", ".join(sorted(f"{k.key_id} ({k.role.value})" for k in keys))
            return Authorization(False, f"{path} may only be changed by role {role.value}; "
                                        f"signed by {signed or 'nobody'}", missing_role=True)
    if new_mode is Mode.ACTIVE and old_mode is not Mode.ACTIVE:
        approvers = {k.public_key for k in keys if k.role is Role.APPROVER}
        if len(approvers) < APPROVERS_FOR_ACTIVE:
            return Authorization(False, f"mode = 'active' needs {APPROVERS_FOR_ACTIVE} distinct "
                                        f"approver keys, got {len(approvers)}", approvers=True)
    if new_mode is not old_mode and not keys:
        return Authorization(False, "a mode change needs a trusted signature", missing_role=True)
    return Authorization(True)
