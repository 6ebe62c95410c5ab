"""The watchdog's public API, written once for both implementations.

python-can style: the generic logic lives here, each core does only the raw part. A core is
``firmware_bridge._watchdog.Core`` (C: a thread that fires while another thread holds the
GIL) or ``firmware_bridge.pywatchdog.PyCore`` (a Python thread, which cannot). A public class
puts its core first: ``class Watchdog(Core, WatchdogAPI)``, so ``kick()`` and ``fired`` are
the core's own (for the native one, a C call with no Python frame in between).

Contract (both implementations):

- ``arm()`` checks every argument, dup()s every fd (close-on-exec) and opens every
  ``file_writes`` path (O_WRONLY|O_CLOEXEC|O_NOCTTY|O_NONBLOCK, never O_CREAT), then hands
  them to the core, which owns them until the plan is replaced, disarmed or closed. Python may
  close its own socket objects afterwards. Give the watchdog its *own* connection to the PLC
  (a Modbus TCP server accepts several): bytes written on a connection Python was using in the
  middle of a frame would interleave, and the reply read here is taken off that connection.
  For the hw watchdog (``/dev/watchdog``) the caller closes its own fd right after ``arm()``
  and never writes to it: the driver's release happens on the last close.
- Blocking: the thread must never block on a write. A socket is written with MSG_DONTWAIT and
  a regular file never waits for a reader; any other fd (pipe, FIFO, tty, character device
  such as ``/dev/watchdog``), in ``fd_writes`` or as ``hw_watchdog_fd``, must be O_NONBLOCK
  (``os.set_blocking(fd, False)``: the flag belongs to the open file, which the dup shares, so
  the watchdog does not set it behind the caller's back) or ``arm()`` raises ValueError naming
  the role and the fd. A full O_NONBLOCK fd costs the fire at most ``reply_timeout_s``.
- The fault LED file is opened at arm time, not at the fire: a sysfs attribute's store() gets
  each write whole, whatever the file offset, and the open file keeps its kernfs node pinned
  (if the device goes away the write fails with ENODEV, reported), so a long-held fd is sound;
  the path walk, permission check and a missing file are met at arm time, outside the fire. A
  path that cannot be opened does not fail ``arm()`` (the frames are the safety action, the
  LED is a signal): its errno is that file's result when the watchdog fires. A driver rebound
  between arm and fire leaves the held fd on the old node (ENODEV); re-arming reopens.
- On expiry (``now >= deadline``), in this order, then latched until re-armed: (1) record the
  lateness (actions start - deadline); (2) write each ``fd_writes`` payload in full, waiting
  with poll() if the fd is full, all within ``reply_timeout_s`` from the start of the fire;
  (3) write each file payload at offset 0 and truncate the file to it; (4) feed the hw
  watchdog no more (the board reboots unless something re-arms); (5) read one reply (at most
  512 bytes) per fd whose write succeeded, within what is left of ``reply_timeout_s``;
  (6) ``_exit(exit_code)`` when ``exit_code`` is not None (no atexit, no flushing).
- ``kick()`` never waits on I/O; ``fired`` is a cheap read of the latch (no dict built).
  ``arm()``, ``disarm()``, ``close()`` and ``stats()`` wait while the thread is in the middle of
  a fire or a feed. ``close()`` is idempotent and callable from several threads at once (one
  joins the thread, the others return at once: the actions are detached by then).
- fork(): the child has no watchdog thread. Every watchdog it inherits is inert: an at-fork
  handler closes the core's fds in the child, ``arm()`` and ``kick()`` raise ValueError saying
  so, ``disarm()``/``close()`` do nothing, ``stats()`` reports ``armed`` False; the native
  core's mutex and condition variables (which the parent's thread may have held or waited on)
  are never used or destroyed, so the child exits promptly. fds an ``arm()`` in another thread
  had dup'd but not yet handed over at the moment of the fork stay open in the child until
  exec (close-on-exec).
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Sequence
from typing import ClassVar

from firmware_bridge.results import (
    Actions,
    FireResults,
    View,
    WatchdogStats,
    copy_results,
    fire_in,
)

MAX_ACTIONS = 16  # fd writes, and file writes, per arming
MAX_PAYLOAD = 65536
MAX_SECONDS = 86400.0
FORKED = ("watchdog inherited through fork() is inert: its thread runs only in the parent; "
          "create a new Watchdog in this process")


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


def _payload(data: bytes) -> bytes:
    out = bytes(memoryview(data))  # TypeError for str and other non-buffers
    if len(out) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(out)} bytes exceeds {MAX_PAYLOAD}")
    return out


def _dup(fd: int, role: str, owned: list[int]) -> int:
    """A close-on-exec dup of ``fd``, appended to ``owned``; ValueError naming ``fd`` if a write
    to it could block (see the module docstring), OSError if it is not open."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISSOCK(mode) and not stat.S_ISREG(mode) and os.get_blocking(fd):
        raise ValueError(f"{role}: fd {fd} is blocking: the watchdog thread must never block on "
                         "a write, set O_NONBLOCK (os.set_blocking(fd, False))")
    owned.append(os.dup(fd))  # os.dup: non-inheritable, i.e. close-on-exec
    return owned[-1]


