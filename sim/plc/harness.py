"""Run the simulated PLC (and a socat pty pair) as real processes, for tests and benchmarks.

    with SimPlcProcess() as plc:                   # python -m sim plc on a free loopback port
        client = ModbusTcpClient("127.0.0.1", port=plc.port)
        plc.control.fault("stuck", signal="temp_a")
        plc.write_log()                            # parsed JSON lines of --write-log

    with SocatPair() as pair, SimPlcProcess(rtu=pair.a) as plc:
        client = ModbusSerialClient(pair.b, baudrate=19200, parity="E")

Every wait has a timeout; a process that does not become ready raises ``HarnessError``
with the tail of its stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sim.plc.control import ControlClient

READY_TIMEOUT_S = 15.0


class HarnessError(RuntimeError):
    """A simulated process did not start or stop as expected."""


def rt_prefix(priority: int | None) -> list[str]:
    """``chrt --fifo PRIORITY`` to put before a command's argv (empty for None): the process
    and every thread it starts run at SCHED_FIFO ``priority`` (1..99). HarnessError if chrt
    is missing or the priority is out of range; a kernel that refuses the policy makes chrt
    fail, and the process with it (its stderr says why)."""
    if priority is None:
        return []
    if not 1 <= priority <= 99:
        raise HarnessError(f"SCHED_FIFO priority {priority} is not in 1..99")
    exe = shutil.which("chrt")
    if exe is None:
        raise HarnessError("chrt (util-linux) is not installed: cannot run at SCHED_FIFO")
    return [exe, "--fifo", str(priority)]


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_ready(proc: subprocess.Popen[bytes], stderr_path: Path, what: str) -> str:
    """The first line ``proc`` prints on stdout (stripped), within READY_TIMEOUT_S.

    Raises HarnessError, with the tail of ``stderr_path``, if the process exits first or
    says nothing in time (it is killed then).
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        if not ready:
            proc.kill()
            proc.wait(5)
            raise HarnessError(f"{what} not ready in time: {_tail(stderr_path)}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise HarnessError(f"{what} exited: {_tail(stderr_path)}")
        line += chunk
    return line.decode().strip()


class SimPlcProcess:
    """``python -m sim plc`` as a subprocess. Starts in ``__init__``; ``stop()`` on exit.

    ``port`` is the TCP port (chosen free at first start, kept across ``restart``), ``rtu``
    the serial device when given. Files (control socket, write log, stderr) live in
    ``workdir`` (a fresh temporary directory unless given). ``rt_priority`` runs it at
    SCHED_FIFO with that priority (:func:`rt_prefix`), None at normal priority.
    """

    def __init__(
        self,
        profile: str = "sim-tank",
        *,
        rtu: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        watchdog_ms: int | None = None,
        workdir: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
        rt_priority: int | None = None,
    ) -> None:
        self.profile = profile
        self.rt_priority = rt_priority
        self.rtu = rtu
        self.host = host
        self.port = port
        self.seed = seed
        self.watchdog_ms = watchdog_ms
        self.extra_args = extra_args
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="simplc-")
        self.workdir = Path(workdir) if workdir else Path(self._tmp.name)  # type: ignore[union-attr]
        self.control_path = self.workdir / "control.sock"
        self.write_log_path = self.workdir / "writes.jsonl"
        self.stderr_path = self.workdir / "stderr.log"
        self.ready_line = ""
        self._log_offset = 0  # write_log(): bytes of the file parsed so far, and their records
        self._log_records: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.control = ControlClient(self.control_path)
        self.start()

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "sim", "plc", "--profile", self.profile]
        argv += ["--rtu", self.rtu] if self.rtu else ["--tcp", f"{self.host}:{self.port}"]
        argv += ["--control", str(self.control_path), "--write-log", str(self.write_log_path)]
        argv += ["--seed", str(self.seed)]
        if self.watchdog_ms is not None:
            argv += ["--watchdog-ms", str(self.watchdog_ms)]
        return argv + list(self.extra_args)

    def start(self) -> None:
        """Start the process and wait for its ready line; HarnessError if it never comes."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError("already running")
        with self.stderr_path.open("ab") as err:
            argv = rt_prefix(self.rt_priority) + self._argv()  # ours, no shell
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)  # noqa: S603
        self.ready_line = wait_ready(self.proc, self.stderr_path, "sim plc")
        if not self.ready_line.startswith("ready"):
            self.kill()
            raise HarnessError(f"unexpected first line {self.ready_line!r}")
        for word in self.ready_line.split():
            if word.startswith("tcp="):
                self.port = int(word.rpartition(":")[2])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def set_setpoint(self, value: float) -> float:
        """Set the PLC program's local setpoint, as the operator HMI does; returns it
        (ControlError if the profile has no ``[sim.program]``)."""
        return self.control.set_setpoint(value)

    def program_switches(self, since: int = 0) -> list[dict[str, Any]]:
        """The PLC program's mode switches (``seq``, ``t``, ``mode``, ``cause``,
        ``heater_before``, ``heater_after``) with ``seq >= since``."""
        return self.control.switches(since)

    def program_trace(self, since_t: float = 0.0) -> list[dict[str, Any]]:
        """What the plant got once per program task cycle since ``since_t`` (monotonic):
        ``t``, ``mode``, ``heater``, ``cooling``, ``measured``, ``setpoint``."""
        return self.control.trace(since_t)

    def write_log(self) -> list[dict[str, Any]]:
        """Every record of the write log file, parsed (all runs since the workdir was made).

        Read incrementally: only the bytes appended since the last call are parsed (up to
        the last complete line), so polling a long log stays cheap; a benchmark that polls
        it while it measures must not itself load the machine. A file that shrank (replaced)
        is read again from its start. The records are shared between calls: read only."""
        try:
            with self.write_log_path.open("rb") as f:
                if f.seek(0, os.SEEK_END) < self._log_offset:
                    self._log_offset, self._log_records = 0, []
                f.seek(self._log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
        for line in chunk[:end].splitlines():
            if line.strip():
                self._log_records.append(json.loads(line))
        self._log_offset += end
        return list(self._log_records)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self._close_pipe()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> None:
        """Stop and start again on the same port / device (the write log file is kept)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def pty_accepts_parity(pty: str) -> bool:
    """Whether the kernel lets a pty be set to even parity (some kernels refuse PARENB on
    ptys with EINVAL; real serial ports accept it). RTU tests of the 8E1 default skip then."""
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[2] |= termios.PARENB
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            return False
        return True
    finally:
        os.close(fd)


class SocatPair:
    """Two linked pseudo-terminals (``socat -d -d pty,raw,echo=0,link=A pty,...,link=B``).

    ``a`` and ``b`` are the link paths (open either with pyserial); HarnessError if socat is
    missing or the links do not appear in time.
    """

    def __init__(self, workdir: str | Path | None = None, timeout_s: float = 5.0) -> None:
        exe = shutil.which("socat")
        if exe is None:
            raise HarnessError("socat is not installed")
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="socat-")
        d = Path(workdir) if workdir else Path(self._tmp.name)  # type: ignore[union-attr]
        self.a = str(d / "ptyA")
        self.b = str(d / "ptyB")
        self._err = d / "socat.log"
        with self._err.open("ab") as err:
            self.proc = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                [exe, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + timeout_s
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"socat links did not appear: {_tail(self._err)}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
