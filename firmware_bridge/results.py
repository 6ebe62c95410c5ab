"""What a watchdog reports: the shapes returned by ``Watchdog.stats()`` and the common API.

Result codes of one fire (same in the native and the Python watchdog), one per action, in
the order the actions were given to ``arm()``:

    fd_writes[i]    bytes written (the whole payload) or -errno
                    (-ETIMEDOUT: the fd stayed full for reply_timeout_s; -EPIPE/-ECONNRESET:
                    peer gone; -EBADF: fd closed under us)
    replies[i]      bytes read from fd i after the write (one read, not parsed);
                    0 = peer closed (EOF); -ETIMEDOUT = nothing within reply_timeout_s;
                    -ECANCELED = not waited for because the write failed; other -errno
    file_writes[j]  0 = written, or -errno (-ENOENT: the path does not exist; never created)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, TypedDict


class FireResults(TypedDict):
    fd_writes: list[int]
    replies: list[int]
    file_writes: list[int]


class WatchdogStats(TypedDict):
    armed: bool  # arm() called and not disarmed since
    fired: bool  # latched: the deadline passed since the last arm()
    kicks: int  # kicks while armed (including kicks after a fire, which change nothing)
    fires: int  # fires since construction
    feeds: int  # bytes written to the hw watchdog fd
    feed_errors: int  # failed hw watchdog writes
    worst_lateness_ns: int  # max over fires of (actions start - deadline)
    last_lateness_ns: int
    last_fire_results: FireResults | None  # the latest fire, kept across re-arm/disarm


class WatchdogAPI(Protocol):
    """The API both ``_watchdog.Watchdog`` and ``pywatchdog.Watchdog`` implement."""

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
    ) -> None: ...
    def kick(self) -> None: ...
    def disarm(self) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> WatchdogStats: ...
