"""The watchdog API, in process, on both implementations (the native one and the Python twin).

No hang here (see test_watchdog_hang.py): these check the actions, the latch, re-arming,
disarm, the hw watchdog feed / magic close, error reporting and resource hygiene.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog_kit import watchdog_threads, watchdog_threads_once

from firmware_bridge import WatchdogAPI

try:
    from firmware_bridge import native
except ImportError:  # pragma: no cover - the build is wired in setup.py
    native = None  # type: ignore[assignment]

# the fixtures ``impl`` (both implementations) and ``wd`` (one of each) are in conftest.py


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(ours, peer): the watchdog writes to ``ours``; the test reads at ``peer``."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def recv_exactly(sock: socket.socket, n: int, timeout_s: float = 5.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(100) == b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


@pytest.mark.timeout(10)
def test_fire_writes_payload_reads_reply_writes_file(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    ours, peer = pair
    led = tmp_path / "led"
    led.write_bytes(b"0\n")
    missing = tmp_path / "no-such-dir" / "brightness"
    wd.arm(
        0.02,
        fd_writes=[(ours.fileno(), b"\x00\x01SAFE")],
        reply_timeout_s=5.0,
        file_writes=[(str(led), b"1"), (str(missing), b"1")],
    )
    assert recv_exactly(peer, 6) == b"\x00\x01SAFE"
    peer.sendall(b"ok-reply")
    assert wait_for(lambda: wd.stats()["last_fire_results"] is not None)
    st = wd.stats()
    assert st["fired"] and st["armed"] and st["fires"] == 1
    assert st["worst_lateness_ns"] == st["last_lateness_ns"] >= 0
    assert st["last_fire_results"] == {
        "fd_writes": [6],
        "replies": [len(b"ok-reply")],
        "file_writes": [0, -errno.ENOENT],
    }
    assert led.read_bytes() == b"1"  # truncated and replaced
    assert not missing.exists()  # never created


@pytest.mark.timeout(10)
def test_fire_is_latched_kick_does_not_unfire_rearm_does(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    wd.arm(0.02, fd_writes=[(ours.fileno(), b"A")], reply_timeout_s=0.0)
    assert recv_exactly(peer, 1) == b"A"
    assert wait_for(lambda: wd.stats()["fired"])
    for _ in range(5):
        wd.kick()
    time.sleep(0.1)  # several deadlines: a latched watchdog does not fire again
    st = wd.stats()
    assert st["fired"] and st["fires"] == 1 and st["kicks"] == 5
    assert st["last_fire_results"] == {
        "fd_writes": [1],
        "replies": [-errno.ETIMEDOUT],
        "file_writes": [],
    }
    assert nothing_pending(peer)

    wd.arm(0.02, fd_writes=[(ours.fileno(), b"B")], reply_timeout_s=0.0)
    assert not wd.stats()["fired"]
    assert recv_exactly(peer, 1) == b"B"
    assert wait_for(lambda: wd.stats()["fires"] == 2)


@pytest.mark.timeout(20)
def test_kicking_keeps_it_silent(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    wd.arm(0.05, fd_writes=[(ours.fileno(), b"X")])
    kicks = 0
    end = time.monotonic() + 1.5  # 30 deadlines
    while time.monotonic() < end:
        wd.kick()
        kicks += 1
        time.sleep(0.0005)
    st = wd.stats()
    wd.disarm()
    assert kicks >= 1000
    assert st["kicks"] == kicks
    assert st["fires"] == 0 and not st["fired"]
    assert nothing_pending(peer)


@pytest.mark.timeout(30)
def test_a_kick_in_the_last_millisecond_keeps_it_silent() -> None:
    """The native thread wakes 1 ms before a deadline and spins to it: a kick that lands in
    that millisecond must still move the deadline. Each kick is aimed 0.6 ms before the
    deadline the previous one set; a kick counts only where the gap between them, taken
    conservatively (the earlier kick's start to the later kick's end), stayed below the
    period: then nothing may fire. Gaps a preemption stretched restart the attempt."""
    if native is None:
        pytest.skip("the native watchdog is not built")
    period = 0.05
    proven = 0
    end = time.monotonic() + 20
    while proven < 8 and time.monotonic() < end:
        wd = native.Watchdog()
        ours, peer = socket.socketpair()
        try:
            wd.arm(period, fd_writes=[(ours.fileno(), b"K")], reply_timeout_s=0.0)
            start = time.monotonic()
            wd.kick()
            last_start = start
            ok = 0
            for _ in range(10):
                while time.monotonic() < last_start + period - 0.0006:
                    pass
                t0 = time.monotonic()
                wd.kick()
                t1 = time.monotonic()
                if t1 - last_start >= period:
                    break  # preempted: this gap proves nothing
                ok += 1
                last_start = t0
            fired = wd.fired
            st = wd.stats()
            silent = nothing_pending(peer)
        finally:
            wd.close()
            ours.close()
            peer.close()
        if ok == 10:
            assert not fired and st["fires"] == 0 and silent, st
            proven += 1
    assert proven >= 5, f"only {proven} attempts ran unpreempted"


@pytest.mark.timeout(10)
def test_disarm_stops_watching_and_rearm_replaces_actions(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    other_ours, other_peer = socket.socketpair()
    with other_ours, other_peer:
        wd.arm(0.03, fd_writes=[(ours.fileno(), b"old")])
        wd.disarm()
        assert wd.stats()["armed"] is False
        time.sleep(0.15)
        assert nothing_pending(peer)
        assert wd.stats()["fires"] == 0

        wd.arm(10.0, fd_writes=[(ours.fileno(), b"old")])
        wd.arm(0.03, fd_writes=[(other_ours.fileno(), b"new")], reply_timeout_s=0.0)
        assert recv_exactly(other_peer, 3) == b"new"
        assert wait_for(lambda: wd.stats()["fired"])
        assert nothing_pending(peer)


@pytest.mark.timeout(10)
def test_fd_is_duplicated_at_arm(wd: WatchdogAPI) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    with srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        with conn:
            wd.arm(0.05, fd_writes=[(client.fileno(), b"still here")], reply_timeout_s=0.0)
            client.close()  # Python drops its object; the watchdog keeps its own dup
            assert recv_exactly(conn, 10) == b"still here"


@pytest.mark.timeout(10)
def test_broken_fds_are_reported_not_fatal(wd: WatchdogAPI, tmp_path: Path) -> None:
    gone_ours, gone_peer = socket.socketpair()
    gone_peer.close()  # peer closed before the fire
    read_end, write_end = os.pipe()  # a read-only fd: write() gives EBADF
    os.set_blocking(read_end, False)  # arm() refuses a blocking pipe
    ok_ours, ok_peer = socket.socketpair()
    try:
        wd.arm(
            0.02,
            fd_writes=[
                (gone_ours.fileno(), b"x"),
                (read_end, b"y"),
                (ok_ours.fileno(), b"z"),
            ],
            reply_timeout_s=0.0,
        )
        assert recv_exactly(ok_peer, 1) == b"z"  # one broken fd does not stop the others
        assert wait_for(lambda: wd.stats()["last_fire_results"] is not None)
        res = wd.stats()["last_fire_results"]
        assert res is not None
        assert res["fd_writes"][0] in (-errno.EPIPE, -errno.ECONNRESET)
        assert res["fd_writes"][1] == -errno.EBADF
        assert res["fd_writes"][2] == 1
        assert res["replies"][:2] == [-errno.ECANCELED, -errno.ECANCELED]
    finally:
        for s in (gone_ours, ok_ours, ok_peer):
            s.close()
        os.close(read_end)
        os.close(write_end)


@pytest.mark.timeout(10)
def test_hw_watchdog_fed_while_healthy_then_magic_close(wd: WatchdogAPI, tmp_path: Path) -> None:
    dev = tmp_path / "watchdog"
    dev.write_bytes(b"")
    fd = os.open(dev, os.O_WRONLY | os.O_APPEND)
    try:
        wd.arm(30.0, hw_watchdog_fd=fd, hw_feed_interval_s=0.01)
    finally:
        os.close(fd)  # as with /dev/watchdog: the caller closes its own fd at once
    assert wait_for(lambda: wd.stats()["feeds"] >= 5)
    wd.kick()
    wd.disarm()
    data = dev.read_bytes()
    assert data.endswith(b"V")
    assert set(data[:-1]) == {0} and len(data) - 1 == wd.stats()["feeds"] >= 5
    assert wd.stats()["feed_errors"] == 0


@pytest.mark.timeout(10)
def test_hw_watchdog_not_fed_after_fire_and_no_magic_close(wd: WatchdogAPI, tmp_path: Path) -> None:
    dev = tmp_path / "watchdog"
    dev.write_bytes(b"")
    fd = os.open(dev, os.O_WRONLY | os.O_APPEND)
    try:
        wd.arm(0.1, hw_watchdog_fd=fd, hw_feed_interval_s=0.005)
    finally:
        os.close(fd)
    assert wait_for(lambda: wd.stats()["fired"])
    feeds = wd.stats()["feeds"]
    assert feeds >= 1
    size = dev.stat().st_size
    time.sleep(0.1)  # twenty feed intervals
    assert dev.stat().st_size == size == feeds
    wd.disarm()  # fired: the board is left to reboot
    assert dev.read_bytes() == b"\0" * feeds


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"deadline_s": 0.0}, ValueError),
        ({"deadline_s": -1.0}, ValueError),
        ({"deadline_s": float("nan")}, ValueError),
        ({"deadline_s": float("inf")}, ValueError),
        ({"deadline_s": 1.0, "reply_timeout_s": -0.1}, ValueError),
        ({"deadline_s": 1.0, "hw_feed_interval_s": 0.0}, ValueError),
        ({"deadline_s": 1.0, "exit_code": 256}, ValueError),
        ({"deadline_s": 1.0, "exit_code": -1}, ValueError),
        ({"deadline_s": 1.0, "fd_writes": [(0, b"x")] * 17}, ValueError),
        ({"deadline_s": 1.0, "fd_writes": [(0, b"x" * 65537)]}, ValueError),
        ({"deadline_s": 1.0, "fd_writes": [(0, "text")]}, TypeError),
        ({"deadline_s": 1.0, "fd_writes": [(987654, b"x")]}, OSError),
        ({"deadline_s": 1.0, "hw_watchdog_fd": 987654}, OSError),
        ({"deadline_s": 1.0, "file_writes": [(None, b"1")]}, TypeError),
    ],
)
@pytest.mark.timeout(10)
def test_bad_arguments_raise_and_change_nothing(
    wd: WatchdogAPI, kwargs: dict[str, object], exc: type[Exception]
) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(exc):
        wd.arm(**kwargs)  # type: ignore[arg-type]
    assert wd.stats()["armed"] is False
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.timeout(10)
def test_bad_rearm_keeps_the_previous_arming(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, peer = pair
    wd.arm(0.05, fd_writes=[(ours.fileno(), b"kept")], reply_timeout_s=0.0)
    with pytest.raises(OSError):
        wd.arm(0.05, fd_writes=[(987654, b"x")])
    assert recv_exactly(peer, 4) == b"kept"


@pytest.mark.timeout(10)
def test_close_is_idempotent_and_final(impl: type[WatchdogAPI]) -> None:
    w = impl()
    w.close()  # never armed
    w = impl()
    w.arm(5.0)
    w.close()
    w.close()
    assert w.stats()["armed"] is False
    with pytest.raises(ValueError, match="closed"):
        w.kick()
    with pytest.raises(ValueError, match="closed"):
        w.arm(1.0)
    w.disarm()  # harmless


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(60)
def test_ten_thousand_cycles_leak_no_thread_and_no_fd(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    ours, _peer = pair
    dev = os.open(tmp_path / "watchdog", os.O_WRONLY | os.O_CREAT, 0o600)
    try:

        def cycle() -> None:
            wd.arm(
                60.0,
                fd_writes=[(ours.fileno(), b"frame")],
                file_writes=[(str(tmp_path / "led"), b"1")],
                hw_watchdog_fd=dev,
                hw_feed_interval_s=60.0,
            )
            wd.kick()
            wd.disarm()

        cycle()  # the thread starts on the first arm
        threads, fds = watchdog_threads(), _fds()
        for _ in range(10_000):
            cycle()
        assert (watchdog_threads(), _fds()) == (threads, fds)
        assert wd.stats()["kicks"] == 10_001
        assert wd.stats()["fires"] == 0
    finally:
        os.close(dev)
    wd.close()
    assert watchdog_threads_once(threads - 1) == threads - 1  # close() joins the thread


@pytest.mark.timeout(10)
def test_native_thread_blocks_all_signals() -> None:
    if native is None:
        pytest.fail("firmware_bridge._watchdog is not built")
    before = set(os.listdir("/proc/self/task"))
    w = native.Watchdog()
    try:
        w.arm(5.0)
        new = set(os.listdir("/proc/self/task")) - before
        assert len(new) == 1
        status = Path(f"/proc/self/task/{new.pop()}/status").read_text()
        sigblk = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16
        )
        for sig in ("SIGINT", "SIGTERM", "SIGALRM", "SIGCHLD", "SIGUSR1", "SIGPIPE", "SIGHUP"):
            signum = int(getattr(__import__("signal"), sig))
            assert sigblk & (1 << (signum - 1)), sig
    finally:
        w.close()


@pytest.mark.timeout(10)
def test_tid_is_the_watchdog_thread_until_it_is_joined(impl: type[WatchdogAPI]) -> None:
    """``tid`` names the watchdog's own thread (its scheduling is set through it: agent.io.
    realtime): the native one from construction, the twin's from its first arm; 0 once
    closed (a stale id could be another thread's by then)."""
    w = impl()
    try:
        assert (w.tid > 0) is impl.native  # the twin's thread starts at the first arm
        w.arm(5.0)
        tid = w.tid
        assert tid > 0 and tid != threading.get_native_id()
        assert str(tid) in os.listdir("/proc/self/task")
        if impl.native:
            assert Path(f"/proc/self/task/{tid}/comm").read_text().strip() == "tg-watchdog"
        else:
            assert [t.name for t in threading.enumerate()
                    if t.native_id == tid] == ["twinguard-pywatchdog"]
        assert w.tid == tid  # stable while it runs
    finally:
        w.close()
    assert w.tid == 0


@pytest.mark.timeout(60)
def test_concurrent_kicks_while_rearming(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    """Kicks from several threads race arm/disarm/stats: no crash, no deadlock, sane counts."""

    ours, _peer = pair
    stop = threading.Event()
    done: list[int] = []

    def kicker() -> None:
        n = 0
        while not stop.is_set():
            wd.kick()
            n += 1
        done.append(n)

    threads = [threading.Thread(target=kicker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(2000):
            wd.arm(30.0, fd_writes=[(ours.fileno(), b"f")])
            if i % 10 == 0:
                wd.stats()
            wd.disarm()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    st = wd.stats()
    assert len(done) == 3
    assert 0 <= st["kicks"] <= sum(done)
    assert st["fires"] == 0 and not st["armed"]


@pytest.mark.timeout(10)
def test_a_full_peer_times_out_and_the_file_action_still_runs(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    """A peer that stops reading must not wedge the watchdog thread on a blocking write."""
    ours, _peer = pair
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):  # fill the socket buffers until the kernel refuses
        while True:
            ours.send(b"\0" * 65536)
    ours.setblocking(True)  # the watchdog must not rely on the caller's O_NONBLOCK
    led = tmp_path / "led"
    led.write_bytes(b"0")
    wd.arm(
        0.02,
        fd_writes=[(ours.fileno(), b"safe")],
        reply_timeout_s=0.1,
        file_writes=[(str(led), b"1")],
    )
    assert wait_for(lambda: wd.stats()["last_fire_results"] is not None)
    assert wd.stats()["last_fire_results"] == {
        "fd_writes": [-errno.ETIMEDOUT],
        "replies": [-errno.ECANCELED],
        "file_writes": [0],
    }
    assert led.read_bytes() == b"1"


@pytest.mark.timeout(10)
def test_fired_is_the_latch_read_cheaply(
    wd: WatchdogAPI, pair: tuple[socket.socket, socket.socket]
) -> None:
    """``fired`` follows the latch (what stats() says), no dict built: False while kicked,
    True once the deadline passed, False again after a re-arm."""
    ours, peer = pair
    assert wd.fired is False  # never armed
    wd.arm(30.0, fd_writes=[(ours.fileno(), b"F")], reply_timeout_s=0.0)
    wd.kick()
    assert wd.fired is False
    wd.arm(0.02, fd_writes=[(ours.fileno(), b"F")], reply_timeout_s=0.0)
    assert recv_exactly(peer, 1) == b"F"
    assert wait_for(lambda: wd.fired)
    assert wd.stats()["fired"] is True
    wd.arm(30.0)
    assert wd.fired is False and wd.stats()["fired"] is False


@pytest.mark.timeout(10)
def test_the_led_file_is_the_one_opened_at_arm(wd: WatchdogAPI, tmp_path: Path) -> None:
    """The fault LED path is opened by arm(): a file that appears later is not written (its
    fire result is the -ENOENT of that open), a file replaced later keeps its old inode."""
    late, kept = tmp_path / "late", tmp_path / "kept"
    kept.write_bytes(b"0\n")
    wd.arm(0.05, file_writes=[(str(late), b"1"), (str(kept), b"1")])
    late.write_bytes(b"0")
    kept.rename(tmp_path / "kept.old")
    kept.write_bytes(b"new")
    assert wait_for(lambda: wd.stats()["last_fire_results"] is not None)
    assert wd.stats()["last_fire_results"] == {
        "fd_writes": [], "replies": [], "file_writes": [-errno.ENOENT, 0]}
    assert late.read_bytes() == b"0" and kept.read_bytes() == b"new"
    assert (tmp_path / "kept.old").read_bytes() == b"1", "written at offset 0, truncated"
