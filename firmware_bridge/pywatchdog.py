"""The pure-Python twin of the native watchdog: the same API (``firmware_bridge.api``) on a
core that is a ``threading.Thread`` waiting on a ``threading.Condition``.

It exists for development and for platforms without a compiler. By nature it **cannot fire
while another thread holds the GIL** (a catastrophic regex, a long C call that does not
release the GIL, a deadlock inside the interpreter): its thread needs the GIL to run at all.
That is exactly the hang the native watchdog is for, so a profile with
``require_native_watchdog = true`` refuses this class (see ``firmware_bridge.load_watchdog``).

``PyCore`` mirrors ``firmware_bridge._watchdog.Core`` (signatures in ``_watchdog.pyi``, the
same plan, view, latch, ownership and fork rules); only the thread start differs (at the
first ``_arm``, not at construction, since the thread holds a reference to its core).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
import weakref
from dataclasses import dataclass

from firmware_bridge.api import FORKED, MAX_ACTIONS, WatchdogAPI
from firmware_bridge.results import Actions, View

__all__ = ["PyCore", "Watchdog"]

log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What one arming does; its fds are the core's once ``_arm`` returned."""

    period_ns: int
    budget_ns: int
    feed_ns: int
    exit_code: int  # -1: no _exit
    hw_fd: int  # -1: no hw watchdog
    writes: Actions
    files: Actions  # fd < 0: the -errno its open() got

    def close(self, *, magic: bool) -> None:
        """Close every fd, in reverse; first b"V" to the hw watchdog fd if ``magic``."""
        if magic and self.hw_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.hw_fd, b"V")  # magic close: a clean stop must not reboot
        for fd in [self.hw_fd, *(fd for fd, _ in (*self.writes, *self.files))][::-1]:
            if fd >= 0:
                os.close(fd)


