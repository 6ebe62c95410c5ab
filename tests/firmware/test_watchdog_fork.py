"""A fork()ed child of an armed watchdog: exits promptly, holds none of the dup'd fds.

The child has no watchdog thread (fork copies only the calling thread), but inherits the
watchdog's state, its mutex and condition variables in whatever state the parent's thread
left them, and the dup'd PLC socket and hw watchdog fds. tests/firmware/watchdog_fork_child.py
arms a watchdog and forks 20 children one after the other; for each, the parent reads
``/proc/<child>/fd`` while the child runs, then lets it exit through interpreter shutdown.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from watchdog_kit import child_env

from firmware_bridge import WatchdogAPI, _watchdog

CHILD = Path(__file__).with_name("watchdog_fork_child.py")
FORKS = 20


@pytest.mark.timeout(120)
def test_forked_children_exit_promptly_and_hold_no_dup(
    impl: type[WatchdogAPI], tmp_path: Path
) -> None:
    kind = "native" if impl.__module__.endswith("_watchdog") else "python"
    cfg = {"impl": kind, "forks": FORKS, "hw_path": str(tmp_path / "hw"), "exit_timeout_s": 20.0}
    out = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(cfg)],
        capture_output=True, text=True, env=child_env(), timeout=100, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["module"] == _watchdog.__file__, "the child runs the same C build as this"
    children = report["children"]
    assert [c["status"] for c in children] == [0] * FORKS, (
        "0: inert and exited; 3: the inherited watchdog was not inert; 'hung': did not exit"
    )
    assert [c["held"] for c in children] == [[]] * FORKS, "no dup'd fd survives in a child"
    assert report["parent_fired"], "the parent's own watchdog still fires after the forks"
