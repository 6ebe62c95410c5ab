"""A process that arms a watchdog and then fork()s N children (run by test_watchdog_fork).

    python tests/firmware/watchdog_fork_child.py '<json config>'

Config keys: ``impl`` ("native" | "python"), ``forks`` (how many children, one at a time),
``hw_path`` (a file given as the hw watchdog fd), ``exit_timeout_s`` (how long a released
child may take to exit before it is called hung and killed).

The parent arms a watchdog with one end of a socket pair (``fd_writes``) and the hw file,
closes its own copies of both (only the watchdog's dups remain) and feeds every 10 ms, so the
watchdog thread is busy around every fork. Each child tells the parent it is running, waits
to be released, and (every second child) checks that the inherited watchdog is inert
(``arm()`` and ``kick()`` raise ValueError naming fork, ``stats()`` says disarmed, ``tid``
is 0, ``disarm()`` returns); then it leaves through normal interpreter shutdown, where the
watchdog is deallocated. Its exit code is 0 if those checks passed (or were not made), 3 if
not. While the child waits, the parent reads
``/proc/<child>/fd`` and reports every entry that points at one of the dup'd files.

After the children the parent re-arms with a short deadline to show its own watchdog still
fires (a new socket pair's other end receives the payload). One JSON line on stdout::

    {"children": [{"pid", "held": [link, ...], "status": int | "hung", "exit_s"}, ...],
     "parent_fired": bool, "module": the file the C core was loaded from, or null}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

WD: Any = None  # module global: deallocated at interpreter shutdown, as an agent's would be


def child_checks(wd: Any) -> bool:
    """Inside the child: the inherited watchdog is inert and says so."""
    ok = True
    for call in (lambda: wd.arm(1.0), wd.kick):
        try:
            call()
            ok = False
        except ValueError as exc:
            ok = ok and "fork" in str(exc)
    ok = ok and wd.stats()["armed"] is False
    ok = ok and wd.tid == 0  # no watchdog thread here: no id to set a priority through
    wd.disarm()
    return ok


def fd_links(pid: int) -> list[str]:
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between listdir and readlink
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return out


def one_child(dups: set[str], timeout_s: float, check: bool) -> dict[str, object]:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        ok = child_checks(WD) if check else True
        sys.stdout.flush()
        raise SystemExit(0 if ok else 3)  # interpreter shutdown deallocates WD
    os.close(ready_w)
    os.close(go_r)
    os.read(ready_r, 1)
    held = [link for link in fd_links(pid) if link in dups]
    os.write(go_w, b"g")
    released = time.monotonic()
    status: int | str = "hung"
    while time.monotonic() - released < timeout_s:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.002)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(ready_r)
    os.close(go_w)
    return {"pid": pid, "held": held, "status": status, "exit_s": time.monotonic() - released}


def main() -> int:
    global WD  # noqa: PLW0603 - the point is a module-level watchdog
    cfg = json.loads(sys.argv[1])
    if cfg["impl"] == "native":
        from firmware_bridge.native import Watchdog
    else:
        from firmware_bridge.pywatchdog import Watchdog  # type: ignore[assignment]
    WD = Watchdog()
    ours, _peer = socket.socketpair()  # _peer kept open: the dup stays a live socket
    hw = os.open(cfg["hw_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    dups = {os.readlink(f"/proc/self/fd/{ours.fileno()}"), os.readlink(f"/proc/self/fd/{hw}")}
    WD.arm(60.0, fd_writes=[(ours.fileno(), b"SAFE")], hw_watchdog_fd=hw,
           hw_feed_interval_s=0.01)
    ours.close()
    os.close(hw)
    children: list[dict[str, object]] = []
    for i in range(cfg["forks"]):
        children.append(one_child(dups, cfg["exit_timeout_s"], check=i % 2 == 1))
        if children[-1]["status"] == "hung":
            break  # one is enough; do not spend exit_timeout_s on each of the rest
    again, again_peer = socket.socketpair()
    WD.arm(0.02, fd_writes=[(again.fileno(), b"SAFE")], reply_timeout_s=0.0)
    again_peer.settimeout(5.0)
    fired = again_peer.recv(4) == b"SAFE"
    WD.close()
    core = sys.modules.get("firmware_bridge._watchdog")
    module = None if core is None else core.__file__
    print(json.dumps({"children": children, "parent_fired": fired, "module": module}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
