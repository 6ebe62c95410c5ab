"""The pure-Python twin of the native watchdog (``firmware_bridge._watchdog``).

Same API, same result codes, same latching rules, implemented with a ``threading.Thread``
waiting on a ``threading.Condition``. It exists for development and for platforms without a
compiler. By nature it **cannot fire while another thread holds the GIL** (a catastrophic
regex, a long C call that does not release the GIL, a deadlock inside the interpreter): its
thread needs the GIL to run at all. That is exactly the hang the native watchdog is for, so a
profile with ``require_native_watchdog = true`` refuses this class (see
``firmware_bridge.load_watchdog``).

Contract (shared with the C extension, see ``_watchdog.pyi``): fds are ``os.dup()``'d and
payloads copied at arm time; ``kick()`` never waits on I/O; a fire is latched until re-armed;
``disarm()`` writes the magic close ``b"V"`` to a held hw watchdog fd unless the watchdog
fired; ``close()`` is idempotent and ``arm()``/``kick()`` raise ``ValueError`` afterwards;
``arm()`` refuses (``ValueError``) a non-socket, non-regular fd without O_NONBLOCK; in a
``fork()``ed child (``os.register_at_fork``) every inherited watchdog is inert, its dups closed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import socket
import stat
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from firmware_bridge.results import FireResults, WatchdogStats

log = logging.getLogger(__name__)

MAX_FDS = 16
MAX_FILES = 16
MAX_PAYLOAD = 65536
MAX_SECONDS = 86400.0
_NEVER = 2**63 - 1


def _ns(value: float, name: str, *, allow_zero: bool) -> int:
    if (
        not math.isfinite(value)
        or value < 0.0
        or (value == 0.0 and not allow_zero)
        or value > MAX_SECONDS
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} and at most {int(MAX_SECONDS)} s, got {value!r}")
    return int(value * 1e9)


FORKED = ("watchdog inherited through fork() is inert: its thread runs only in the parent; "
          "create a new Watchdog in this process")


def _writable_without_blocking(fd: int, role: str) -> bool:
    """Whether ``fd`` is a socket; ValueError naming it if a write to it could block: a socket
    is written with MSG_DONTWAIT, a regular file never waits for a reader, anything else
    (pipe, FIFO, tty, character device) must be O_NONBLOCK."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISSOCK(mode) and not stat.S_ISREG(mode) and os.get_blocking(fd):
        raise ValueError(f"{role}: fd {fd} is blocking: the watchdog thread must never block on "
                         "a write, set O_NONBLOCK (os.set_blocking(fd, False))")
    return stat.S_ISSOCK(mode)


def _payload(data: bytes) -> bytes:
    out = bytes(memoryview(data))
    if len(out) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(out)} bytes exceeds {MAX_PAYLOAD}")
    return out


@dataclass
class _FdAction:
    fd: int  # our dup; for a socket, owned by ``sock``
    sock: socket.socket | None
    data: bytes

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.fd)


@dataclass
class _Plan:
    """What one arming will do; owned by the watchdog, its fds closed by ``release``."""

    period_ns: int
    reply_timeout_ns: int
    feed_interval_ns: int
    exit_code: int | None
    fds: list[_FdAction] = field(default_factory=list)
    files: list[tuple[str | os.PathLike[str], bytes]] = field(default_factory=list)
    hw_fd: int = -1
    results: FireResults | None = None

    def release(self) -> None:
        """Close every fd the plan owns, in reverse order of acquisition."""
        if self.hw_fd >= 0:
            os.close(self.hw_fd)
            self.hw_fd = -1
        for action in reversed(self.fds):
            action.close()
        self.fds.clear()


