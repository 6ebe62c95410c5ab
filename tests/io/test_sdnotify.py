"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from agent.io.panel.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in the file system and its NOTIFY_SOCKET value."""
    with tempfile.TemporaryDirectory(prefix="tg-") as d:  # short path: sun_path is 108 bytes
        path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield sock, path
        finally:
            sock.close()


def datagram(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


@pytest.mark.timeout(10)
def test_messages_arrive_at_a_path_socket(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with Notifier() as n:  # reads os.environ
        assert n.enabled
        assert n.ready("starting: safe values held")
        assert n.watchdog()
        assert n.status("NORMAL, shadow")
        assert n.stopping()
        assert n.notify("EXTEND_TIMEOUT_USEC=5000000")
        assert (n.sent, n.errors) == (5, 0)
    assert datagram(sock) == "READY=1\nSTATUS=starting: safe values held"
    assert datagram(sock) == "WATCHDOG=1"
    assert datagram(sock) == "STATUS=NORMAL, shadow"
    assert datagram(sock) == "STOPPING=1"
    assert datagram(sock) == "EXTEND_TIMEOUT_USEC=5000000"


@pytest.mark.timeout(10)
def test_messages_arrive_at_an_abstract_socket() -> None:
    name = f"twinguard-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert n.ready()
        n.close()
        assert datagram(sock) == "WATCHDOG=1"
        assert datagram(sock) == "READY=1"


def test_unset_socket_is_a_silent_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping()
    assert (n.sent, n.errors) == (0, 0)


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "@"])
def test_unusable_address_disables(value: str, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier({"NOTIFY_SOCKET": value})
    assert not n.enabled
    assert not n.watchdog()
    assert "not a usable AF_UNIX address" in caplog.text


@pytest.mark.timeout(10)
def test_status_cannot_inject_assignments(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.status("twin says\nREADY=1\n\0 hi")
    assert datagram(sock) == "STATUS=twin says READY=1 hi"
    assert not n.notify("WATCHDOG=1\nREADY=1")  # a caller bug: refused, nothing sent
    assert not n.notify("garbage")
    assert n.errors == 2
    n.watchdog()
    assert datagram(sock) == "WATCHDOG=1"  # the refused ones never went out
    n.close()


@pytest.mark.timeout(10)
def test_missing_socket_never_raises_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with tempfile.TemporaryDirectory(prefix="tg-") as d:
        n = Notifier({"NOTIFY_SOCKET": os.path.join(d, "nobody-listens")})
        assert n.enabled
        for _ in range(5):
            assert not n.watchdog()
        n.close()
    assert (n.sent, n.errors) == (0, 5)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "sd_notify" in warnings[0].getMessage()


@pytest.mark.timeout(10)
def test_full_receiver_queue_never_blocks(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier({"NOTIFY_SOCKET": path})
    for _ in range(2000):  # nobody reads: the kernel queue fills, sends must not block
        n.watchdog()
    assert n.sent > 0
    assert n.errors > 0
    assert n.sent + n.errors == 2000
    assert datagram(sock) == "WATCHDOG=1"
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2500000"}, 2.5),
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "<me>"}, 2.5),
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: str(os.getpid()) if v == "<me>" else v for k, v in env.items()}
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "500000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 0.5
