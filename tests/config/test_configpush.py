"""Pushed bundles: one test per refusal, and the acceptances they are the exceptions to."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest
from bundle_kit import DEVICE, Kit

from agent.config.agentconfig import parse_config
from agent.config.bundle import BUNDLE_MAX, Bundle, decode
from agent.config.profile.load import load_profile
from agent.config.push import Accepted, Current, Reason, Rejected, Situation, evaluate
from agent.model.mode import Mode

pytestmark = pytest.mark.timeout(20)

PROFILE = load_profile("sim-tank")
KIT = Kit.new()


def current(text: str | None = None, last_version: int = 3) -> Current:
    text = text if text is not None else KIT.config()
    data = tomllib.loads(text)
    return Current(parse_config(data, "factory", Path("/")), data, PROFILE, last_version,
                   Path("/"))


def shadow() -> Situation:
    """A shadow-mode agent's situation now (the wall clock read when the test runs, not when
    the file was collected: a bundle issued later would read as from the future)."""
    return Situation(Mode.SHADOW, outputs_safe=False, wall_now=time.time())


def push(data: bytes, cur: Current | None = None,
         situation: Situation | None = None) -> Rejected:
    outcome = evaluate(data, cur or current(), situation or shadow())
    assert isinstance(outcome, Rejected), outcome
    return outcome


def test_accepts_an_engineer_change_signed_by_the_engineer() -> None:
    text = KIT.config("[overrides.outputs.heater_power]\nmaximum = 80.0\n")
    outcome = evaluate(KIT.bundle(text, 4, ("eng1",)), current(), shadow())
    assert isinstance(outcome, Accepted)
    assert outcome.changes == ("overrides.outputs.heater_power.maximum",)
    assert outcome.profile.output("heater_power").maximum == 80.0
    assert outcome.signers == ("eng1",)


def test_bad_signature() -> None:
    good = decode(KIT.bundle(KIT.config("[telemetry]\nwindow = 10\n"), 4, ("op1",)))
    forged = Bundle(good.device_id, good.version, good.issued_at, good.expires_at,
                    good.config.replace("window = 10", "window = 11"), good.signatures)
    r = push(forged.encode())
    assert r.reason is Reason.BAD_SIGNATURE and r.key_ids == ("op1",)


def test_unknown_key() -> None:
    stranger = Kit.new()  # same ids, other keys: not trusted
    r = push(stranger.bundle(KIT.config("[telemetry]\nwindow = 10\n"), 4, ("op1",)))
    assert r.reason is Reason.BAD_SIGNATURE
    other = Kit.new()
    other.keys["mallory"] = other.keys.pop("op1")
    r = push(other.bundle(KIT.config(), 4, ("mallory",)))
    assert r.reason is Reason.UNKNOWN_KEY and "mallory" in r.detail


def test_unsigned() -> None:
    assert push(KIT.bundle(KIT.config(), 4, ())).reason is Reason.UNSIGNED


def test_role_may_not_change_a_section_it_does_not_own() -> None:
    text = KIT.config("[overrides.trips.overtemperature]\nlimit = 90.0\n")
    r = push(KIT.bundle(text, 4, ("eng1",)))
    assert r.reason is Reason.ROLE_NOT_ALLOWED
    assert "overrides.trips.overtemperature.limit" in r.detail and "safety" in r.detail
    assert isinstance(evaluate(KIT.bundle(text, 4, ("saf1",)), current(), shadow()), Accepted)


def test_operator_cannot_change_the_trust_store() -> None:
    text = KIT.config().replace('id = "op1"', 'id = "op9"')
    assert push(KIT.bundle(text, 4, ("op1",))).reason is Reason.ROLE_NOT_ALLOWED


def test_single_approver_cannot_enable_active() -> None:
    r = push(KIT.bundle(KIT.config(mode="active"), 4, ("ap1",)))
    assert r.reason is Reason.APPROVERS_REQUIRED and "got 1" in r.detail


def test_same_approver_twice_counts_once() -> None:
    r = push(KIT.bundle(KIT.config(mode="active"), 4, ("ap1", "ap1")))
    assert r.reason is Reason.APPROVERS_REQUIRED and "got 1" in r.detail


def test_two_distinct_approvers_enable_active() -> None:
    outcome = evaluate(KIT.bundle(KIT.config(mode="active"), 4, ("ap1", "ap2")), current(),
                       shadow())
    assert isinstance(outcome, Accepted) and outcome.config.mode is Mode.ACTIVE


def test_demotion_to_shadow_needs_any_trusted_signer() -> None:
    cur = current(KIT.config(mode="active"))
    active = Situation(Mode.ACTIVE, outputs_safe=False, wall_now=time.time())
    outcome = evaluate(KIT.bundle(KIT.config(), 4, ("op1",)), cur, active)
    assert isinstance(outcome, Accepted) and outcome.config.mode is Mode.SHADOW


def test_replay_of_the_same_version() -> None:
    r = push(KIT.bundle(KIT.config(), 3, ("op1",)), current(last_version=3))
    assert r.reason is Reason.REPLAY


def test_rollback_to_a_lower_version() -> None:
    r = push(KIT.bundle(KIT.config(), 2, ("op1",)), current(last_version=3))
    assert r.reason is Reason.ROLLBACK and "below" in r.detail


def test_expired() -> None:
    old = int(time.time()) - 7200
    r = push(KIT.bundle(KIT.config(), 4, ("op1",), issued=old, lifetime=3600))
    assert r.reason is Reason.EXPIRED


def test_not_yet_valid() -> None:
    r = push(KIT.bundle(KIT.config(), 4, ("op1",), issued=int(time.time()) + 3600))
    assert r.reason is Reason.NOT_YET_VALID


def test_other_device() -> None:
    r = push(KIT.bundle(KIT.config(), 4, ("op1",), device="tank-02"))
    assert r.reason is Reason.WRONG_DEVICE and "tank-02" in r.detail


def test_config_cannot_change_device_id() -> None:
    r = push(KIT.bundle(KIT.config(device="tank-02"), 4, ("saf1",)))
    assert r.reason is Reason.INVALID_CONFIG and "device_id" in r.detail


def test_oversized() -> None:
    padding = "# " + "x" * 100 + "\n"
    text = KIT.config(padding * (BUNDLE_MAX // 100))
    r = push(KIT.bundle(text, 4, ("op1",)))
    assert r.reason is Reason.TOO_LARGE and r.version is None


def test_malformed_bundle_bytes() -> None:
    for data in (b"", b"\xc1", b"\x93\x01\x02\x03", b"\x80"):
        assert push(data).reason is Reason.MALFORMED


def test_malformed_toml() -> None:
    r = push(KIT.bundle(KIT.config("[telemetry\nwindow = 3\n"), 4, ("op1",)))
    assert r.reason is Reason.BAD_TOML


def test_semantic_violation_schema() -> None:
    r = push(KIT.bundle(KIT.config("[telemetry]\nwindwo = 3\n"), 4, ("op1",)))
    assert r.reason is Reason.INVALID_CONFIG and "telemetry.windwo" in r.detail


def test_semantic_violation_against_the_profile() -> None:
    text = KIT.config("[overrides.outputs.heater_power]\nmaximum = 150.0\n")
    r = push(KIT.bundle(text, 4, ("eng1",)))
    assert r.reason is Reason.INVALID_CONFIG
    assert "overrides.outputs.heater_power.maximum" in r.detail and "narrow" in r.detail


@pytest.mark.parametrize("safe", [False, True])
def test_safety_change_while_active(safe: bool) -> None:
    cur = current(KIT.config(mode="active"))
    situation = Situation(Mode.ACTIVE, outputs_safe=safe, wall_now=time.time())
    text = KIT.config("[overrides.trips.overtemperature]\nlimit = 90.0\n", mode="active")
    outcome = evaluate(KIT.bundle(text, 4, ("saf1",)), cur, situation)
    if safe:  # in fail-safe the same bundle is fine
        assert isinstance(outcome, Accepted)
    else:
        assert isinstance(outcome, Rejected)
        assert outcome.reason is Reason.SAFETY_CHANGE_WHILE_ACTIVE
        assert "shadow" in outcome.detail


def test_safety_change_in_shadow_is_fine() -> None:
    text = KIT.config("[confirm]\nwindow_s = 5.0\n")
    assert isinstance(evaluate(KIT.bundle(text, 4, ("saf1",)), current(), shadow()), Accepted)


def test_device_constant() -> None:
    assert current().config.device_id == DEVICE


def test_every_reason_can_go_on_the_wire() -> None:
    from agent.model.messages import CONFIG_REASONS, ConfigPush, ConfigResult
    from agent.protocol.twin.schema import decode_agent, decode_twin, to_wire

    assert {r.value for r in Reason} <= set(CONFIG_REASONS)
    data = KIT.bundle(KIT.config(), 4, ("op1",))
    assert decode_twin(to_wire(ConfigPush(data))) == ConfigPush(data)
    result = ConfigResult(4, False, "replay", "version 4 was already applied")
    assert decode_agent(to_wire(result)) == result
