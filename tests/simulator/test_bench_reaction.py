"""The reaction benchmark runs end to end on both paths and prints the documented JSON.

Shape and sanity only (finite numbers, the right keys and trial count), never timing
thresholds: the numbers themselves belong to the benchmark's report, not to a test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def bench(path: str, trials: int = 2) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "reaction", "--path", path, "--trials",
         str(trials), "--json"],
        capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, object] = json.loads(lines[0])
    assert done.stderr.count("trial ") >= trials, "one progress line per trial on stderr"
    return result


@pytest.mark.parametrize(("path", "bound_key"), [("python", "timeout_ms"),
                                                 ("native", "deadline_ms")])
def test_reaction_json(path: str, bound_key: str) -> None:
    result = bench(path)
    assert set(result) == {"path", "trials", bound_key, "p50_ms", "p99_ms", "max_ms"}
    assert result["path"] == path and result["trials"] == 2
    values = [result[k] for k in ("p50_ms", "p99_ms", "max_ms")]
    assert all(isinstance(v, float | int) and math.isfinite(v) for v in values), result
    p50, p99, worst = (float(v) for v in values)  # type: ignore[arg-type]
    assert p50 <= p99 <= worst
    bound = result[bound_key]
    assert isinstance(bound, int) and bound > 0
