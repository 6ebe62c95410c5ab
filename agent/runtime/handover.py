"""Restart by hand-over: the new agent process is ready before the old one lets go.

A pushed configuration that needs a restart must not stop production: a plain exit and a
systemd restart leave the PLC's communication watchdog unfed for the whole start of a new
Python process (imports, parsing: about a second here, three on a Pi), so the PLC falls
back and latches. Instead the running agent (the *predecessor*) starts its *successor* with
the same command line and keeps ticking, heartbeat and all, while the successor imports
and parses; only when the successor says it is ready does the predecessor stop (shedding
authority as on SIGTERM, a last PLC heartbeat, everything closed) and exit. The successor
then opens the state directory, the status socket, the GPIO and the PLC link as any agent
starts. The PLC's heartbeat register is unwritten only for the predecessor's shutdown and
the successor's own start, not for an interpreter's start (``sim.bench restart`` and the
agent-restart demo measure the gap at the PLC).

The protocol, over one Unix socket pair whose end the successor gets as
``$TWINGUARD_HANDOVER_FD``:

1. the predecessor spawns ``sys.executable`` with its own ``sys.orig_argv`` (``python -m
   agent run ...``), at normal priority whatever the loop's (``agent.io.realtime.
   at_normal_priority``); ``$WATCHDOG_PID`` is dropped so that systemd's watchdog applies
   to the successor once it is the main process;
2. the successor, before it touches the state directory (:func:`wait_for_predecessor`,
   called first thing by the runtime), writes ``ready`` and waits for end of file;
3. the predecessor, on ``ready`` (:meth:`Successor.wait_ready`), stops; under systemd it
   first sends ``MAINPID=<successor>`` (allowed from the main process with
   ``NotifyAccess=main``), so the unit lives on in the successor; its exit closes the
   socket;
4. the successor sees end of file and starts.

If the successor is not ready within ``READY_TIMEOUT_S`` or dies, the predecessor kills it
and falls back to exiting with ``EXIT_RESTART`` (systemd restarts the agent the plain way).
A successor whose predecessor never lets go proceeds after ``RELEASE_TIMEOUT_S`` (the
status socket then tells it whether another agent still runs). Linux and any POSIX system
with ``socketpair`` and ``pass_fds``; nothing here is Pi-specific.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from agent.io.realtime import at_normal_priority

log = logging.getLogger(__name__)

ENV_FD = "TWINGUARD_HANDOVER_FD"
READY = b"ready\n"
READY_TIMEOUT_S = 60.0  # a successor slower than this to import and parse is given up
RELEASE_TIMEOUT_S = 30.0  # a predecessor slower than this to stop is not waited for


class Successor:
    """A started successor process and the predecessor's end of the socket pair."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """True once the successor said ``ready``; False (and the successor killed) if it
        died or took longer than ``timeout_s``. The event loop runs meanwhile."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout_s):
                got = b""
                while not got.endswith(READY):
                    chunk = await loop.sock_recv(self.sock, 64)
                    if not chunk:
                        break
                    got += chunk
            if got.endswith(READY):
                return True
            log.error("hand-over: the successor (pid %d) ended before it was ready",
                      self.proc.pid)
        except TimeoutError:
            log.error("hand-over: the successor (pid %d) was not ready within %.0f s",
                      self.proc.pid, timeout_s)
        self.abandon()
        return False

    def abandon(self) -> None:
        """Kill the successor and reap it (the fallback is a plain restart)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)
        self.sock.close()


def spawn_successor(argv: list[str] | None = None,
                    environ: Mapping[str, str] | None = None) -> Successor:
    """Start the successor: ``argv`` (default: this process's own command line) with the
    socket pair's other end as ``$TWINGUARD_HANDOVER_FD``. Raises OSError if it cannot be
    started."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ if environ is None else environ)
    env.pop("WATCHDOG_PID", None)  # systemd's watchdog is the successor's once it is main
    env[ENV_FD] = str(theirs.fileno())
    command = argv if argv is not None else [sys.executable, *sys.orig_argv[1:]]
    try:  # at SCHED_OTHER: the successor imports and parses at normal priority, and goes
        # real-time itself after that (agent.io.realtime), the predecessor's loop ticking on
        proc = at_normal_priority(lambda: subprocess.Popen(  # noqa: S603 - our own command
            command, env=env, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            start_new_session=False))
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    log.info("hand-over: successor started (pid %d)", proc.pid)
    return Successor(proc, ours)


def wait_for_predecessor(environ: Mapping[str, str] | None = None,
                         timeout_s: float = RELEASE_TIMEOUT_S) -> float | None:
    """In a successor: say ``ready`` and block until the predecessor has exited (end of
    file). Returns the seconds waited, or None when this process is no successor. Never
    raises: a broken socket or a bad ``$TWINGUARD_HANDOVER_FD`` is logged and the agent
    starts as usual."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_FD)
    if not text:
        return None
    os.environ.pop(ENV_FD, None)  # not inherited by anything this process starts
    t0 = time.monotonic()
    try:
        fd = int(text)
        with socket.socket(fileno=fd) as sock:
            sock.sendall(READY)
            sock.settimeout(timeout_s)
            while sock.recv(64):
                pass
    except (ValueError, OSError) as exc:  # TimeoutError is an OSError
        log.warning("hand-over: %s=%r: %s; starting anyway", ENV_FD, text, exc)
    waited = time.monotonic() - t0
    log.info("hand-over: the predecessor let go after %.3f s; starting", waited)
    return waited
