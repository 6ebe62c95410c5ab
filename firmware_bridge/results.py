"""What a watchdog reports: the shapes returned by ``Watchdog.stats()``, and how a core's view
becomes them.

Result codes of one fire (same in the native and the Python watchdog), one per action, in
the order the actions were given to ``arm()``:

    fd_writes[i]    bytes written (the whole payload) or -errno
                    (-ETIMEDOUT: the fd stayed full for reply_timeout_s; -EPIPE/-ECONNRESET:
                    peer gone; -EBADF: fd not writable)
    replies[i]      bytes read from fd i after the write, until the reply was whole (MBAP: its
                    length field; RTU: 8 bytes, 5 for an exception) or the line quiet for 5 ms
                    (not parsed; the next request waits for it);
                    0 = peer closed (EOF); -ETIMEDOUT = nothing within reply_timeout_s;
                    -ECANCELED = not waited for because the write failed; other -errno
    file_writes[j]  0 = written, or -errno (-ENOENT: the path did not exist at arm time; a
                    file is never created)

A core's view (what ``_arm``/``_disarm``/``_close``/``_counters`` return, see
``_watchdog.pyi``) is a flat tuple of ints::

    armed, fired, kicks, fires, feeds, feed_errors          the counters, always
    lateness_ns, n, w[0..n), r[0..n), f[0..)                 only for a plan that fired
"""

from __future__ import annotations

from typing import TypedDict

View = tuple[int, ...]
Actions = tuple[tuple[int, bytes], ...]  # what a core is handed: (fd, payload) pairs
VIEW_HEAD = 6  # armed, fired, kicks, fires, feeds, feed_errors


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


def fire_in(view: View) -> tuple[int, FireResults] | None:
    """(lateness_ns, results) of the fire a view carries, or None if its plan has not fired."""
    if len(view) == VIEW_HEAD:
        return None
    lateness_ns, n, *codes = view[VIEW_HEAD:]
    return lateness_ns, FireResults(
        fd_writes=codes[:n], replies=codes[n : 2 * n], file_writes=codes[2 * n :]
    )


def copy_results(results: FireResults | None) -> FireResults | None:
    """A copy the caller may change."""
    if results is None:
        return None
    return FireResults(
        fd_writes=list(results["fd_writes"]),
        replies=list(results["replies"]),
        file_writes=list(results["file_writes"]),
    )
