"""The role table and the two-person rule for ``active``."""

from __future__ import annotations

import pytest

from agent.config.agentconfig import Role, TrustedKey
from agent.config.roles import ROLE_TABLE, authorize, changed_paths, is_safety_path, owner
from agent.model.mode import Mode

pytestmark = pytest.mark.timeout(10)


def key(kid: str, role: Role, pub: bytes | None = None) -> TrustedKey:
    return TrustedKey(kid, role, pub or kid.encode().ljust(32, b"\0"))


@pytest.mark.parametrize(("path", "role"), [
    ("telemetry.window", Role.OPERATOR),
    ("spool.max_bytes", Role.OPERATOR),
    ("recommendations.max_validity_s", Role.ENGINEER),
    ("twin.port", Role.ENGINEER),
    ("twin.ca", Role.SAFETY),
    ("twin.crl", Role.SAFETY),
    ("overrides.timing.poll_period_s", Role.ENGINEER),
    ("overrides.timing.heartbeat_timeout_s", Role.SAFETY),
    ("overrides.outputs.heater_power.maximum", Role.ENGINEER),
    ("overrides.outputs.heater_power.safe_value", Role.SAFETY),
    ("overrides.trips.overtemperature.limit", Role.SAFETY),
    ("overrides.groups.temperature.discrepancy", Role.SAFETY),
    ("confirm.window_s", Role.SAFETY),
    ("trust", Role.SAFETY),
    ("something.new", Role.SAFETY),  # not listed: safety first
])
def test_owner(path: str, role: Role) -> None:
    assert owner(path) is role
    assert is_safety_path(path) is (role is Role.SAFETY)


def test_every_pattern_is_reachable() -> None:
    for pattern, role in ROLE_TABLE:
        assert owner(pattern.replace("*", "x")) is role, pattern


def test_changed_paths_walks_to_leaves_and_ignores_mode() -> None:
    old = {"mode": "shadow", "telemetry": {"window": 5}, "overrides": {"outputs": {}}}
    new = {"mode": "active", "telemetry": {"window": 6, "enabled": True},
           "overrides": {"outputs": {"heater_power": {"maximum": 80.0}}}}
    assert changed_paths(old, new) == ("overrides.outputs.heater_power.maximum",
                                       "telemetry.enabled", "telemetry.window")
    assert changed_paths(new, old) == changed_paths(old, new)
    assert changed_paths(old, old) == ()


def test_each_owner_must_sign() -> None:
    changes = ["telemetry.window", "confirm.window_s"]
    assert not authorize(changes, [key("op", Role.OPERATOR)], Mode.SHADOW, Mode.SHADOW).ok
    both = [key("op", Role.OPERATOR), key("saf", Role.SAFETY)]
    assert authorize(changes, both, Mode.SHADOW, Mode.SHADOW).ok


def test_roles_do_not_nest() -> None:
    result = authorize(["telemetry.window"], [key("saf", Role.SAFETY)], Mode.SHADOW,
                       Mode.SHADOW)
    assert not result.ok and result.missing_role and "operator" in result.detail


@pytest.mark.parametrize(("signers", "ok"), [
    ([key("a1", Role.APPROVER)], False),
    ([key("a1", Role.APPROVER), key("a1", Role.APPROVER)], False),
    ([key("a1", Role.APPROVER), key("a2", Role.APPROVER, b"a1".ljust(32, b"\0"))], False),
    ([key("a1", Role.APPROVER), key("s", Role.SAFETY)], False),
    ([key("a1", Role.APPROVER), key("a2", Role.APPROVER)], True),
])
def test_two_person_rule(signers: list[TrustedKey], ok: bool) -> None:
    result = authorize([], signers, Mode.SHADOW, Mode.ACTIVE)
    assert result.ok is ok
    assert result.approvers is not ok


def test_demotion_is_always_allowed_to_a_trusted_signer() -> None:
    assert authorize([], [key("op", Role.OPERATOR)], Mode.ACTIVE, Mode.SHADOW).ok
    assert not authorize([], [], Mode.ACTIVE, Mode.SHADOW).ok
