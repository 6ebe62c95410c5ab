"""Why the PLC cannot be reached, in words an engineer can act on (never a traceback).

Each failure is made to happen for real: a device path that does not exist, a pty the user
may not open (``twinguard read`` run as ``nobody``), a pty that refuses even parity, a port
held exclusively by another master, a host name that does not resolve, a closed port, and a
listener whose accept queue is full (the SYN is never answered: a connect timeout).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.profile import Profile
from agent.model.readings import Quality
from sim.plc.harness import SocatPair, pty_accepts_parity

pytestmark = pytest.mark.timeout(40)

ROOT = Path(__file__).resolve().parents[2]
SIM_TANK = ROOT / "hw_profiles" / "sim-tank.toml"
TCP_PLC = 'transport = "tcp"\nhost = "127.0.0.1"\nport = 15020\n'
RTU_N = 'transport = "rtu"\ndevice = "/dev/ttyUSB0"\nbaudrate = 19200\nparity = "N"\nstopbits = 2\n'


# ``twinguard read`` as user nobody: the interpreter lives under /root (not open to others),
# so the child loads everything the read needs as root, then drops to nobody and runs it
AS_NOBODY = """
import asyncio, json, os, sys, termios, serial, rich.console, rich.table
import agent.cli.main, agent.cli.read, agent.config.profile.load
import agent.io.modbus.client, agent.io.modbus.transport
agent.config.profile.load.load_profile("sim-tank")  # warms importlib.resources up
pw = __import__("pwd").getpwnam("nobody")
os.setgroups([]); os.setgid(pw.pw_gid); os.setuid(pw.pw_uid)
sys.exit(agent.cli.main.main(sys.argv[1:]))
"""


def twinguard_read(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    argv = ["-c", AS_NOBODY] if as_nobody else ["-m", "agent"]
    return subprocess.run(
        [sys.executable, *argv, "read", "--json", *args],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def assert_unreachable(proc: subprocess.CompletedProcess[str], where: str, why: str) -> None:
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    assert f"cannot reach the PLC at {where}: {why}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def reasons(profile: Profile) -> tuple[str | None, set[str]]:
    """(last_connect_error, the BAD readings' reasons) from one connect and one read."""

    async def body() -> tuple[str | None, set[str]]:
        c = PlcClient(profile)
        try:
            assert not await c.connect()
            readings = await c.read_signals()
            assert all(r.quality is Quality.BAD for r in readings.values())
            return c.last_connect_error, {r.error or "" for r in readings.values()}
        finally:
            await c.close()

    return asyncio.run(body())


@pytest.fixture
def pair() -> Iterator[SocatPair]:
    with SocatPair() as p:
        yield p


def test_missing_serial_device(tmp_path: Path) -> None:
    dev = str(tmp_path / "ttyNOPE")
    why = f"no such device: {dev} — check the profile's plc.device / --rtu"
    assert_unreachable(twinguard_read("--profile", "sim-tank", "--rtu", dev), dev, why)
    error, bad = reasons(with_connection(load_profile("sim-tank"), rtu=dev))
    assert error == why and bad == {f"disconnected: {why}"}


def test_serial_device_without_permission(pair: SocatPair) -> None:
    dev = os.path.realpath(pair.b)  # /dev/pts/N, owned by root, not open to others
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run as")
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user")
    os.chmod(dev, 0o660)  # root's, group tty's: not nobody's
    proc = twinguard_read("--profile", "sim-tank", "--rtu", dev, as_nobody=True)
    assert_unreachable(proc, dev, f"permission denied on {dev}: add the user to the dialout group")


def test_port_that_refuses_parity(pair: SocatPair) -> None:
    if pty_accepts_parity(pair.b):
        pytest.skip("this kernel lets ptys do parity")
    why = (f'{pair.b}: 19200 8E1 refused: some ports (and every pty) cannot do parity; '
           'try parity = "N"')
    assert_unreachable(twinguard_read("--profile", "sim-tank", "--rtu", pair.b), pair.b, why)


def test_port_held_by_another_master(pair: SocatPair, tmp_path: Path) -> None:
    path = tmp_path / "rtu.toml"
    path.write_text(SIM_TANK.read_text().replace(TCP_PLC, RTU_N))
    profile = with_connection(load_profile(path), rtu=pair.b)

    async def body() -> str | None:
        first, second = PlcClient(profile), PlcClient(profile)
        try:
            assert await first.connect()
            assert not await second.connect()
            return second.last_connect_error
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(body()) == f"{pair.b} is busy: another process holds it open exclusively"


def test_host_that_does_not_resolve() -> None:
    proc = twinguard_read("--profile", "sim-tank", "--tcp", "no-such-plc.invalid:502")
    assert_unreachable(proc, "no-such-plc.invalid:502",
                       "cannot resolve host 'no-such-plc.invalid' (")
    assert "check the profile's plc.host / --tcp" in proc.stderr


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connects are refused
        where = f"127.0.0.1:{port}"
        why = f"connection refused by {where}: nothing listens on port {port} there"
        assert_unreachable(twinguard_read("--profile", "sim-tank", "--tcp", where), where, why)
        error, bad = reasons(with_connection(load_profile("sim-tank"), tcp=where))
        assert error == why and bad == {f"disconnected: {why}"}


def test_connect_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue
        try:
            where = f"127.0.0.1:{port}"
            proc = twinguard_read("--profile", "sim-tank", "--tcp", where)
            assert_unreachable(proc, where,
                               f"no answer from {where} within 1.1 s (connect timeout)")
        finally:
            filler.close()
