"""``twinguard run`` refuses a device key its group or others may read, naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.io.pki import init_pki

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_run_refuses_a_device_key_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    pki = init_pki(tmp_path / "pki", device_id="tank-01")
    pki.device_key.chmod(mode)
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "tank-01"\nmode = "shadow"\n\n[twin]\nhost = "127.0.0.1"\nport = 9\n'
        f'server_name = "localhost"\nca = "{pki.ca_cert}"\ncert = "{pki.device_cert}"\n'
        f'key = "{pki.device_key}"\n')
    env = {**os.environ, "TWINGUARD_WATCHDOG": "python"}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--profile", "sim-tank", "--config", str(config),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=50, env=env, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"device key {pki.device_key} (twin.key) is mode {mode:04o}" in result.stderr
    assert f"chmod 600 {pki.device_key}" in result.stderr
    assert not (tmp_path / "state" / "twinguard.sock").exists()  # it never started serving


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_passes(tmp_path: Path, mode: int) -> None:
    from agent.io.twin.settings import check_private_key
    key = tmp_path / "device.key"
    key.write_bytes(b"x")
    key.chmod(mode)
    check_private_key(key)  # does not raise
