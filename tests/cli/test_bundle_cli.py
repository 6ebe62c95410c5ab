"""CLI: keys new, config sign / cosign / verify, audit verify / show."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.cli.main import main as cli
from agent.io.audit import AuditKind, AuditLog

pytestmark = pytest.mark.timeout(30)


def new_key(keys: Path, kid: str, role: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli(["keys", "new", "--id", kid, "--role", role, "--out", str(keys)]) == 0
    entry = capsys.readouterr().out
    assert f'id = "{kid}"' in entry and f'role = "{role}"' in entry
    return entry.split("\n", 1)[1]  # drop the comment line


def test_keys_sign_cosign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    trust = "".join(new_key(keys, k, r, capsys) for k, r in
                    (("eng", "engineer"), ("ap1", "approver"), ("ap2", "approver")))
    assert (keys / "eng.key").stat().st_mode & 0o777 == 0o600
    assert cli(["keys", "new", "--id", "eng", "--role", "engineer", "--out", str(keys)]) == 1
    factory = tmp_path / "agent.toml"
    factory.write_text(f'device_id = "tank-01"\n\n{trust}')
    new = tmp_path / "new.toml"
    new.write_text(f'device_id = "tank-01"\nmode = "active"\n\n{trust}')
    b1, b2 = tmp_path / "b1.bundle", tmp_path / "b2.bundle"
    assert cli(["config", "sign", "--key", str(keys / "ap1.key"), "--version", "1",
                "--device", "tank-01", str(new), "-o", str(b1)]) == 0
    capsys.readouterr()
    assert cli(["config", "verify", str(b1), "--config", str(factory)]) == 1
    assert "rejected approvers_required" in capsys.readouterr().out
    assert cli(["config", "cosign", "--key", str(keys / "ap2.key"), str(b1), "-o", str(b2)]) == 0
    capsys.readouterr()
    assert cli(["config", "verify", str(b2), "--config", str(factory)]) == 0
    out = capsys.readouterr().out
    assert "signed by ap1, ap2" in out and "accepted" in out and "mode active" in out
    assert cli(["config", "verify", str(b2)]) == 3  # no --config: decoded, NOT checked
    assert cli(["config", "sign", "--key", str(keys / "eng.key"), "--version", "2",
                "--device", "tank-02", str(new), "-o", str(tmp_path / "x")]) == 2
    (tmp_path / "junk").write_bytes(b"\x00junk")
    assert cli(["config", "verify", str(tmp_path / "junk")]) == 1


def test_audit_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with AuditLog(tmp_path / "audit.sqlite") as log:
        log.append(AuditKind.MODE_CHANGE, old="shadow", new="active", keys=["ap1", "ap2"])
        log.append(AuditKind.ACK, source="button")
    assert cli(["audit", "verify", "--state-dir", str(tmp_path)]) == 0
    assert "2 records, chain verified" in capsys.readouterr().out
    assert cli(["audit", "show", "--state-dir", str(tmp_path), "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert "ack" in out and "source=button" in out and "mode_change" not in out
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET body = replace(body, 'button', 'cli') WHERE seq = 2")
    db.commit()
    db.close()
    assert cli(["audit", "verify", "--file", str(tmp_path / "audit.sqlite")]) == 1
    assert "VERIFICATION FAILED" in capsys.readouterr().out
    assert cli(["audit", "verify", "--state-dir", str(tmp_path / "none")]) == 2
