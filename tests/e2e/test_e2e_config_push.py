"""End to end: signed config bundles pushed by the sim twin to a real agent.

Every refusal is seen from outside (the sim twin gets the reason in ``config_result``; the
audit log has the record) while the plant stays in its safe behaviour (the sim PLC's write
log: nothing but the safe set); an accepted promotion to ``active`` and the replay protection
survive a restart; a bundle that breaks the twin link is reverted by the agent itself within
its confirmation window, and in shadow mode the lost link writes nothing (issue 12).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from bundle_kit import Kit

from agent.config.bundle import BUNDLE_MAX, Bundle, decode
from agent.io.audit import AuditLog
from agent.runtime.loop import LINK_AUDIT_MIN_S
from sim.stack import DEVICE_ID, Stack, output_writes, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SAFE_RAW = {"heater_power": 0, "cooling_valve": 1000}


class Pusher:
    def __init__(self, stack: Stack, kit: Kit) -> None:
        self.stack, self.kit, self.n = stack, kit, 0
        self.base = stack.config_path.read_text()

    def bundle(self, text: str, version: int, signers: tuple[str, ...], **kw: Any) -> bytes:
        return self.kit.bundle(text, version, signers, device=kw.pop("device", DEVICE_ID), **kw)

    def push(self, data: bytes) -> None:
        self.n += 1
        path = self.stack.workdir / f"b{self.n}.bundle"
        path.write_bytes(data)
        reply = self.stack.twin.request({"cmd": "push", "path": str(path)})
        assert reply["ok"] and reply["connections"] == 1, reply

    def result(self, reason: str, since: float, timeout: float = 10.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            for r in self.stack.twin.stats(last=50)["config_results"]:
                if r["t"] >= since and r["reason"] == reason:
                    return r  # type: ignore[no-any-return]
            return None
        try:
            return wait_for(seen, timeout, f"config_result {reason}")  # type: ignore[no-any-return]
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.stack.twin.stats(last=20)['config_results']}\n"
                               f"{self.stack.agent_stderr()[-3000:]}") from exc

    def expect(self, data: bytes, reason: str) -> dict[str, Any]:
        since = time.monotonic()
        self.push(data)
        return self.result(reason, since)


def factory_extra(kit: Kit, window_s: float) -> str:
    return f"[confirm]\nwindow_s = {window_s}\n{kit.trust_toml()}"


def audit(stack: Stack) -> list[Any]:
    with AuditLog(stack.state_dir / "audit.sqlite") as log:
        result = log.verify()
        assert result.ok, result.problems
        return list(log.records())


def assert_only_safe_writes(stack: Stack) -> None:
    log = stack.plc.write_log()
    for name, raw in SAFE_RAW.items():
        for w in output_writes(log, name):
            index = w["names"].index(name)
            assert w["values"][index] == raw, f"{name} written {w['values']} at {w['t']}"


def test_every_refusal_is_seen_from_outside_and_the_plant_stays_safe() -> None:
    kit = Kit.new()
    with Stack(config_extra=factory_extra(kit, 5.0)) as stack:
        p = Pusher(stack, kit)
        t_normal = stack.wait_state("normal")
        engineer = p.base + "\n[recommendations]\nmax_validity_s = 30.0\n"
        accepted = p.expect(p.bundle(engineer, 5, ("eng1",)), "accepted")
        assert accepted["version"] == 5 and accepted["accepted"]
        p.result("confirmed", t_normal)

        good = decode(p.bundle(p.base + "\n[telemetry]\nwindow = 10\n", 6, ("op1",)))
        forged = Bundle(good.device_id, good.version, good.issued_at, good.expires_at,
                        good.config.replace("window = 10", "window = 11"), good.signatures)
        stranger = Kit.new()
        stranger.keys["mallory"] = stranger.keys.pop("saf1")
        active = engineer.replace('mode = "shadow"', 'mode = "active"')  # v5 is in force
        cases = [
            (forged.encode(), "bad_signature"),
            (stranger.bundle(p.base, 6, ("mallory",), device=DEVICE_ID), "unknown_key"),
            (p.bundle(p.base + "\n[overrides.trips.overtemperature]\nlimit = 90.0\n", 6,
                      ("eng1",)), "role_not_allowed"),
            (p.bundle(active, 6, ("ap1",)), "approvers_required"),
            (p.bundle(active, 6, ("ap1", "ap1")), "approvers_required"),
            (p.bundle(engineer, 5, ("eng1",)), "replay"),
            (p.bundle(engineer, 4, ("eng1",)), "rollback"),
            (p.bundle(engineer, 6, ("eng1",), issued=int(time.time()) - 7200, lifetime=3600),
             "expired"),
            (p.bundle(engineer, 6, ("eng1",), device="tank-99"), "wrong_device"),
            (p.bundle(engineer + "#" * BUNDLE_MAX, 6, ("eng1",)), "too_large"),
            (p.bundle(engineer + "\n[telemetry\n", 6, ("op1",)), "bad_toml"),
            (p.bundle(p.base + "\n[overrides.outputs.heater_power]\nmaximum = 150.0\n", 6,
                      ("eng1",)), "invalid_config"),
        ]
        for data, reason in cases:
            result = p.expect(data, reason)
            assert not result["accepted"], result
        assert stack.agent_state() == "normal"
        statuses = [s for s in stack.twin.stats(last=500)["statuses"] if s[0] >= t_normal]
        assert {s[2] for s in statuses} == {"normal"}, "a refusal disturbed the plant"
        assert output_writes(stack.plc.write_log(), "heater_power", since=t_normal) == []

        # two distinct approvers promote to active; a safety change is then refused
        p.expect(p.bundle(active, 6, ("ap1", "ap2")), "accepted")
        p.result("confirmed", t_normal)
        safety = active + "\n[overrides.trips.overtemperature]\nlimit = 90.0\n"
        p.expect(p.bundle(safety, 7, ("saf1",)), "safety_change_while_active")

        # a restart: the stored version wins over --config, and a rollback is still refused
        assert stack.agent is not None
        stack.agent.stop()
        t_restart = time.monotonic()
        stack.start_agent()
        stack.wait_state("normal", since=t_restart)
        assert stack.twin.stats(last=1)["statuses"][-1][3] == "active"
        p.expect(p.bundle(engineer, 3, ("eng1",)), "rollback")
        assert_only_safe_writes(stack)
        stack.agent.stop()
        records = audit(stack)
    rejected = [r.fields["reason"] for r in records if r.kind == "bundle_rejected"]
    assert sorted(rejected) == sorted([reason for _, reason in cases]
                                      + ["safety_change_while_active", "rollback"])
    assert [r.fields["version"] for r in records if r.kind == "bundle_accepted"] == [5, 6]
    kinds = [r.kind for r in records]
    # (no failsafe_enter: neither a refusal, nor a promotion, nor a stop is a hazard; a
    # restart slower than the PLC's watchdog may still latch it: see test_e2e_release)
    assert {"mode_change", "config_confirmed", "agent_start", "agent_stop"} <= set(kinds)
    assert kinds.count("agent_start") == 2 and kinds.count("agent_stop") == 2
    unknown = next(r for r in records if r.fields.get("reason") == "unknown_key")
    assert unknown.fields["keys"] == ["mallory"]


def test_a_bundle_that_breaks_the_twin_link_is_reverted_within_the_window() -> None:
    kit = Kit.new()
    window = 2.0
    with Stack(config_extra=factory_extra(kit, window)) as stack:
        p = Pusher(stack, kit)
        t_normal = stack.wait_state("normal")
        stack.wait_twin("alive")
        # the link's edges are audited at most every LINK_AUDIT_MIN_S: let the ALIVE one age
        time.sleep(LINK_AUDIT_MIN_S + 0.5)
        port = stack.twin.port
        broken = p.base.replace(f"port = {port}", "port = 9")  # nothing listens there
        assert broken != p.base
        t_push = time.monotonic()
        p.expect(p.bundle(broken, 1, ("eng1",)), "accepted")
        reverted = p.result("reverted", t_push, timeout=window + 10.0)
        assert reverted["version"] == 1 and not reverted["accepted"]
        # the agent reconnected on the old port by itself, told the twin, and recovered
        assert reverted["t"] - t_push < window + 3.0
        stack.wait_state("normal", since=reverted["t"])
        stack.wait_twin("alive")
        assert [w for w in stack.plc.write_log() if w["t"] >= t_normal and w["source"] ==
                "modbus" and w["address"] != 200] == [], "shadow: the lost link writes nothing"
        statuses = {s[2] for s in stack.twin.stats(last=500)["statuses"] if s[0] >= t_normal}
        assert statuses == {"normal"}, "the plant ran on through the outage"
        records = audit(stack)
    assert [r.kind for r in records if r.kind.startswith(("bundle", "config"))] == [
        "bundle_accepted", "config_reverted"]
    kinds = [r.kind for r in records]
    assert "failsafe_enter" not in kinds
    # the old session ended when the agent re-dialled: the link's LOST edge is audited
    lost = next(i for i, r in enumerate(records)
                if r.kind == "twin_link" and r.fields["new"] == "lost")
    assert kinds.index("bundle_accepted") < lost < kinds.index("config_reverted")
