"""The benchmarks' CPU load (sim.bench.load) and the sims' real-time start (sim.stack).

Behaviour, seen from outside through /proc and the scheduler: the hogs spin, at SCHED_OTHER
nice 0 even under a SCHED_FIFO parent; they are reaped when the block ends however it ends,
and die with a parent that is SIGKILLed; a hog that dies fails the run; without stress-ng
the Python hogs stand in and that is said. Never a timing threshold.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.bench.load import SIM_RT_PRIORITY, LoadError, cpu_load
from sim.stack import Stack, pid_running, wait_for

pytestmark = pytest.mark.timeout(60)

HAS_STRESS_NG = shutil.which("stress-ng") is not None
TOOLS = [pytest.param("stress-ng", marks=pytest.mark.skipif(
    not HAS_STRESS_NG, reason="stress-ng is not installed (.ci/run installs it)")), "python"]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.parametrize("tool", TOOLS)
def test_hogs_spin_at_normal_priority_and_are_reaped(tool: str) -> None:
    log = io.StringIO()
    with cpu_load(2, tool, log) as load:
        entered = time.monotonic()
        hogs = list(load.hogs)
        assert len(hogs) == 2 and len(set(hogs)) == 2
        for pid in hogs:
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, pid) == 0
            before = cpu_ticks(pid)
            wait_for(lambda pid=pid, before=before: cpu_ticks(pid) > before + 5, 20,
                     f"hog {pid} burning CPU")
        load.check()
        inside_s = time.monotonic() - entered
    fields = load.fields()
    assert fields["load"] == 2 and fields["load_tool"] == tool
    # /proc counts CPU in clock ticks: over a short block one tick at each end is a few %
    resolution = 100.0 * 2 / (os.sysconf("SC_CLK_TCK") * inside_s)
    assert 0 < fields["load_cpu_percent"] <= 100.0 + resolution + 0.5
    assert not any(pid_running(pid) for pid in hogs), "every hog stopped"
    assert f"2 x {tool} hog" in log.getvalue()


@pytest.mark.parametrize("tool", TOOLS)
def test_a_hog_that_dies_fails_the_run_and_the_rest_are_reaped(tool: str) -> None:
    with pytest.raises(LoadError, match="hog"), cpu_load(2, tool, io.StringIO()) as load:
        hogs = list(load.hogs)
        os.kill(hogs[0], signal.SIGKILL)

        def lost() -> bool:
            try:
                load.check()
            except LoadError:
                return True
            return False

        wait_for(lost, 10, "check() to see the dead hog")
    assert not pid_running(hogs[1])


def test_an_error_in_the_block_stops_the_hogs_and_propagates() -> None:
    with pytest.raises(KeyboardInterrupt), cpu_load(1, "python", io.StringIO()) as load:
        hogs = list(load.hogs)
        raise KeyboardInterrupt
    assert hogs and not any(pid_running(pid) for pid in hogs)


@pytest.mark.parametrize("tool", TOOLS)
def test_hogs_are_normal_under_a_fifo_parent_and_die_with_it(tool: str) -> None:
    """A parent at SCHED_FIFO starts hogs, prints their pids, and is SIGKILLed (no unwinding):
    the hogs ran at SCHED_OTHER, and they go too."""
    code = ("import sys, time\nfrom sim.bench.load import cpu_load\n"
            f"with cpu_load(1, {tool!r}) as load:\n"
            "    print(*load.hogs, flush=True)\n    time.sleep(60)\n")
    chrt = shutil.which("chrt")
    assert chrt is not None
    with subprocess.Popen([chrt, "--fifo", "10", sys.executable, "-c", code],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip(), parent.stderr.read() if parent.stderr else ""
        hogs = [int(w) for w in line.split()]
        assert os.sched_getscheduler(parent.pid) == os.SCHED_FIFO, "the test's premise"
        assert [os.sched_getscheduler(pid) for pid in hogs] == [os.SCHED_OTHER]
        parent.kill()
        parent.wait(10)
    wait_for(lambda: not any(pid_running(pid) for pid in hogs), 10, "the hogs die too")


def test_without_stress_ng_the_python_hogs_stand_in(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no stress-ng, no apt-get to install it
    log = io.StringIO()
    with pytest.raises(LoadError, match="stress-ng is not installed"), \
            cpu_load(1, "stress-ng", log):
        pass
    with cpu_load(1, "auto", log) as load:
        assert load.tool == "python" and len(load.hogs) == 1
    assert "stress-ng not available; using the Python busy loops" in log.getvalue()


def test_no_load_starts_nothing() -> None:
    with cpu_load(0) as load:
        assert load.hogs == [] and load.procs == []
    assert load.fields() == {"load": 0, "load_tool": None, "load_cpu_percent": None}
    with pytest.raises(ValueError, match=">= 0"):
        cpu_load(-1).__enter__()


def fifo_threads(pid: int) -> list[tuple[int, int]]:
    """(policy, priority) of every thread of ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        out.append((os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority))
    return out


@pytest.mark.timeout(60)
def test_stack_starts_the_sims_at_fifo_and_the_agent_normal() -> None:
    with Stack(start_agent=False, sim_rt_priority=SIM_RT_PRIORITY) as stack:
        for pid in (stack.plc.pid, stack.twin.proc.pid):
            threads = fifo_threads(pid)
            assert threads and set(threads) == {(os.SCHED_FIFO, SIM_RT_PRIORITY)}, threads
        agent = stack.start_agent()
        stack.wait_state("normal", timeout=30)
        assert os.sched_getscheduler(agent.pid) == os.SCHED_OTHER
    with Stack(start_agent=False) as stack:  # the default: normal priority, as in every test
        assert os.sched_getscheduler(stack.plc.pid) == os.SCHED_OTHER
        assert os.sched_getscheduler(stack.twin.proc.pid) == os.SCHED_OTHER
