"""The agent's config push session: store, audit, live vs restart, confirmation window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bundle_kit import Kit

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile
from agent.config.push import Situation
from agent.io.audit import AuditLog
from agent.model.mode import Mode
from agent.runtime.configsession import ConfigSession

pytestmark = pytest.mark.timeout(20)

PROFILE = load_profile("sim-tank")
TWIN = '[twin]\nhost = "127.0.0.1"\nport = {port}\nca = "ca.crt"\ncert = "d.crt"\nkey = "d.key"\n'


@pytest.fixture
def kit() -> Kit:
    return Kit.new()


def situation() -> Situation:
    return Situation(Mode.SHADOW, outputs_safe=True, wall_now=time.time())


def session(tmp_path: Path, kit: Kit, now: float = 0.0) -> ConfigSession:
    factory = tmp_path / "agent.toml"
    if not factory.exists():
        factory.write_text(kit.config(TWIN.format(port=15021)))
    return ConfigSession.open(PROFILE, load_config(factory), tmp_path / "state", now)


def kinds(tmp_path: Path) -> list[str]:
    with AuditLog(tmp_path / "state" / "audit.sqlite") as log:
        assert log.verify().ok
        return [r.kind for r in log.records()]


def test_live_change_confirmed_when_twin_alive(tmp_path: Path, kit: Kit) -> None:
    s = session(tmp_path, kit)
    text = kit.config(TWIN.format(port=15021) + "[recommendations]\nmax_validity_s = 5.0\n")
    step = s.push(kit.bundle(text, 1, ("eng1",)), situation(), now=1.0)
    assert step.results[0].accepted and step.results[0].reason == "accepted"
    assert not step.restart and not step.relink and step.config is not None
    assert s.config.max_validity_s == 5.0 and s.pending is not None
    assert s.tick(2.0, twin_alive=False).results == ()
    confirmed = s.tick(3.0, twin_alive=True)
    assert confirmed.results[0].reason == "confirmed"
    assert s.store.good_version == 1 and s.pending is None
    assert kinds(tmp_path) == ["bundle_accepted", "config_confirmed"]


def test_broken_twin_link_is_reverted_after_the_window(tmp_path: Path, kit: Kit) -> None:
    s = session(tmp_path, kit)
    text = kit.config(TWIN.format(port=1) + "\n")
    step = s.push(kit.bundle(text, 1, ("eng1",)), situation(), now=10.0)
    assert step.relink and s.config.twin is not None and s.config.twin.port == 1
    window = s.config.confirm_window_s
    assert s.tick(10.0 + window - 0.1, twin_alive=False) == type(step)()
    reverted = s.tick(10.0 + window, twin_alive=False)
    assert reverted.results[0].reason == "reverted" and not reverted.results[0].accepted
    assert reverted.relink and s.config.twin is not None and s.config.twin.port == 15021
    assert s.version == 0 and s.store.last_version == 1  # the bad version is never reused
    refused = s.push(kit.bundle(text, 1, ("eng1",)), situation(), now=100.0)
    assert refused.results[0].reason == "replay"
    assert kinds(tmp_path) == ["bundle_accepted", "config_reverted", "bundle_rejected"]


def test_restart_class_changes_and_unconfirmed_version_at_start(tmp_path: Path, kit: Kit) -> None:
    s = session(tmp_path, kit)
    text = kit.config(TWIN.format(port=15021) + "[telemetry]\nwindow = 10\n")
    step = s.push(kit.bundle(text, 4, ("op1",)), situation(), now=0.0)
    assert step.restart and "restart required" in (step.results[0].detail or "")
    again = session(tmp_path, kit, now=50.0)  # the agent restarted to apply it
    assert again.version == 4 and again.config.telemetry.window == 10
    assert again.pending == (4, 50.0 + again.config.confirm_window_s)


def test_refusal_is_answered_and_audited(tmp_path: Path, kit: Kit) -> None:
    s = session(tmp_path, kit)
    text = kit.config(TWIN.format(port=15021), mode="active")
    step = s.push(kit.bundle(text, 1, ("ap1",)), situation(), now=0.0)
    assert step.config is None and step.results[0].reason == "approvers_required"
    assert s.store.last_version == 0
    with AuditLog(tmp_path / "state" / "audit.sqlite") as log:
        record = list(log.records())[-1]
    assert record.kind == "bundle_rejected" and record.fields["keys"] == ["ap1"]


def test_promotion_changes_mode_and_is_audited(tmp_path: Path, kit: Kit) -> None:
    s = session(tmp_path, kit)
    text = kit.config(TWIN.format(port=15021), mode="active")
    step = s.push(kit.bundle(text, 2, ("ap1", "ap2")), situation(), now=0.0)
    assert step.mode is Mode.ACTIVE and not step.restart
    assert kinds(tmp_path) == ["bundle_accepted", "mode_change"]


def test_stored_version_without_audit_record_is_recorded_at_start(tmp_path: Path,
                                                                  kit: Kit) -> None:
    """What an agent before the journal left after a kill between store and audit."""
    session(tmp_path, kit).audit.close()  # type: ignore[union-attr]
    from agent.io.configstore import ConfigStore
    store = ConfigStore(tmp_path / "state" / "config")
    for version, signers in ((1, ("eng1",)), (2, ("ap2", "ap1"))):
        text = kit.config(TWIN.format(port=15021), mode="active" if version == 2 else "shadow")
        store.accept(version, text, kit.bundle(text, version, signers))
    again = session(tmp_path, kit)
    assert again.version == 2
    with AuditLog(tmp_path / "state" / "audit.sqlite") as log:
        assert log.verify().ok
        records = [r.fields for r in log.records() if r.kind == "bundle_accepted"]
    assert [(r["version"], r["keys"], r["recovered"], r["in_force"]) for r in records] == [
        (1, ["eng1"], True, False), (2, ["ap1", "ap2"], True, True)]
    session(tmp_path, kit)  # a second start records nothing again
    assert kinds(tmp_path).count("bundle_accepted") == 2


def test_push_whose_audit_record_cannot_be_written_is_refused(tmp_path: Path,
                                                              kit: Kit) -> None:
    s = session(tmp_path, kit)
    assert s.audit is not None
    s.audit.close()  # every append now raises sqlite3.ProgrammingError
    text = kit.config(TWIN.format(port=15021) + "[recommendations]\nmax_validity_s = 5.0\n")
    step = s.push(kit.bundle(text, 1, ("eng1",)), situation(), now=1.0)
    assert not step.results[0].accepted and step.results[0].reason == "store_failed"
    assert "audit log" in (step.results[0].detail or "")
    assert step.config is None and s.version == 0 and s.store.current_version == 0
    assert s.store.staged_version == 0 and not s.store.path_of(1).exists()
    assert s.config.max_validity_s != 5.0
