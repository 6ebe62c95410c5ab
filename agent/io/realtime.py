"""Real-time scheduling and locked memory: every Linux-specific call of it, in one place.

What the hardware profile's ``[realtime]`` asks (``agent.model.profile.RealtimeSettings``),
done by :meth:`Realtime.start` in ``twinguard run`` after the imports and before the event
loop makes any thread, in this order:

1. ``lock_memory``: thread stacks made small and glibc's malloc kept to ``ARENA_MAX`` arena,
   because once memory is locked every mapping is resident and counts in ``VmLck`` (and
   against ``RLIMIT_MEMLOCK``): a thread's default stack is 8 MiB (``RLIMIT_STACK``), each
   extra malloc arena a 64 MiB reservation. Threads made from now on get
   ``PY_THREAD_STACK`` (:func:`small_thread_stacks`: Python's, and with glibc a C
   library's too); the native watchdog thread sets its own (128 KiB,
   ``firmware_bridge/_watchdog.c``). Then ``mlockall(MCL_CURRENT | MCL_FUTURE)``:
   no page of the agent is paged out, or read back from disk in the middle of a tick.
2. ``scheduling = "fifo"``: the calling thread (the main one, which runs the event loop) to
   ``SCHED_FIFO`` at ``loop_priority``, before the agent has made any other thread, so that
   every thread it makes later inherits it (the config worker, the spool writer, asyncio's
   executor). A worker left at SCHED_OTHER would be a priority inversion through the GIL:
   preempted by any CPU hog while it holds the GIL, it makes the FIFO loop wait for it. The
   permission is proved for ``watchdog_priority`` first (the thread is set there, then
   lowered, which is always allowed), so :meth:`Realtime.watchdog` cannot be refused where
   the loop was granted. The native watchdog thread, made by then at ``loop_priority``,
   goes to ``watchdog_priority`` once armed (:meth:`Realtime.watchdog`, by its kernel thread
   id): above the loop, it preempts a loop that spins with the GIL held.

Refused (EPERM without CAP_SYS_NICE or a high enough ``RLIMIT_RTPRIO``; mlockall's ENOMEM
beyond ``RLIMIT_MEMLOCK``, EPERM with a limit of 0) or not available on this platform: ONE
WARNING naming what was refused, why, and the fix, and the agent runs on at normal priority
with pageable memory. ``scheduling = "other"`` and ``lock_memory = false`` ask nothing and
warn nothing. :meth:`Realtime.status` reads back what the kernel granted, for ``twinguard
status``: each thread's policy and priority (``sched_getscheduler`` by thread id, which Linux
accepts where POSIX says pid), ``VmLck`` and ``VmRSS`` from ``/proc/self/status``.

Processes the agent starts (the hand-over's successor) must not inherit SCHED_FIFO: they are
started through :func:`at_normal_priority`. (``SCHED_RESET_ON_FORK`` would reset every thread
made afterwards too, and only CAP_SYS_NICE can clear it again.)
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import resource
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent.model.profile import MEMLOCK_LIMIT_MIB, RealtimeSettings, Scheduling
from agent.model.status import RealtimeStatus, ThreadSchedStatus

log = logging.getLogger(__name__)

_T = TypeVar("_T")

PY_THREAD_STACK = 256 * 1024
"""Stack of every Python thread made after :meth:`Realtime.start` with memory locked. What
runs there (sqlite, the config push's verification and TOML parsing, getaddrinfo, ssl) used
20 KiB at most, measured; Python-to-Python calls take no C stack (3.11). The margin is for C
recursion: ``repr()`` or ``json.dumps()`` of a list nested to the recursion limit (1000)
overflows 128 KiB (a segfault) and fits 256 KiB, so the recursion limit stays the guard."""
ARENA_MAX = 1
"""glibc malloc arenas: every thread allocates from the main one (the GIL serialises most of
it anyway). Measured on the sim stack, VmLck: 40 MiB with 1, 105 with 2, 236 with glibc's
default (8 per core, 64 MiB each reserved), against about 40 MiB resident in every case."""
M_ARENA_MAX = -8  # mallopt() parameter, <malloc.h>
MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h> on x86, arm, aarch64, riscv (not ppc, sparc)
_OTHER_MCL = ("ppc", "powerpc", "sparc", "alpha")
POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
RESET_ON_FORK = 0x40000000  # or'ed into what sched_getscheduler returns


def _libc() -> Any:
    """The C library through ctypes (the symbols the interpreter itself is linked with), or
    None where there is none. ctypes is imported here: only an agent that locks memory
    carries it."""
    import ctypes  # noqa: PLC0415

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def thread_sched(tid: int) -> tuple[str, int]:
    """(policy, priority) of thread ``tid`` as the kernel has it: ``("fifo", 40)``,
    ``("other", 0)``; ``("unknown", 0)`` where it cannot be read (gone, or no such call)."""
    try:
        policy = os.sched_getscheduler(tid) & ~RESET_ON_FORK
        priority = os.sched_getparam(tid).sched_priority
    except (AttributeError, OSError):
        return "unknown", 0
    return POLICIES.get(policy, str(policy)), priority


def proc_status(*keys: str) -> dict[str, int]:
    """``/proc/self/status`` fields in kB (``VmLck``, ``VmRSS``); a missing one is 0."""
    found = dict.fromkeys(keys, 0)
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0])
    return found


def thread_ids() -> list[int]:
    """Every thread of this process (``/proc/self/task``); just this one where unreadable."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [threading.get_native_id()]


def small_thread_stacks(size: int) -> int:
    """Threads made from now on get ``size`` bytes of stack: Python's (``threading.
    stack_size``) and, with glibc, every other one made with default attributes
    (``pthread_setattr_default_np``: a C library's own thread, lgpio's alert thread on a
    Pi, would otherwise lock 8 MiB). The default stack size glibc now gives (read back), or
    0 where it cannot be set and read."""
    threading.stack_size(size)
    libc = _libc()
    if libc is None or not hasattr(libc, "pthread_setattr_default_np"):
        return 0
    import ctypes  # noqa: PLC0415 - imported by _libc already

    attr = ctypes.create_string_buffer(256)  # > sizeof(pthread_attr_t): 56 x86_64, 64 arm64
    if libc.pthread_attr_init(attr) != 0:
        return 0
    try:
        if (libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(size)) != 0
                or libc.pthread_setattr_default_np(attr) != 0):
            return 0
    finally:
        libc.pthread_attr_destroy(attr)
    got = ctypes.c_size_t(0)
    if libc.pthread_attr_init(attr) != 0:
        return 0
    try:
        if (libc.pthread_getattr_default_np(attr) != 0
                or libc.pthread_attr_getstacksize(attr, ctypes.byref(got)) != 0):
            return 0
    finally:
        libc.pthread_attr_destroy(attr)
    return got.value


