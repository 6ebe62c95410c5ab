"""``python -m sim.broker``: fetch says what is missing in one line (no traceback) when the
broker cannot be had, and where finds the binary the tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.broker import BrokerBinary

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim.broker", *args], capture_output=True,
                          text=True, timeout=50, check=False, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_fetch_without_apt_says_what_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()  # PATH with neither mosquitto nor apt-get nor dpkg-deb
    done = _run("fetch", "--cache", str(tmp_path / "cache"), env={"PATH": str(empty)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "sim.broker fetch: no mosquitto: apt-get not found (not a Debian system?): install "
        "mosquitto 2.x so that `mosquitto` is on PATH"]
    assert not (tmp_path / "cache" / "root").exists()


def test_where_names_the_binary_the_tests_use(mosquitto_binary: BrokerBinary) -> None:
    done = _run("where")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == mosquitto_binary.path


def test_fetch_reuses_what_is_there(mosquitto_binary: BrokerBinary) -> None:
    done = _run("fetch")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"mosquitto {mosquitto_binary.version}: "
                                   f"{mosquitto_binary.path} ({mosquitto_binary.source})")


def test_the_examples_are_current() -> None:
    done = _run("examples", "--check")
    assert (done.returncode, done.stderr) == (0, "")


def test_without_a_broker_the_tests_skip_saying_why(tmp_path: Path) -> None:
    """No mosquitto on PATH, an empty cache, no apt: the fixture skips with fetch's reason."""
    (tmp_path / "bin").mkdir()
    test = tmp_path / "test_needs_broker.py"
    test.write_text("def test_it(broker):\n    raise AssertionError('ran without a broker')\n")
    (tmp_path / "conftest.py").write_text(
        (Path(__file__).parent / "conftest.py").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
        capture_output=True, text=True, timeout=50, check=False, cwd=tmp_path,
        env={**os.environ, "PATH": str(tmp_path / "bin"),
             "TWINGUARD_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "no mosquitto broker (apt-get not found" in done.stdout