def _open(path: str | bytes, owned: list[int]) -> int:
    """``path`` opened for the fire (appended to ``owned``), or the -errno its open() got."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    owned.append(fd)
    return fd


class WatchdogAPI:
    """What both watchdogs offer; see the module docstring for the contract."""

    native: ClassVar[bool]  # True: the C core, which fires while another thread holds the GIL

    def __init__(self) -> None:
        super().__init__()
        self._last_results: FireResults | None = None
        self._worst_lateness_ns = 0
        self._last_lateness_ns = 0

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
        """Fire unless kick() comes within ``deadline_s`` (> 0, at most a day).

        Replaces the previous actions atomically, clears the fired latch and feeds the hw
        watchdog at once. At most 16 fd writes, 16 file writes, 64 KiB per payload.
        ValueError (a bad value, a blocking fd, a closed watchdog or one inherited through
        fork()), TypeError (a bad shape), OSError (an fd that is not open): nothing changes,
        no fd is leaked.
        """
        if exit_code is not None and not 0 <= exit_code <= 255:
            raise ValueError(f"exit_code must be in 0..255, got {exit_code}")
        period = _ns(deadline_s, "deadline_s", allow_zero=False)
        budget = _ns(reply_timeout_s, "reply_timeout_s", allow_zero=True)
        feed = _ns(hw_feed_interval_s, "hw_feed_interval_s", allow_zero=False)
        for name, actions in (("fd_writes", fd_writes), ("file_writes", file_writes)):
            if len(actions) > MAX_ACTIONS:
                raise ValueError(f"at most {MAX_ACTIONS} {name}, got {len(actions)}")
        writes = [(fd, _payload(data)) for fd, data in fd_writes]
        files = [(os.fsencode(path), _payload(data)) for path, data in file_writes]
        owned: list[int] = []
        try:
            plan_writes = tuple((_dup(fd, "fd_writes", owned), data) for fd, data in writes)
            plan_files = tuple((_open(path, owned), data) for path, data in files)
            hw = -1 if hw_watchdog_fd == -1 else _dup(hw_watchdog_fd, "hw_watchdog_fd", owned)
            replaced = self._arm(period, budget, feed, -1 if exit_code is None else exit_code,
                                 hw, plan_writes, plan_files)
        except BaseException:
            for fd in reversed(owned):  # the core took none of them
                os.close(fd)
            raise
        self._note(replaced)

    def disarm(self) -> None:
        """Stop watching and close the actions' fds. A held hw watchdog fd gets the magic
        close b"V" first, unless the watchdog fired (then the board is left to reboot)."""
        self._note(self._disarm())

    def close(self) -> None:
        """disarm(), then stop and join the thread. Idempotent; arm() and kick() raise
        ValueError afterwards."""
        self._note(self._close())

    def stats(self) -> WatchdogStats:
        """Counters and the latest fire's results, as a new dict."""
        view = self._counters()
        self._note(view)
        armed, fired, kicks, fires, feeds, feed_errors = view[:6]
        return WatchdogStats(
            armed=bool(armed), fired=bool(fired), kicks=kicks, fires=fires, feeds=feeds,
            feed_errors=feed_errors, worst_lateness_ns=self._worst_lateness_ns,
            last_lateness_ns=self._last_lateness_ns,
            last_fire_results=copy_results(self._last_results),
        )

    def _note(self, view: View) -> None:
        """Keep the fire a view carries (the core forgets it when its plan is replaced)."""
        fire = fire_in(view)
        if fire is not None:
            self._last_lateness_ns, self._last_results = fire
            self._worst_lateness_ns = max(self._worst_lateness_ns, self._last_lateness_ns)

    # -- the core's part: firmware_bridge._watchdog.Core and pywatchdog.PyCore ------------

    def kick(self) -> None:
        """deadline = now + deadline_s. No effect when disarmed. After a fire it is counted
        but does not un-fire: only arm() does. ValueError after close() and in a fork()ed
        child."""
        raise NotImplementedError

    @property
    def fired(self) -> bool:
        """The latch: the deadline passed since the last arm(). Cheap: no dict, no waiting."""
        raise NotImplementedError

    @property
    def tid(self) -> int:
        """The watchdog thread's kernel thread id (its scheduling is set and read through
        it: ``agent.io.realtime``), once there is a thread: the native one from construction,
        the Python one from the first arm(); 0 before, after close() and in a fork()ed
        child."""
        raise NotImplementedError

    def _arm(self, period_ns: int, budget_ns: int, feed_ns: int,  # noqa: PLR0917 - the C core's
             exit_code: int, hw_fd: int, writes: Actions, files: Actions, /) -> View:
        raise NotImplementedError

    def _disarm(self) -> View:
        raise NotImplementedError

    def _close(self) -> View:
        raise NotImplementedError

    def _counters(self) -> View:
        raise NotImplementedError
