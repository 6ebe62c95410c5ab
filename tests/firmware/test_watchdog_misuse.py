"""What a caller can get wrong, on both implementations: close() from two threads at once,
and an fd whose write() could block the watchdog thread (a pipe or a character device
without O_NONBLOCK), which ``arm()`` refuses."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog_kit import child_env

from firmware_bridge import WatchdogAPI

RACE = """
import os, resource, threading
from watchdog_kit import mapped_bytes, watchdog_threads_once
from {module} import Watchdog

for i in range({rounds}):
    w = Watchdog()
    w.arm(30.0)
    barrier = threading.Barrier(2)
    done = []
    def closer():
        barrier.wait()
        w.close()
        done.append(1)
    closers = [threading.Thread(target=closer, daemon=True) for _ in range(2)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(10)
    if len(done) != 2:
        print("hung in round", i, flush=True)
        os._exit(1)  # no interpreter shutdown: it would join the thread once more
    if watchdog_threads_once(0):
        print("thread left after round", i, flush=True)
        os._exit(2)
    del w
    if i == 0:
        mapped = mapped_bytes()  # the stacks glibc caches for reuse are mapped by now
# A thread left unjoined in each round keeps a stack each (glibc's default size: the stack
# rlimit, else 2 MiB at least); half of that is far above what a correct run can grow by
# (glibc caches up to 40 MiB of freed stacks, and under load more are in flight).
soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
stack = soft if 0 < soft != resource.RLIM_INFINITY else 2 << 20
grown = mapped_bytes() - mapped
if grown > ({rounds} - 1) * stack // 2:
    print("address space grew by", grown, "bytes: threads not joined", flush=True)
    os._exit(3)
print("ok", flush=True)
"""


@pytest.mark.timeout(90)
def test_two_threads_closing_at_once_both_return_and_join_once(
    impl: type[WatchdogAPI],
) -> None:
    """Both close() calls return; the thread is gone once both have returned, and joined
    (a joinable thread's stack stays mapped until it is joined: 200 rounds without a join
    would map 200 stacks more; /proc alone cannot tell a join from the thread's own exit)."""
    script = RACE.format(module=impl.__module__, rounds=200)
    # -P: no cwd on sys.path, so the child imports the build PYTHONPATH names (child_env)
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                         env=child_env(), timeout=80, check=False)
    assert (out.returncode, out.stdout.strip()) == (0, "ok"), out.stderr[-3000:]


BlockingFd = Callable[[bool], tuple[int, list[int]]]


@pytest.fixture
def opened() -> Iterator[list[int]]:
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def a_pipe(opened: list[int], nonblocking: bool) -> int:
    r, w = os.pipe()
    opened += [r, w]
    os.set_blocking(w, not nonblocking)
    return w


def dev_null(opened: list[int], nonblocking: bool) -> int:
    fd = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0))
    opened.append(fd)
    return fd


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("make", [a_pipe, dev_null], ids=["pipe", "chardev"])
@pytest.mark.parametrize("role", ["fd_writes", "hw_watchdog_fd"])
@pytest.mark.timeout(10)
def test_blocking_fd_is_refused_at_arm_naming_it(
    wd: WatchdogAPI, opened: list[int], make: Callable[[list[int], bool], int], role: str
) -> None:
    fd = make(opened, False)
    before = _fds()
    kwargs: dict[str, object] = (
        {"fd_writes": [(fd, b"x")]} if role == "fd_writes" else {"hw_watchdog_fd": fd}
    )
    with pytest.raises(ValueError, match=rf"\b{role}\b.*\bfd {fd}\b.*O_NONBLOCK"):
        wd.arm(1.0, **kwargs)  # type: ignore[arg-type]
    assert wd.stats()["armed"] is False
    assert _fds() == before, "the dup is closed again"
    os.set_blocking(fd, False)
    wd.arm(30.0, **kwargs)  # type: ignore[arg-type]
    assert wd.stats()["armed"] is True


@pytest.mark.timeout(10)
def test_a_refused_rearm_keeps_the_previous_arming(wd: WatchdogAPI, opened: list[int]) -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        wd.arm(0.1, fd_writes=[(ours.fileno(), b"kept")], reply_timeout_s=0.0)
        with pytest.raises(ValueError, match="O_NONBLOCK"):
            wd.arm(0.1, fd_writes=[(a_pipe(opened, False), b"x")])
        peer.settimeout(5.0)
        assert peer.recv(4) == b"kept"


@pytest.mark.timeout(10)
def test_a_full_pipe_costs_the_fire_its_budget_not_more(
    wd: WatchdogAPI, opened: list[int], tmp_path: Path
) -> None:
    """A full O_NONBLOCK pipe: -ETIMEDOUT after reply_timeout_s, the actions after it run."""
    w = a_pipe(opened, True)
    with pytest.raises(BlockingIOError):
        while True:
            os.write(w, b"\0" * 65536)
    ours, peer = socket.socketpair()
    led = tmp_path / "led"
    led.write_bytes(b"0")
    with ours, peer:
        wd.arm(0.02, fd_writes=[(w, b"safe"), (ours.fileno(), b"next")], reply_timeout_s=0.1,
               file_writes=[(str(led), b"1")])
        peer.settimeout(5.0)
        assert peer.recv(4) == b"next"
        end = time.monotonic() + 5.0
        while wd.stats()["last_fire_results"] is None and time.monotonic() < end:
            time.sleep(0.005)
        res = wd.stats()["last_fire_results"]
    assert res is not None
    assert res["fd_writes"] == [-errno.ETIMEDOUT, 4]
    assert res["replies"][0] == -errno.ECANCELED
    assert res["file_writes"] == [0]
    assert led.read_bytes() == b"1"
