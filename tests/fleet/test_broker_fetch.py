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
