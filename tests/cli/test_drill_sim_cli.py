"""``twinguard drill --sim`` is the campaign of ``python -m sim drill`` (issue 16): the
options pass through unchanged, and bad usage is refused before any plant is started."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.cli.drillsim import campaign_argv
from agent.cli.main import build_parser

pytestmark = pytest.mark.timeout(60)


def test_the_options_pass_through_to_the_campaign() -> None:
    args = build_parser().parse_args(
        ["drill", "--sim", "--faults", "12", "--seed", "7", "--kind", "twin-bye", "--kind",
         "python-hang", "--json", "-o", "out.html", "--workdir", "/tmp/w"])
    assert campaign_argv(args) == ["--faults", "12", "--seed", "7", "--kind", "twin-bye",
                                   "--kind", "python-hang", "--json", "-o", "out.html",
                                   "--workdir", "/tmp/w"]


@pytest.mark.parametrize(("argv", "says"), [
    (["--kind", "no-such"], "unknown kind no-such"),
    (["--faults", "0"], "--faults must be at least 1"),
])
def test_bad_usage_is_refused_before_a_plant_starts(argv: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "drill", "--sim", *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "seed" not in done.stderr, "no campaign was started"
