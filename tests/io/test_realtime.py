"""``agent.io.realtime`` in a child process of its own: the test runner itself is never put
at SCHED_FIFO. The child puts its main thread at SCHED_FIFO 10 (as ``Realtime.start`` does the
loop) and starts ``sleep`` twice, directly and through ``at_normal_priority``; the policies
of both children are read here from ``/proc`` and the kernel, not from the child's word.
Needs the privilege to use SCHED_FIFO (root here, as in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from agent.io.realtime import thread_sched

pytestmark = pytest.mark.timeout(30)

CHILD = textwrap.dedent("""
    import json, os, subprocess, sys
    from agent.io.realtime import at_normal_priority, thread_sched
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    sleep = ["sleep", "30"]
    direct = subprocess.Popen(sleep)
    spawned = at_normal_priority(lambda: subprocess.Popen(sleep))
    try:
        at_normal_priority(lambda: 1 / 0)
        raised = None
    except ZeroDivisionError as exc:
        raised = type(exc).__name__
    print(json.dumps({"direct": direct.pid, "spawned": spawned.pid, "raised": raised,
                      "self": thread_sched(0)}), flush=True)
    sys.stdin.read()  # the test reads the children's policies meanwhile
    direct.kill(); spawned.kill()
""")


def test_a_process_started_at_normal_priority_does_not_inherit_fifo() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        got = json.loads(child.stdout.readline())
        assert got["self"] == ["fifo", 10]  # the starter stayed at SCHED_FIFO
        assert thread_sched(got["direct"]) == ("fifo", 10)  # what a plain Popen would give
        assert thread_sched(got["spawned"]) == ("other", 0)
        assert got["raised"] == "ZeroDivisionError"  # the call's exception comes back
        child.stdin.close()
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


def test_thread_sched_reads_the_kernel() -> None:
    assert thread_sched(os.getpid()) == ("other", 0)  # the test runner: never raised
    assert thread_sched(2**22 + 12345) == ("unknown", 0)  # no such thread
