"""A minimal sd_notify(3) client: tell systemd we are ready, alive, or stopping.

Protocol (systemd's ``sd_notify``): one AF_UNIX SOCK_DGRAM datagram per notification, sent
to the socket named by ``$NOTIFY_SOCKET``; the payload is newline-separated ``KEY=VALUE``
assignments in UTF-8::

    NOTIFY_SOCKET=/run/systemd/notify      a path in the file system
    NOTIFY_SOCKET=@/org/freedesktop/...    '@' = Linux abstract namespace (sent as a NUL byte)

    datagram:  READY=1\\nSTATUS=NORMAL, shadow\\n      (trailing newline optional)

``$WATCHDOG_USEC`` (with ``$WATCHDOG_PID``, when set, naming this process) is the unit's
``WatchdogSec=`` in microseconds: systemd kills and restarts the service if no
``WATCHDOG=1`` arrives within it. The runtime sends one at the end of every complete tick.

Contract: with ``$NOTIFY_SOCKET`` unset (run by hand, under tests) everything is a no-op.
Nothing here raises into the caller: a send that fails (socket gone, receiver's queue full:
the socket is non-blocking so the control loop never waits for systemd) returns False, is
counted in ``errors`` and logged (the first failure at WARNING, later ones at DEBUG).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from agent.io.closing import Closing

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    """The socket address for ``$NOTIFY_SOCKET``; None for one this client cannot use."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd >= 253 in VMs), or garbage


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog timeout for this process in seconds, or None when not enabled.

    Reads ``$WATCHDOG_USEC`` and, when set, ``$WATCHDOG_PID`` (which must equal
    ``os.getpid()``: the variables may have been inherited from a parent). A malformed or
    non-positive value is logged and treated as "not enabled". The caller should send
    ``WATCHDOG=1`` at least twice per interval. ``environ`` defaults to ``os.environ``.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                log.debug("WATCHDOG_PID=%s is not this process (%d)", pid, os.getpid())
                return None
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_PID=%r", pid)
            return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    if value <= 0:
        log.warning("ignoring non-positive WATCHDOG_USEC=%r", usec)
        return None
    return value / 1_000_000


class Notifier(Closing):
    """Sends notifications to systemd; a no-op when ``$NOTIFY_SOCKET`` is unset.

    ``environ`` defaults to ``os.environ`` (read once, here). ``enabled`` says whether there
    is somewhere to send to; ``sent`` and ``errors`` count datagrams.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a usable AF_UNIX address; sd_notify off", raw)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one datagram; True if it was sent.

        An assignment containing a newline or NUL is a caller bug: it would smuggle in
        another assignment. It is rejected (counted, logged, False), nothing is sent.
        """
        if self._address is None:
            return False
        for a in assignments:
            if "\n" in a or "\0" in a or "=" not in a:
                self._fail("refusing malformed sd_notify assignment %r", a)
                return False
        payload = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            self._fail("sd_notify to %r failed: %s", self._address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and a status line): the service is up. Send once, after start-up."""
        return self.notify("READY=1", *self._status(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive. Send after every complete tick."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: one line shown by ``systemctl status`` (newlines become spaces)."""
        return self.notify(*self._status(text))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: a clean shutdown has begun."""
        return self.notify("STOPPING=1", *self._status(status))

    def close(self) -> None:
        """Close the socket (a later notification opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        clean = " ".join(text.replace("\0", " ").split())
        return (f"STATUS={clean}",)

    def _fail(self, msg: str, *args: object) -> None:
        self.errors += 1
        level = logging.WARNING if self.errors == 1 else logging.DEBUG
        log.log(level, msg, *args)
