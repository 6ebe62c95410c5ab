"""Child for the push crash test: push stored bundles through a ConfigSession until killed.

    python tests/runtime/configpush_child.py STATE_DIR FACTORY BUNDLE_DIR POINT

Opens the session the way the agent does at start (``ConfigSession.open``: recovery first),
then pushes every ``BUNDLE_DIR/v*.bundle`` whose version is above the store's last one, in
order. ``POINT`` says where to stop for the parent's ``kill -9``:

- ``stored``: the bundle is staged on disk and its ``bundle_accepted`` record not written
  (the child prints ``at stored VERSION`` and waits);
- ``audited``: the record is written and the version not yet in force (``at audited V``);
- ``bundle``: the staged ``.bundle`` is written and the ``.toml`` not renamed into place
  (``at bundle V``);
- ``head``: inside the audit log's head-anchor write, its temporary file written and not
  renamed (``at head V``);
- ``random``: no stop; the child prints ``ready`` and pushes until it is killed.

The stops are the real code paths with a pause added in this child only (a wrapper around
``AuditLog.append`` / ``ConfigStore.commit`` / ``os.replace``), so the kill lands exactly
between two steps.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile
from agent.config.push import Situation
from agent.io.audit import AuditKind, AuditLog
from agent.io.configstore import ConfigStore
from agent.model.mode import Mode
from agent.runtime.configsession import ConfigSession


def stop_here(point: str, version: int) -> None:
    print(f"at {point} {version}", flush=True)
    threading.Event().wait()  # until SIGKILL


def main() -> None:
    state, factory, bundles, point = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), \
        sys.argv[4]
    if point == "stored":
        append = AuditLog.append

        def paused_append(self: AuditLog, kind: AuditKind | str, **fields: Any) -> Any:
            if kind is AuditKind.BUNDLE_ACCEPTED and not fields.get("recovered"):
                stop_here(point, fields["version"])
            return append(self, kind, **fields)

        AuditLog.append = paused_append  # type: ignore[method-assign]
    elif point == "audited":
        commit = ConfigStore.commit

        def paused_commit(self: ConfigStore, version: int) -> None:
            stop_here(point, version)
            commit(self, version)

        ConfigStore.commit = paused_commit  # type: ignore[method-assign]
    elif point in ("bundle", "head"):
        replace = os.replace
        pushing = [0]

        def paused_replace(src: Any, dst: Any, **kwargs: Any) -> None:
            name = Path(dst).name
            if pushing[0] and (name.endswith(".toml") if point == "bundle"
                               else name == "audit.sqlite.head"):
                stop_here(point, pushing[0])
            replace(src, dst, **kwargs)

        os.replace = paused_replace
    session = ConfigSession.open(load_profile("sim-tank"), load_config(factory), state, 0.0)
    if point == "random":
        print("ready", flush=True)
    for path in sorted(bundles.glob("v*.bundle")):
        if int(path.stem[1:]) <= session.store.last_version:
            continue
        if point in ("bundle", "head"):
            pushing[0] = int(path.stem[1:])
        situation = Situation(Mode.SHADOW, outputs_safe=True, wall_now=time.time())
        step = session.push(path.read_bytes(), situation, time.monotonic())
        assert step.results and step.results[0].accepted, step.results
        session.tick(time.monotonic(), twin_alive=int(path.stem[1:]) % 2 == 0)
    print("done", flush=True)


if __name__ == "__main__":
    main()
