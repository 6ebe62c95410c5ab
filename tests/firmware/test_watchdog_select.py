"""Which watchdog ``firmware_bridge`` hands out, and the refusal when native is required.

Each case imports the package in a fresh interpreter, since the choice is made at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import firmware_bridge as fb
print(fb.NATIVE, fb.Watchdog.__module__)
try:
    fb.load_watchdog(require_native=True)
    print("required-ok")
except RuntimeError as exc:
    print("required-refused:", exc)
print(fb.load_watchdog(require_native=False).__module__)
"""


def probe(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TWINGUARD_WATCHDOG", None)
    if env_value is not None:
        env["TWINGUARD_WATCHDOG"] = env_value
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("value", [None, "", "auto", "native", "NATIVE"])
@pytest.mark.timeout(40)
def test_native_is_chosen_when_built(value: str | None) -> None:
    out = probe(value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "True firmware_bridge.native",
        "required-ok",
        "firmware_bridge.native",
    ]


@pytest.mark.timeout(40)
def test_forcing_python_is_refused_when_native_is_required() -> None:
    out = probe("python")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False firmware_bridge.pywatchdog"
    assert lines[1].startswith("required-refused:")
    assert "TWINGUARD_WATCHDOG=python" in lines[1]
    assert lines[2] == "firmware_bridge.pywatchdog"
    assert "cannot fire while the GIL is held" in out.stderr  # logged warning on fallback


@pytest.mark.timeout(40)
def test_a_typo_in_the_variable_is_an_error() -> None:
    out = probe("nativ")
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "TWINGUARD_WATCHDOG" in out.stderr


@pytest.mark.timeout(40)
def test_missing_native_falls_back_or_refuses(tmp_path: Path) -> None:
    """A copy without the .so: auto falls back, native is an ImportError, required refuses."""
    pkg = tmp_path / "firmware_bridge"
    pkg.mkdir()
    for name in ("__init__.py", "api.py", "native.py", "pywatchdog.py", "results.py"):
        (pkg / name).write_bytes((ROOT / "firmware_bridge" / name).read_bytes())
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("TWINGUARD_WATCHDOG", None)
    run = [sys.executable, "-S", "-c", PROBE]  # -S: no site, so no editable-install finder
    auto = subprocess.run(
        run, capture_output=True, text=True, env=env, timeout=30, check=False, cwd=tmp_path
    )
    assert auto.returncode == 0, auto.stderr
    lines = auto.stdout.splitlines()
    assert lines[0] == "False firmware_bridge.pywatchdog"
    assert lines[1].startswith("required-refused:") and "cannot be imported" in lines[1]
    env["TWINGUARD_WATCHDOG"] = "native"
    forced = subprocess.run(
        run, capture_output=True, text=True, env=env, timeout=30, check=False, cwd=tmp_path
    )
    assert forced.returncode != 0 and "ImportError" in forced.stderr