def _ms_left(until_ns: int) -> int:
    return max(0, (until_ns - time.monotonic_ns() + 999_999) // 1_000_000)


def _send(fd: int, data: bytes) -> int:
    """send(MSG_DONTWAIT|MSG_NOSIGNAL), or os.write() if fd is not a socket; OSError."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno != errno.ENOTSOCK:
            raise
        return os.write(fd, data)
    try:
        return sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    finally:
        sock.detach()  # the fd stays the core's


def _poll(fd: int, events: int, until_ns: int) -> int:
    """1 ready, 0 timeout, -errno (-EBADF for a closed fd)."""
    poller = select.poll()
    poller.register(fd, events)
    try:
        ready = poller.poll(_ms_left(until_ns))
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    if not ready:
        return 0
    return -errno.EBADF if ready[0][1] & select.POLLNVAL else 1


def _write_all(fd: int, data: bytes, until_ns: int) -> int:
    off = 0
    while off < len(data):
        try:
            off += _send(fd, data[off:])
        except (BlockingIOError, InterruptedError):
            ready = _poll(fd, select.POLLOUT, until_ns)
            if ready <= 0:
                return ready or -errno.ETIMEDOUT
        except OSError as exc:
            return -(exc.errno or errno.EIO)
    return len(data)


def _write_file(fd: int, data: bytes) -> int:
    if fd < 0:
        return fd
    try:
        if os.pwrite(fd, data, 0) != len(data):
            return -errno.EIO
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, len(data))
    return 0


QUIET_NS = 5_000_000  # a reply of no known size is complete after 5 ms without a byte


def _is_mbap(request: bytes) -> bool:
    """The request is a Modbus TCP frame: protocol id 0 and a length field that matches."""
    return (len(request) > 7 and request[2:4] == b"\0\0"
            and int.from_bytes(request[4:6], "big") + 6 == len(request))


def _whole(request: bytes, got: bytes) -> bool:
    """``got`` is the whole reply to ``request`` (the C core's rule): MBAP, 6 + its length
    field; RTU (only ever a write's), an 8-byte echo or a 5-byte exception."""
    if _is_mbap(request):
        return len(got) >= 6 and len(got) >= 6 + int.from_bytes(got[4:6], "big")
    return len(got) >= 2 and len(got) >= (5 if got[1] & 0x80 else 8)


def _read_reply(fd: int, request: bytes, until_ns: int) -> int:
    """What arrives until the reply to ``request`` is whole, or else until the line is quiet
    for QUIET_NS, or ``until_ns`` (the C core's ``read_reply``): bytes read, or -errno
    (-ETIMEDOUT when nothing came)."""
    got = b""
    while not _whole(request, got):
        quiet = time.monotonic_ns() + QUIET_NS if got else until_ns
        ready = _poll(fd, select.POLLIN, min(quiet, until_ns))
        if ready <= 0:
            return len(got) or ready or -errno.ETIMEDOUT
        try:
            data = os.read(fd, 512)
        except OSError as exc:
            return len(got) or -(exc.errno or errno.EIO)
        if not data:
            return len(got)
        got += data
    return len(got)


def _fire(plan: _Plan) -> list[int]:
    """The fire's result codes, in the view's order (see firmware_bridge.results): each
    request waits for its reply before the next goes out (one in flight per link)."""
    until = time.monotonic_ns() + plan.budget_ns
    written: list[int] = []
    replies: list[int] = []
    for fd, data in plan.writes:
        written.append(_write_all(fd, data, until))
        replies.append(_read_reply(fd, data, until) if written[-1] >= 0 else -errno.ECANCELED)
    files = [_write_file(fd, data) for fd, data in plan.files]
    return written + replies + files


class PyCore:
    """The twin's core; each method's contract is the native one's (``_watchdog.pyi``)."""

    def __init__(self) -> None:
        super().__init__()
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._plan: _Plan | None = None  # (cv) None: disarmed
        self._busy = False  # (cv) the thread uses _plan and _res without the lock
        self._fired = False  # (cv) latched until _arm
        self._stop = False  # (cv) closed
        self._joining = False
        self._forked = False  # a fork()ed child: inert
        self._deadline_ns = self._next_feed_ns = self._lateness_ns = 0
        self._kicks = self._fires = self._feeds = self._feed_errors = 0
        self._res: list[int] = []
        _LIVE.add(self)

    def kick(self) -> None:
        if self._forked:
            raise ValueError(FORKED)
        with self._cv:
            if self._stop:
                raise ValueError("watchdog is closed")
            if self._plan is not None:
                self._kicks += 1
                self._deadline_ns = time.monotonic_ns() + self._plan.period_ns

    @property
    def fired(self) -> bool:
        return self._fired

    @property
    def tid(self) -> int:
        thread = self._thread
        if thread is None or self._joining or self._forked:
            return 0
        return thread.native_id or 0

    def _arm(self, period_ns: int, budget_ns: int, feed_ns: int,  # noqa: PLR0917 - as in C
             exit_code: int, hw_fd: int, writes: Actions, files: Actions, /) -> View:
        if (period_ns <= 0 or budget_ns < 0 or feed_ns <= 0 or not -1 <= exit_code <= 255
                or len(writes) > MAX_ACTIONS or len(files) > MAX_ACTIONS):
            raise ValueError("_arm: plan out of range (arm() checks it)")
        if self._forked:
            raise ValueError(FORKED)
        plan = _Plan(period_ns, budget_ns, feed_ns, exit_code, hw_fd, writes, files)
        with self._cv:
            if self._stop:
                raise ValueError("watchdog is closed")
            view, old = self._take(detach=True)
            self._plan, self._fired = plan, False
            self._deadline_ns = time.monotonic_ns() + period_ns
            self._next_feed_ns = 0  # feed at once
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="twinguard-pywatchdog", daemon=True)
                self._thread.start()
        if old is not None:
            old.close(magic=False)
        return view

    def _disarm(self) -> View:
        return self._op(stop=False)

    def _close(self) -> View:
        return self._op(stop=True)

    def _counters(self) -> View:
        with self._cv:
            return self._take(detach=False)[0]

    # -- internals -------------------------------------------------------------------
    def _op(self, *, stop: bool) -> View:
        with self._cv:  # in a fork()ed child: a new lock, no plan, no thread (see below)
            view, old = self._take(detach=True)
            self._stop |= stop
        if old is not None:
            old.close(magic=not view[1])  # view[1]: fired
        thread = self._thread
        if stop and not self._joining and thread is not None:
            self._joining = True
            if thread is not threading.current_thread():
                thread.join()
        return view

    def _take(self, *, detach: bool) -> tuple[View, _Plan | None]:
        """Under the lock: wait for !busy; the view; then (if detach) the plan taken out."""
        while self._busy:
            self._cv.wait()
        plan = self._plan
        view: View = (plan is not None, self._fired, self._kicks, self._fires, self._feeds,
                      self._feed_errors)
        if plan is not None and self._fired:
            view += (self._lateness_ns, len(plan.writes), *self._res)
        if detach:
            self._plan = None
            self._cv.notify_all()
        return view, plan if detach else None

    def _after_fork_in_child(self) -> None:
        """No thread here, and the lock may be held by one that is gone: a new lock; the
        plan's fds closed; arm() and kick() raise from now on."""
        self._forked = True
        self._cv = threading.Condition(threading.Lock())
        plan, self._plan = self._plan, None
        self._busy = False
        self._thread = None
        if plan is not None:
            plan.close(magic=False)

    def _run(self) -> None:
        with self._cv:
            while not self._stop:
                plan = self._plan
                if plan is None or self._fired:
                    self._cv.wait()
                    continue
                now = time.monotonic_ns()
                if now >= self._deadline_ns:
                    self._fire_locked(plan, now)
                elif plan.hw_fd >= 0 and now >= self._next_feed_ns:
                    self._feed_locked(plan, now)
                else:
                    wake = self._deadline_ns
                    if plan.hw_fd >= 0:
                        wake = min(wake, self._next_feed_ns)
                    self._cv.wait((wake - now) / 1e9)

    def _fire_locked(self, plan: _Plan, now: int) -> None:
        self._fired = True
        self._fires += 1
        self._lateness_ns = now - self._deadline_ns
        self._busy = True
        self._cv.release()
        try:
            res = _fire(plan)
        except Exception:  # a bug here must not leave busy set and wedge arm/stats
            log.exception("watchdog fire failed")
            res = [-errno.EIO] * (2 * len(plan.writes) + len(plan.files))
        try:
            log.warning("watchdog fired %d ns late: %s", self._lateness_ns, res)
            if plan.exit_code >= 0:
                os._exit(plan.exit_code)
        finally:
            self._cv.acquire()
        self._res = res
        self._busy = False
        self._cv.notify_all()

    def _feed_locked(self, plan: _Plan, now: int) -> None:
        self._busy = True
        self._cv.release()
        try:
            ok = os.write(plan.hw_fd, b"\0") == 1  # anything but 'V' feeds
        except OSError:
            ok = False
        finally:
            self._cv.acquire()
        self._feeds += ok
        self._feed_errors += not ok
        self._next_feed_ns = now + plan.feed_ns
        self._busy = False
        self._cv.notify_all()


class Watchdog(PyCore, WatchdogAPI):
    """The pure-Python watchdog; see the module docstring for what it cannot do.

    Call ``close()`` when done: the (daemon) thread holds a reference to the watchdog, so it
    is not collected while the thread runs.
    """

    native = False


_LIVE: weakref.WeakSet[PyCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for core in list(_LIVE):
        core._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
