"""kill -9 of a real agent-side push session at the exact steps of the store's journal and at
random moments: never a configuration in force without an audit record of who signed it.

Each kill is a fresh child (``configpush_child.py``) that opens the session as the agent does
at start and pushes signed bundles. After the kill the test looks at the files first as the
crash left them (the config in force must already have its ``bundle_accepted`` record), then
starts a session on them (recovery) and checks that every stored version has its record,
nothing half-written is left (staged pointer, ``.tmp`` files, a ``.bundle`` without its
``.toml``) and the audit chain verifies. ``TWINGUARD_CRASH_KILLS`` scales the counts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from bundle_kit import Kit

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile
from agent.io.audit import AuditKind, AuditLog, audit_path
from agent.io.configstore import ConfigStore
from agent.runtime.configrecovery import INTERRUPTED
from agent.runtime.configsession import ConfigSession

CHILD = Path(__file__).with_name("configpush_child.py")
SCALE = int(os.environ.get("TWINGUARD_CRASH_KILLS", "1"))
EXACT_KILLS = 6 * SCALE  # per exact point
RANDOM_KILLS = 30 * SCALE
BUNDLES = 40 * EXACT_KILLS + 20 * RANDOM_KILLS
TWIN = '[twin]\nhost = "127.0.0.1"\nport = 15021\nca = "ca.crt"\ncert = "d.crt"\nkey = "d.key"\n'
pytestmark = pytest.mark.timeout(300 * SCALE)


class Campaign:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.factory = root / "agent.toml"
        self.bundles = root / "bundles"
        self.bundles.mkdir()
        kit = Kit.new()
        self.factory.write_text(kit.config(TWIN))
        for version in range(1, BUNDLES + 1):
            text = kit.config(TWIN + f"[recommendations]\nmax_validity_s = {1 + version % 50}\n")
            (self.bundles / f"v{version:06d}.bundle").write_bytes(
                kit.bundle(text, version, ("eng1",), lifetime=24 * 3600))
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(CHILD.parents[2]), str(CHILD.parents[1])])}
        self.outcomes: Counter[str] = Counter()
        self.waited = 0

    def last_version(self) -> int:
        return ConfigStore(self.state / "config").last_version

    def kill(self, point: str, rng: random.Random) -> int:
        """Run a child to ``point``, kill -9 it there; the version it stopped at (0: random)."""
        child = subprocess.Popen([sys.executable, str(CHILD), str(self.state),
                                  str(self.factory), str(self.bundles), point],
                                 stdout=subprocess.PIPE, env=self.env)
        assert child.stdout is not None
        line = child.stdout.readline().decode().split()
        try:
            if point == "random":
                assert line == ["ready"], line
                if rng.random() < 0.5:  # half of them after a first push: mid-campaign
                    self.waited += 1
                    store, before = ConfigStore(self.state / "config"), self.last_version()
                    deadline = time.monotonic() + 30
                    while store.last_version == before and time.monotonic() < deadline:
                        time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.2))
                version = 0
            else:
                assert line[:2] == ["at", point], line
                version = int(line[2])
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL  # it really was killed, not finished
        return version

    def check_as_left(self) -> tuple[int, int, set[int]]:
        """The state exactly as the crash left it: (current, staged, audited versions)."""
        store = ConfigStore(self.state / "config")
        with AuditLog(audit_path(self.state)) as audit:
            audited = audit.versions(AuditKind.BUNDLE_ACCEPTED)
        current = store.current_version
        if current and current not in audited:
            self.outcomes["in force without an audit record"] += 1
        return current, store.staged_version, audited

    def start(self) -> tuple[ConfigStore, list[dict[str, object]]]:
        """Start a session on the state (the agent starting again) and check it is settled."""
        session = ConfigSession.open(load_profile("sim-tank"), load_config(self.factory),
                                     self.state, time.monotonic())
        assert session.audit is not None
        try:
            result = session.audit.verify()
            assert result.ok, result.problems
            records = [r.fields | {"kind": r.kind} for r in session.audit.records()]
        finally:
            session.audit.close()
        store = session.store
        accepted = {r["version"] for r in records if r["kind"] == "bundle_accepted"}
        assert set(store.versions()) <= accepted, (store.versions(), accepted)
        assert store.staged_version == 0
        files = {p.name for p in (self.state / "config").iterdir()}
        assert not [n for n in files if n.endswith(".tmp")], files
        assert not [p.name for p in self.state.glob(".audit.sqlite.head.*.tmp")]
        bundles = {n[:-7] for n in files if n.endswith(".bundle")}
        assert bundles == {n[:-5] for n in files if n.endswith(".toml")}, files
        assert len(bundles) <= store.keep + 2  # pruned: the last `keep` plus current, good
        return store, records


@pytest.mark.timeout(300 * SCALE)
def test_no_config_in_force_without_its_audit_record(tmp_path: Path) -> None:
    rng = random.Random(1313)
    c = Campaign(tmp_path)
    points = ["stored", "audited", "bundle", "head"] * EXACT_KILLS + ["random"] * RANDOM_KILLS
    rng.shuffle(points)
    pushed = 0
    for point in points:
        before = c.last_version()
        version = c.kill(point, rng)
        current, staged, audited = c.check_as_left()
        if point == "random":
            pushed += c.last_version() - before
            c.outcomes["random: " + ("none staged" if not staged else "staged, audited"
                                     if staged in audited else "staged, not audited")] += 1
        if point in ("stored", "bundle"):
            assert staged == version and version not in audited and current != version
        elif point == "audited":
            assert staged == version and version in audited and current != version
        elif point == "head":
            assert version in audited or staged == version
            assert list(c.state.glob(".audit.sqlite.head.*.tmp")), "no temporary left"
        store, records = c.start()
        if point in ("stored", "bundle"):
            last = records[-1]
            assert (last["kind"], last["version"], last["reason"], last["keys"]) == \
                ("bundle_rejected", version, INTERRUPTED, ["eng1"])
            assert not store.path_of(version).exists()
            assert store.bundle_of(version) is None
        elif point == "audited":
            assert store.current_version == version  # the audited push completes at start
        c.outcomes[point] += 1
    assert c.outcomes["in force without an audit record"] == 0
    assert pushed >= c.waited > 0  # the random kills landed among real pushes
    print(f"kills: {dict(c.outcomes)}; {pushed} pushes under the random kills")
