"""Native watchdog thread (C). Contract in full; the Python twin is ``pywatchdog``.

The thread is created on the first ``arm()`` with every signal blocked. It waits on one
condition variable (CLOCK_MONOTONIC) until the deadline, or until the next hw watchdog feed,
and never touches a Python object or the GIL, so it fires while another thread holds the GIL.

On expiry (``now >= deadline``), in this order, then latched (no repeat) until re-armed:

1. record lateness = actions start - deadline (``worst_lateness_ns``/``last_lateness_ns``);
2. write each ``fd_writes`` payload in full (partial writes and EINTR loop; sockets use
   ``send(MSG_DONTWAIT|MSG_NOSIGNAL)`` and wait with poll() up to ``reply_timeout_s`` if full);
3. wait up to ``reply_timeout_s`` (jointly, from the start of the fire) with poll() for a
   reply on each fd whose write succeeded; read once (<= 512 bytes) and record the count;
4. write each ``file_writes`` payload: open(O_WRONLY|O_CLOEXEC|O_TRUNC|O_NOCTTY|O_NONBLOCK),
   no O_CREAT (a missing sysfs LED file is reported, never created), write, close;
5. stop feeding the hw watchdog (the board reboots unless something re-arms);
6. ``_exit(exit_code)`` when ``exit_code`` is not None (no atexit, no flushing).

Blocking: the thread must never block on a write. A socket is written with MSG_DONTWAIT and
a regular file never waits for a reader; any other fd (pipe, FIFO, tty, character device such
as ``/dev/watchdog``), in ``fd_writes`` or as ``hw_watchdog_fd``, must have O_NONBLOCK set
(``os.set_blocking(fd, False)``: the flag belongs to the open file, which the dup shares, so
the watchdog does not set it behind the caller's back) or ``arm()`` raises ValueError naming
the role and the fd. A full O_NONBLOCK fd costs the fire at most ``reply_timeout_s``.

Ownership: ``arm()`` dup()s every fd (F_DUPFD_CLOEXEC) and copies every payload and path, so
Python may close its socket objects afterwards; the dups are closed when the actions are
replaced, on ``disarm()``/``close()``. Give the watchdog its *own* connection to the PLC (a
Modbus TCP server accepts several): bytes written on a connection Python was using in the
middle of a frame would interleave, and the reply read here is taken off that connection.
For the hw watchdog (``/dev/watchdog``), the caller should close its own fd right after
``arm()`` and never write to it: the driver's release happens on the last close.

``kick()`` takes the mutex for a few stores only (the thread never holds it during I/O).
``arm()``, ``disarm()``, ``close()`` and ``stats()`` release the GIL and wait while the
thread is in the middle of a fire or a feed. ``close()`` from several threads at once: one
joins the thread, the others return at once (the actions are detached by then: nothing fires).

fork(): the child has no watchdog thread. Every Watchdog it inherits is inert: the dups are
closed in the child by an at-fork handler, ``arm()`` and ``kick()`` raise ValueError saying
so, ``disarm()``/``close()`` do nothing, ``stats()`` reports ``armed`` False; its mutex and
condition variables (which the parent's thread may have held or waited on at the fork) are
never used or destroyed, so the child exits promptly. Dups made by an ``arm()`` that another
thread was running at the very moment of the fork are not yet the watchdog's and stay open in
the child until exec (FD_CLOEXEC). Create a new Watchdog in the child if it needs one.
"""

import os
from collections.abc import Sequence
from typing import final

from firmware_bridge.results import WatchdogStats

@final
class Watchdog:
    def __init__(self) -> None: ...
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
        """Fire unless kick() within deadline_s (> 0, <= 1 day); replace actions atomically.

        Clears the fired latch and feeds the hw watchdog at once. At most 16 fd writes, 16
        file writes, 64 KiB per payload. ValueError (bad value, a blocking fd, closed or
        inherited through fork()), TypeError (bad shape), OSError (an fd cannot be dup()'d,
        the thread cannot start): nothing changes, no fd is leaked.
        """
    def kick(self) -> None:
        """deadline = now + deadline_s. No effect when disarmed. After a fire it is counted
        but does not un-fire: only arm() does. ValueError after close() and in a fork()ed
        child."""
    def disarm(self) -> None:
        """Stop watching, close the dups. A held hw watchdog fd gets the magic close b"V"
        first, unless the watchdog fired (then the board is left to reboot)."""
    def close(self) -> None:
        """disarm() + stop and join the thread. Idempotent, callable from several threads at
        once (one joins); also done on dealloc."""
    def stats(self) -> WatchdogStats:
        """A new dict of counters and the latest fire's results (see results.py)."""
