"""Real-time scheduling and locked memory of a real agent, read from outside its process.

A real ``python -m agent run`` on the simulated plant (``sim.stack.Stack``); what the kernel
granted is read from ``/proc/PID/task`` and ``sched_getscheduler(TID)`` here, not taken from
the agent's word, then compared with what ``twinguard status`` reports. The refusal is made
to happen for real: the agent runs without ``CAP_SYS_NICE``/``CAP_IPC_LOCK`` (``setpriv``
drops them from the bounding set, so even root lacks them) under ``RLIMIT_RTPRIO`` 0 and a
64 KiB ``RLIMIT_MEMLOCK`` (``prlimit``), as a unit without ``LimitRTPRIO=``/``LimitMEMLOCK=``
would run it. The tests run as root (the CI machine's user): the granted case needs the
privilege a unit's limits would give.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.model.profile import MEMLOCK_LIMIT_MIB
from sim.stack import NO_REALTIME, Stack, sim_tank_text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# the agent's threads once it runs: loop, native watchdog, config worker, asyncio executor,
# spool writer (a twin is configured)
THREADS_AT_NORMAL = 5


def realtime_profile(table: str) -> str:
    """sim-tank with ``table`` (the body of ``[realtime]``) appended."""
    return f"{sim_tank_text()}\n[realtime]\n{table}\n"


def kernel_threads(pid: int) -> dict[int, tuple[str, str, int]]:
    """Every thread of ``pid`` as the kernel has it: tid -> (comm, policy, priority)."""
    names = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        tid = int(task)
        comm = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        policy = os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
        out[tid] = (comm, names.get(policy, str(policy)), os.sched_getparam(tid).sched_priority)
    return out


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise KeyError(key)


def settled(stack: Stack) -> dict[str, Any]:
    """The snapshot once the agent is NORMAL with its watchdog armed and every thread made."""
    snap = stack.wait_status(
        lambda s: s["state"] == "normal" and s["realtime"]["watchdog"] is not None
        and len(s["realtime"]["threads"]) >= THREADS_AT_NORMAL, 30,
        "NORMAL, the watchdog armed and the agent's threads made")
    rt: dict[str, Any] = snap["realtime"]
    return rt


def realtime_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "agent.io.realtime" in ln]


def test_every_thread_at_fifo_the_watchdog_above_and_memory_locked() -> None:
    with Stack(realtime=True) as stack:  # the shipped defaults: fifo 40 / 45, locked
        assert stack.agent is not None
        rt = settled(stack)
        threads = kernel_threads(stack.agent.pid)
        watchdog = [tid for tid, (comm, _, _) in threads.items() if comm == "tg-watchdog"]
        assert len(watchdog) == 1
        assert threads[watchdog[0]][1:] == ("fifo", 45)
        # every other thread (the loop, and each one the agent made after it) inherited the
        # loop's SCHED_FIFO 40: none left at SCHED_OTHER to hold the GIL from the loop
        others = {tid: sched[1:] for tid, sched in threads.items() if tid != watchdog[0]}
        assert len(others) >= THREADS_AT_NORMAL - 1
        assert set(others.values()) == {("fifo", 40)}, threads
        assert threads[stack.agent.pid][1:] == ("fifo", 40)  # the main thread: the loop
        # locked: all of it resident, and well inside the unit's LimitMEMLOCK
        locked = vm_kib(stack.agent.pid, "VmLck")
        assert locked > 0
        assert locked >= 0.9 * vm_kib(stack.agent.pid, "VmSize")  # MCL_CURRENT | MCL_FUTURE
        assert locked < MEMLOCK_LIMIT_MIB * 1024 / 2, f"VmLck {locked} kB"
        # twinguard status reports what the kernel granted, thread by thread
        assert (rt["loop"]["tid"], rt["loop"]["policy"], rt["loop"]["priority"]) == (
            stack.agent.pid, "fifo", 40)
        assert (rt["watchdog"]["tid"], rt["watchdog"]["policy"],
                rt["watchdog"]["priority"]) == (watchdog[0], "fifo", 45)
        reported = {t["tid"]: (t["policy"], t["priority"]) for t in rt["threads"]}
        assert reported.items() <= {tid: s[1:] for tid, s in threads.items()}.items()
        assert rt["memory_locked"] is True and rt["vmlck_kib"] > 0 and rt["fallback"] is None
        text = stack.status_text()
        assert "loop FIFO 40, watchdog FIFO 45" in text and "memory locked" in text
        assert "REFUSED" not in text
        assert not [ln for ln in realtime_lines(stack.agent_stderr()) if "WARNING" in ln]


def test_refused_one_warning_then_normal_priority_and_the_plant_guarded() -> None:
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    assert setpriv and prlimit, "util-linux's setpriv and prlimit are needed"
    with Stack(start_agent=False, realtime=True) as stack:
        agent = stack.start_agent(wrapper=(
            setpriv, "--bounding-set=-sys_nice,-ipc_lock", "--inh-caps=-all", "--",
            prlimit, "--rtprio=0", "--memlock=65536", "--"))
        rt = settled(stack)  # it still reaches NORMAL and guards the plant
        threads = kernel_threads(agent.pid)
        assert {sched[1:] for sched in threads.values()} == {("other", 0)}, threads
        assert vm_kib(agent.pid, "VmLck") == 0
        warnings = [ln for ln in realtime_lines(stack.agent_stderr()) if "WARNING" in ln]
        assert len(warnings) == 1, warnings  # one, naming what, why and the fix
        (warning,) = warnings
        for what in ("SCHED_FIFO 40 for the loop and 45 for the watchdog thread",
                     "Operation not permitted", "RLIMIT_RTPRIO is 0", "mlockall",
                     "RLIMIT_MEMLOCK (64 KiB)", "LimitRTPRIO=45",
                     f"LimitMEMLOCK={MEMLOCK_LIMIT_MIB}M", "twinguard systemd-unit",
                     'scheduling = "other"', str(stack.profile_path)):
            assert what in warning, what
        assert (rt["loop"]["policy"], rt["watchdog"]["policy"]) == ("other", "other")
        assert rt["memory_locked"] is False
        assert rt["fallback"] and "SCHED_FIFO" in rt["fallback"] and "mlockall" in rt["fallback"]
        assert "REFUSED" in stack.status_text()


@pytest.mark.parametrize("lock", [False, True], ids=["nothing", "lock-only"])
def test_other_scheduling_asks_nothing_of_the_scheduler(lock: bool) -> None:
    """``scheduling = "other"``: nothing asked, nothing warned. Without ``lock_memory`` this
    is what the test harness runs every other agent with (``Stack.realtime_default``)."""
    text = realtime_profile("scheduling = \"other\"\nlock_memory = true") if lock else None
    with Stack(profile_text=text) as stack:
        assert stack.agent is not None
        if not lock:
            assert stack.profile_path.read_text().endswith(NO_REALTIME)
        rt = settled(stack)
        threads = kernel_threads(stack.agent.pid)
        assert {sched[1:] for sched in threads.values()} == {("other", 0)}, threads
        assert (vm_kib(stack.agent.pid, "VmLck") > 0) is lock
        assert rt["scheduling"] == "other" and rt["fallback"] is None
        assert rt["memory_locked"] is lock
        assert not [ln for ln in realtime_lines(stack.agent_stderr()) if "WARNING" in ln]
