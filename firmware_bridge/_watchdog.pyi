"""The native watchdog's core (C). The public class is ``firmware_bridge.native.Watchdog``
(``class Watchdog(Core, WatchdogAPI)``); its contract is in ``firmware_bridge.api``.

The core owns the thread (started by ``Core()`` with every signal blocked and a 128 KiB
stack, which ``mlockall()`` makes resident whole; joined by ``_close()``) and the plan in
force. ``WatchdogAPI`` checks every value before it calls
``_arm``; the core only refuses what it cannot hold (ValueError, nothing taken). Every
method but ``kick`` and ``fired`` returns a view (``firmware_bridge.results.View``): the
counters, and the results of the plan it reports on if that plan fired. ``pywatchdog.PyCore``
implements these same signatures; a test checks both against this stub.
"""

from firmware_bridge.results import Actions, View

class Core:
    def __init__(self) -> None: ...
    def kick(self) -> None:
        """deadline = now + period. A few stores under the mutex, never waits on the thread."""
    @property
    def fired(self) -> bool:
        """The latch, read without the mutex (an atomic load)."""
    @property
    def tid(self) -> int:
        """The thread's kernel id (for ``os.sched_setscheduler`` and ``/proc/self/task``),
        known when ``Core()`` returns; 0 once ``_close()`` joins it or in a fork()ed child
        (no thread there). ``pywatchdog.PyCore`` starts its thread at the first ``_arm``:
        0 before."""
    def _arm(
        self,
        period_ns: int,
        budget_ns: int,
        feed_ns: int,
        exit_code: int,
        hw_fd: int,
        writes: Actions,
        files: Actions,
        /,
    ) -> View:
        """Replace the plan: deadline = now + period_ns, latch cleared, the hw watchdog fd
        (-1: none) fed at once and every feed_ns. On success the core owns every fd given
        and holds the payloads; on ValueError (closed, forked, out of range) the caller
        still owns them. exit_code -1: no _exit. A file whose fd is negative is reported
        with that value (the -errno its open() got). Returns the replaced plan's view."""
    def _disarm(self) -> View:
        """Detach the plan and close its fds (after b"V" to the hw watchdog fd unless it
        fired). Returns the detached plan's view."""
    def _close(self) -> View:
        """_disarm(), then stop and join the thread (of concurrent calls, one joins)."""
    def _counters(self) -> View:
        """The view of the plan in force (waits while a fire or a feed is under way)."""
