"""``agent.io.realtime`` in child processes of their own: the test runner itself is never put
at SCHED_FIFO nor given small thread stacks. One child puts its main thread at SCHED_FIFO 10
(as ``Realtime.start`` does the loop) and starts ``sleep`` twice, directly and through
``at_normal_priority``; the policies of both are read here from the kernel, not from the
child's word. Needs the privilege to use SCHED_FIFO (root here, as in CI). Another makes
threads before and after ``small_thread_stacks`` and each reports the stack glibc gave it
(``pthread_getattr_np``): a Python thread, and a thread a C library makes with default
attributes (made here through ctypes).
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


STACKS = textwrap.dedent("""
    import ctypes, json, threading
    from agent.io.realtime import small_thread_stacks
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong

    def own_stack():
        attr, size = ctypes.create_string_buffer(256), ctypes.c_size_t(0)
        assert libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) == 0
        assert libc.pthread_attr_getstacksize(attr, ctypes.byref(size)) == 0
        libc.pthread_attr_destroy(attr)
        return size.value

    def c_thread():
        got = []
        body = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(
            lambda _: got.append(own_stack()))
        tid = ctypes.c_ulong(0)
        assert libc.pthread_create(ctypes.byref(tid), None, body, None) == 0
        libc.pthread_join(tid, None)
        return got[0]

    def py_thread():
        got = []
        t = threading.Thread(target=lambda: got.append(own_stack()))
        t.start(); t.join()
        return got[0]

    before = [c_thread(), py_thread()]
    default = small_thread_stacks(256 * 1024)
    print(json.dumps({"before": before, "default": default, "after": [c_thread(), py_thread()]}))
""")


def test_small_thread_stacks_reach_c_library_threads_too() -> None:
    done = subprocess.run([sys.executable, "-c", STACKS], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["before"][0] > 1024 * 1024  # glibc's default (RLIMIT_STACK, 8 MiB here)
    assert got["default"] == 256 * 1024
    assert got["after"] == [256 * 1024, 256 * 1024]


def test_thread_sched_reads_the_kernel() -> None:
    assert thread_sched(os.getpid()) == ("other", 0)  # the test runner: never raised
    assert thread_sched(2**22 + 12345) == ("unknown", 0)  # no such thread
