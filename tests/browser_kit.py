"""A real headless browser for the tests that check a generated HTML page: Debian's
``chromium`` (``.ci/run`` installs it), driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: fd 3 carries commands in, fd 4 replies and events out, each
message JSON ended by a NUL byte), so no driver and no Python dependency stand between the
test and the browser.

:func:`load_page` opens a file in a fresh profile, waits for its load event, evaluates the
caller's expressions in the page and returns what the page said on its console: every
``console.error``/``console.warn`` call, uncaught exception and browser log entry of level
error or warning (a missing resource, a refused script, a CSP violation). A test asserts
that list is empty and that the expressions show what the page must show.

Without a browser, :data:`needs_browser` skips the test and says how to get one.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    """The path of a Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


needs_browser = pytest.mark.skipif(
    browser() is None, reason="no headless browser (apt-get install chromium; .ci/run does)")


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw: ``problems`` (console errors and warnings, uncaught
    exceptions, browser log errors and warnings, each one line) and ``values`` (each
    expression's result, by the caller's name)."""

    problems: tuple[str, ...]
    values: dict[str, Any]


class _Pipe:
    """One DevTools connection over the browser's fd 3 / fd 4 pipes."""

    def __init__(self, to_browser: int, from_browser: int, deadline: float) -> None:
        self._out, self._in, self._deadline = to_browser, from_browser, deadline
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (kept or still to come)."""
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read()
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = self._deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise AssertionError("the browser did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise AssertionError("the browser closed its DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(raw))


def _problems(events: list[dict[str, Any]]) -> tuple[str, ...]:
    found: list[str] = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning",
                                                                            "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in
                            params.get("args", []))
            found.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(f"exception: {details.get('text')} "
                         f"{details.get('exception', {}).get('description', '')}".strip())
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") in ("error", "warning"):
                found.append(f"log {entry.get('level')} ({entry.get('source')}): "
                             f"{entry.get('text')} {entry.get('url', '')}".strip())
    return tuple(found)


def _reap(pid: int, within_s: float) -> None:
    """Wait for the browser to exit (it does once its pipe is closed); SIGKILL after
    ``within_s``."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, close-on-exec (so that a dup2 onto 3 or 4 never
    overwrites the other pipe before it is itself duplicated)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def load_page(path: Path, expressions: dict[str, str], timeout_s: float = 60.0) -> PageCheck:
    """Open ``path`` in headless Chromium, wait for its load event (and a moment for late
    console output), evaluate each of ``expressions`` (JavaScript, by name) and return what
    the page showed; AssertionError if the browser is missing, fails or is too slow."""
    exe = browser()
    if exe is None:
        raise AssertionError("no headless browser: apt-get install chromium")
    deadline = time.monotonic() + timeout_s
    cmd_r, cmd_w = os.pipe()  # the test writes commands, the browser reads them on fd 3
    res_r, res_w = os.pipe()  # the browser writes on fd 4, the test reads
    cmd_r, res_w = _above_4(cmd_r), _above_4(res_w)  # so that "3<&N 4>&M" never closes 3/4
    with tempfile.TemporaryDirectory(prefix="twinguard-browser-") as profile_dir, \
            open(Path(profile_dir) / "stderr.log", "wb") as stderr:
        flags = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox",
                 "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--disable-background-networking",
                 f"--user-data-dir={profile_dir}", "about:blank"]
        # fds 3 and 4 are where the browser expects them (dup2 clears their close-on-exec;
        # every other descriptor of this process is close-on-exec and stays behind)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        pid = os.posix_spawn(exe, [exe, *flags], os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2),
            (os.POSIX_SPAWN_DUP2, cmd_r, 3), (os.POSIX_SPAWN_DUP2, res_w, 4)])
        os.close(devnull)
        os.close(cmd_r)
        os.close(res_w)
        pipe = _Pipe(cmd_w, res_r, deadline)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired")
            values = {}
            for name, expr in expressions.items():
                got = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                                session=session)
                if "exceptionDetails" in got:
                    raise AssertionError(f"{name}: {expr!r} threw in the page: "
                                         f"{got['exceptionDetails'].get('text')}")
                values[name] = got["result"].get("value")
            # what the page prints after its load event arrives within the next evaluations;
            # one round trip more collects what is still in flight
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)
            with_problems = _problems(pipe.events)
            pipe.send("Browser.close")
        except AssertionError as exc:
            stderr.flush()
            tail = (Path(profile_dir) / "stderr.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"{exc}; the browser's stderr ends: {tail}") from None
        finally:
            os.close(cmd_w)
            _reap(pid, max(1.0, deadline - time.monotonic()))
            os.close(res_r)
    return PageCheck(with_problems, values)