def _wait(fd: int, events: int, until_ns: int) -> int:
    """1 when ready, 0 on timeout, -errno (-EBADF for a closed fd)."""
    left_ms = max(0, (until_ns - time.monotonic_ns() + 999_999) // 1_000_000)
    poller = select.poll()
    poller.register(fd, events)
    try:
        ready = poller.poll(left_ms)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    if not ready:
        return 0
    return -errno.EBADF if ready[0][1] & select.POLLNVAL else 1


def _write_all(action: _FdAction, until_ns: int) -> int:
    """Bytes written (all of them) or -errno; -ETIMEDOUT if the fd stayed full."""
    data, off = action.data, 0
    while off < len(data):
        try:
            if action.sock is not None:
                off += action.sock.send(data[off:], socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            else:
                off += os.write(action.fd, data[off:])
        except InterruptedError:
            continue
        except BlockingIOError:
            ready = _wait(action.fd, select.POLLOUT, until_ns)
            if ready <= 0:
                return ready or -errno.ETIMEDOUT
        except OSError as exc:
            return -(exc.errno or errno.EIO)
    return len(data)


def _read_replies(plan: _Plan, written: list[int], until_ns: int) -> list[int]:
    replies = [-errno.ETIMEDOUT if w >= 0 else -errno.ECANCELED for w in written]
    pending = {a.fd: i for i, a in enumerate(plan.fds) if written[i] >= 0}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending:
        left_ms = max(0, (until_ns - time.monotonic_ns() + 999_999) // 1_000_000)
        try:
            events = poller.poll(left_ms)
        except InterruptedError:
            continue
        except OSError as exc:
            for i in pending.values():
                replies[i] = -(exc.errno or errno.EIO)
            break
        if not events:
            break
        for fd, ev in events:
            i = pending.pop(fd)
            poller.unregister(fd)
            if ev & select.POLLNVAL:
                replies[i] = -errno.EBADF
                continue
            try:
                replies[i] = len(os.read(fd, 512))
            except OSError as exc:
                replies[i] = -(exc.errno or errno.EIO)
    return replies


def _write_file(path: str | os.PathLike[str], data: bytes, until_ns: int) -> int:
    """0 when written, else -errno. No O_CREAT: a missing sysfs file is an error."""
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_TRUNC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    action = _FdAction(fd, None, data)
    try:
        written = _write_all(action, until_ns)
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            written = -(exc.errno or errno.EIO) if written >= 0 else written
    return min(written, 0)


def _fire(plan: _Plan) -> FireResults:
    until = time.monotonic_ns() + plan.reply_timeout_ns
    written = [_write_all(a, until) for a in plan.fds]
    replies = _read_replies(plan, written, until)
    files = [
        _write_file(path, data, time.monotonic_ns() + plan.reply_timeout_ns)
        for path, data in plan.files
    ]
    return FireResults(fd_writes=written, replies=replies, file_writes=files)


class Watchdog:
    """Pure-Python watchdog; see the module docstring for what it cannot do.

    Call ``close()`` when done: the (daemon) thread holds a reference to the watchdog, so
    it is not collected while the thread runs.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._plan: _Plan | None = None  # (cv) None = disarmed
        self._busy = False  # (cv) the thread uses _plan's fds without the lock
        self._fired = False  # (cv) latched until arm()
        self._stop = False
        self._closed = False
        self._deadline_ns = 0
        self._next_feed_ns = 0
        self._wait_until_ns = _NEVER
        self._kicks = self._fires = self._feeds = self._feed_errors = 0
        self._worst_lateness_ns = self._last_lateness_ns = 0
        self._last_results: FireResults | None = None
        self._forked = False  # set in a fork()ed child: inert there
        _LIVE.add(self)

    # -- public API ------------------------------------------------------------------
    def arm(
        self,
        deadline_s: float,
        *,
        fd_writes: Sequence[tuple[int, bytes]] = (),
        reply_timeout_s: float = 0.05,
        file_writes: Sequence[tuple[str | os.PathLike[str], bytes]] = (),
        hw_watchdog_fd: int = -1,
        hw_feed_interval_s: float = 1.0,
        exit_code: int | None = None,
    ) -> None:
        """Fire unless kick() comes within deadline_s; replaces the previous actions."""
        if self._forked:
            raise ValueError(FORKED)
        if exit_code is not None and not 0 <= exit_code <= 255:
            raise ValueError(f"exit_code must be in 0..255, got {exit_code}")
        plan = _Plan(
            _ns(deadline_s, "deadline_s", allow_zero=False),
            _ns(reply_timeout_s, "reply_timeout_s", allow_zero=True),
            _ns(hw_feed_interval_s, "hw_feed_interval_s", allow_zero=False),
            exit_code,
        )
        if len(fd_writes) > MAX_FDS:
            raise ValueError(f"at most {MAX_FDS} fd_writes, got {len(fd_writes)}")
        if len(file_writes) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} file_writes, got {len(file_writes)}")
        try:
            for fd, data in fd_writes:
                payload = _payload(data)
                is_sock = _writable_without_blocking(fd, "fd_writes")
                dup = os.dup(fd)
                plan.fds.append(_FdAction(dup, socket.socket(fileno=dup) if is_sock else None,
                                          payload))
            for path, data in file_writes:
                plan.files.append((os.fspath(path), _payload(data)))
            if hw_watchdog_fd != -1:
                _writable_without_blocking(hw_watchdog_fd, "hw_watchdog_fd")
                plan.hw_fd = os.dup(hw_watchdog_fd)
        except BaseException:
            plan.release()
            raise
        with self._cv:
            while self._busy:
                self._cv.wait()
            if self._closed:
                plan.release()
                raise ValueError("watchdog is closed")
            old, self._plan = self._plan, plan
            self._fired = False
            now = time.monotonic_ns()
            self._deadline_ns = now + plan.period_ns
            self._next_feed_ns = now
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="twinguard-pywatchdog", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()
        self._retire(old)

    def kick(self) -> None:
        """Push the deadline to now + deadline_s; never waits on I/O."""
        if self._forked:
            raise ValueError(FORKED)
        with self._cv:
            if self._closed:
                raise ValueError("watchdog is closed")
            if self._plan is None:
                return
            self._kicks += 1
            self._deadline_ns = time.monotonic_ns() + self._plan.period_ns

    def disarm(self) -> None:
        """Stop watching; 'V' to a held hw watchdog fd unless the watchdog fired."""
        if self._forked:
            return  # the dups were closed at fork; nothing runs here
        self._retire(self._detach(stop=False))

    def close(self) -> None:
        """disarm(), then stop and join the thread; idempotent."""
        if self._forked:
            return
        self._retire(self._detach(stop=True))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def stats(self) -> WatchdogStats:
        """Counters and the last fire's results (a new dict)."""
        with self._cv:
            while self._busy:
                self._cv.wait()
            results = self._plan.results if self._plan is not None else None
            return WatchdogStats(
                armed=self._plan is not None,
                fired=self._fired,
                kicks=self._kicks,
                fires=self._fires,
                feeds=self._feeds,
                feed_errors=self._feed_errors,
                worst_lateness_ns=self._worst_lateness_ns,
                last_lateness_ns=self._last_lateness_ns,
                last_fire_results=_copy(results if results is not None else self._last_results),
            )

    # -- internals -------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        """In a fork()ed child: no thread; the condition may be held by a thread that is
        gone, so it is replaced; the dups are closed. Every method but stats() is inert."""
        self._forked = True
        self._cv = threading.Condition(threading.Lock())
        plan, self._plan = self._plan, None
        self._busy = False
        self._thread = None
        if plan is not None:
            plan.release()

    def _detach(self, *, stop: bool) -> _Plan | None:
        with self._cv:
            while self._busy:
                self._cv.wait()
            old, self._plan = self._plan, None
            if stop:
                self._stop = self._closed = True
            self._cv.notify_all()
            if old is not None and old.hw_fd >= 0 and not self._fired:
                with contextlib.suppress(OSError):
                    os.write(old.hw_fd, b"V")  # magic close: a clean stop must not reboot
        return old

    def _retire(self, old: _Plan | None) -> None:
        if old is None:
            return
        if old.results is not None:
            self._last_results = old.results
        old.release()

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
                    continue
                wake = self._deadline_ns
                if plan.hw_fd >= 0:
                    if now >= self._next_feed_ns:
                        self._feed_locked(plan, now)
                        continue
                    wake = min(wake, self._next_feed_ns)
                self._cv.wait((wake - now) / 1e9)

    def _fire_locked(self, plan: _Plan, now: int) -> None:
        self._last_lateness_ns = now - self._deadline_ns
        self._worst_lateness_ns = max(self._worst_lateness_ns, self._last_lateness_ns)
        self._fired = True
        self._fires += 1
        self._busy = True
        self._cv.release()
        lateness = self._last_lateness_ns
        try:
            results = _fire(plan)
        except Exception:  # a bug here must not leave busy set and wedge arm/stats
            log.exception("watchdog fire failed")
            eio = -errno.EIO
            results = FireResults(
                fd_writes=[eio] * len(plan.fds),
                replies=[eio] * len(plan.fds),
                file_writes=[eio] * len(plan.files),
            )
        try:
            log.warning("watchdog fired %d ns late: %s", lateness, results)
            if plan.exit_code is not None:
                os._exit(plan.exit_code)
        finally:
            self._cv.acquire()
        plan.results = results
        self._busy = False
        self._cv.notify_all()

    def _feed_locked(self, plan: _Plan, now: int) -> None:
        self._busy = True
        self._cv.release()
        try:
            ok = os.write(plan.hw_fd, b"\0") == 1
        except OSError:
            ok = False
        finally:
            self._cv.acquire()
        if ok:
            self._feeds += 1
        else:
            self._feed_errors += 1
        self._next_feed_ns = now + plan.feed_interval_ns
        self._busy = False
        self._cv.notify_all()


def _copy(results: FireResults | None) -> FireResults | None:
    if results is None:
        return None
    return FireResults(
        fd_writes=list(results["fd_writes"]),
        replies=list(results["replies"]),
        file_writes=list(results["file_writes"]),
    )


_LIVE: weakref.WeakSet[Watchdog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for wd in list(_LIVE):
        wd._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