def at_normal_priority(call: Callable[[], _T]) -> _T:
    """``call()`` on a short-lived thread that first puts itself at SCHED_OTHER (lowering is
    always allowed), joined; its result, or what it raised. A process it starts (fork and
    exec) inherits that thread's policy, not the loop's SCHED_FIFO: a hand-over successor
    importing for a second at the loop's priority would hold a core from everything at
    normal priority, and on a single core from the loop itself. (That thread holds the GIL
    at SCHED_OTHER for the fork and exec: a few milliseconds, once per hand-over.)"""
    box: list[Any] = []

    def run() -> None:
        try:
            if os.sched_getscheduler(0) & ~RESET_ON_FORK != os.SCHED_OTHER:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except (AttributeError, OSError):
            pass  # nothing to lower, or no such call here
        try:
            box.append((True, call()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    worker = threading.Thread(target=run, name="tg-spawn")
    worker.start()
    worker.join()
    ok, value = box[0]
    if not ok:
        raise value
    result: _T = value
    return result


class Realtime:
    """One agent's real-time setup: asked once (:meth:`start`), the watchdog thread added
    (:meth:`watchdog`), read back (:meth:`status`). ``source`` is the profile's file, named
    in the fix."""

    def __init__(self, settings: RealtimeSettings, source: str) -> None:
        self.settings = settings
        self.source = source
        self.loop_tid = 0
        self.watchdog_tid = 0
        self.fifo = False  # the loop's SCHED_FIFO was granted
        self.refused: list[str] = []  # what was asked and not granted, with why
        self.fallback: str | None = None  # the WARNING's text, once given

    # --- asking --------------------------------------------------------------------------

    def start(self) -> None:
        """In the main thread, after the imports, before any other thread is made. Never
        raises; a refusal is one WARNING (see the module docstring)."""
        s = self.settings
        self.loop_tid = threading.get_native_id()
        if s.lock_memory:
            self._small_threads()
            self._lock()
        if s.scheduling is Scheduling.FIFO:
            self._fifo()
        if self.refused:
            self._warn()
        log.info("real time: loop thread %s %d, memory %s", *thread_sched(self.loop_tid),
                 f"locked ({proc_status('VmLck')['VmLck']} kB)" if self.locked() else
                 "not locked")

    def watchdog(self, tid: int) -> None:
        """The watchdog thread ``tid`` (0: none) to SCHED_FIFO ``watchdog_priority``, where
        the loop's SCHED_FIFO was granted (else it stays at the loop's policy, said once
        already). Never raises: an unexpected refusal is a WARNING of its own."""
        self.watchdog_tid = tid
        if not self.fifo or tid == 0:
            return
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO,
                                  os.sched_param(self.settings.watchdog_priority))
        except OSError as exc:
            self.refused.append(f"SCHED_FIFO {self.settings.watchdog_priority} for the "
                                f"watchdog thread: {os.strerror(exc.errno or 0)}")
            self._warn()

    def _small_threads(self) -> None:
        small_thread_stacks(PY_THREAD_STACK)
        libc = _libc()
        if libc is not None and hasattr(libc, "mallopt"):  # glibc; musl has none to limit
            libc.mallopt(M_ARENA_MAX, ARENA_MAX)

    def _lock(self) -> None:
        libc = _libc()
        if libc is None or not hasattr(libc, "mlockall") or platform.machine().startswith(
                _OTHER_MCL):
            self.refused.append("locked memory: mlockall() is not available on this platform")
            return
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
            return
        import ctypes  # noqa: PLC0415 - imported by _libc already

        err = ctypes.get_errno()
        soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
        limit = "unlimited" if soft == resource.RLIM_INFINITY else _size(soft)
        size = _size(proc_status("VmSize")["VmSize"] << 10)
        why = {errno.ENOMEM: f"RLIMIT_MEMLOCK ({limit}) is below the agent's address space "
                             f"({size})",
               errno.EPERM: f"RLIMIT_MEMLOCK is {limit} and there is no CAP_IPC_LOCK",
               errno.EAGAIN: "some of the memory could not be locked"}.get(err, "")
        self.refused.append(f"locked memory: mlockall: {os.strerror(err)}"
                            + (f" ({why})" if why else ""))

    def _fifo(self) -> None:
        s = self.settings
        try:
            for priority in (s.watchdog_priority, s.loop_priority):  # the higher one proved
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except AttributeError:
            self.refused.append("SCHED_FIFO: not available on this platform")
            return
        except OSError as exc:
            self.refused.append(self._sched_refusal(exc))
            return
        self.fifo = True

    def _sched_refusal(self, exc: OSError) -> str:
        wanted = self.settings.watchdog_priority
        soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        rtprio = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
        if exc.errno == errno.EPERM and (soft == resource.RLIM_INFINITY or soft >= wanted):
            why = (f"RLIMIT_RTPRIO ({rtprio}) allows it, so the kernel refused: a kernel "
                   "with CONFIG_RT_GROUP_SCHED gives a cgroup no real-time runtime unless "
                   "cpu.rt_runtime_us is set")
        elif exc.errno == errno.EPERM:
            why = f"no CAP_SYS_NICE, and RLIMIT_RTPRIO is {rtprio}, below {wanted}"
        else:
            why = os.strerror(exc.errno or 0)
        return (f"SCHED_FIFO {self.settings.loop_priority} for the loop and {wanted} for the "
                f"watchdog thread: {os.strerror(exc.errno or 0)} ({why})")

    def _warn(self) -> None:
        s = self.settings
        grants, limits = [], []
        if any("SCHED_FIFO" in r for r in self.refused):
            grants.append(f"LimitRTPRIO={s.watchdog_priority}")
            limits.append(f"--rtprio={s.watchdog_priority}")
        if any("locked memory" in r for r in self.refused):
            grants.append(f"LimitMEMLOCK={MEMLOCK_LIMIT_MIB}M")
            limits.append(f"--memlock={MEMLOCK_LIMIT_MIB << 20}")
        self.fallback = "; ".join(self.refused)
        log.warning(
            "real-time settings refused, running on at normal priority with pageable memory: "
            "%s. Fix: run the agent under the unit `twinguard systemd-unit` prints (%s), or "
            "raise the limits for a run by hand (prlimit %s -- twinguard run ...); or ask for "
            'nothing: [realtime] scheduling = "other" / lock_memory = false in %s',
            self.fallback, ", ".join(grants), " ".join(limits), self.source)

    # --- reading back ----------------------------------------------------------------------

    def locked(self) -> bool:
        """Memory is locked: ``VmLck`` > 0."""
        return proc_status("VmLck")["VmLck"] > 0

    def status(self) -> RealtimeStatus:
        """What the kernel grants now (not what was asked), for ``twinguard status``."""
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        names[self.loop_tid] = "loop"
        names[self.watchdog_tid] = "watchdog"
        threads = [ThreadSchedStatus(tid, names.get(tid) or _comm(tid), *thread_sched(tid))
                   for tid in thread_ids()]
        mem = proc_status("VmLck", "VmRSS")
        by_tid = {t.tid: t for t in threads}
        return RealtimeStatus(
            scheduling=self.settings.scheduling.value, lock_memory=self.settings.lock_memory,
            loop=by_tid.get(self.loop_tid) or ThreadSchedStatus(
                self.loop_tid, "loop", *thread_sched(self.loop_tid)),
            watchdog=by_tid.get(self.watchdog_tid) if self.watchdog_tid else None,
            threads=tuple(threads), memory_locked=mem["VmLck"] > 0, vmlck_kib=mem["VmLck"],
            vmrss_kib=mem["VmRSS"], fallback=self.fallback)


def _size(n: int) -> str:
    """Bytes for a message: ``64 KiB``, ``37 MiB``."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def _comm(tid: int) -> str:
    """A thread's kernel name (``/proc/self/task/TID/comm``): a thread not made by Python."""
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        return "?"
