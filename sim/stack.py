"""The whole simulated plant as real processes: sim PLC, sim twin, and the agent under test.

    with Stack() as stack:                     # PKI, config, three processes on loopback
        stack.wait_state("normal")             # as the twin sees the agent's status
        stack.twin.request({"cmd": "stop"})    # make the fault happen ...
        stack.plc.write_log()                  # ... and read what the PLC saw

Everything lives in one temporary directory (``stack.workdir``): the demo PKI (generated
on the fly, never committed), the agent configuration, the agent's state directory and
every process's stderr. Used by the end-to-end tests, the benchmarks and the demo.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from agent.io.pki import PkiPaths, init_pki
from sim.plc.control import ControlClient
from sim.plc.harness import SimPlcProcess, rt_prefix, wait_ready

READY_TIMEOUT_S = 15.0
DEVICE_ID = "sim-tank-01"
# appended to a profile without a [realtime] table of its own when a stack's agent is not to
# ask for real time (Stack(realtime=False); the tests' default, see tests/conftest.py)
NO_REALTIME = ('\n[realtime]  # sim.stack: this agent asks nothing of the scheduler\n'
               'scheduling = "other"\nlock_memory = false\n')


def sim_tank_text() -> str:
    """The shipped sim-tank profile's TOML text (to copy and tighten in tests)."""
    return importlib.resources.files("hw_profiles").joinpath("sim-tank.toml").read_text()


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def toml_value(value: Any) -> str:
    """``value`` in TOML: a str, a number, a bool, a list of them or a dict (an inline
    table). JSON's strings, numbers and arrays are TOML's."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_line(key: str, value: Any) -> str:
    """``key = value`` in TOML (:func:`toml_value`)."""
    return f"{key} = {toml_value(value)}"


def wait_for(cond: Callable[[], Any], timeout: float, what: str, period: float = 0.01) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); TimeoutError otherwise."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(period)


class Proc:
    """A child process with its stderr in a file; optionally waits for a ``ready`` line.
    ``rt_priority``: run it at SCHED_FIFO with that priority (``chrt --fifo``)."""

    def __init__(self, argv: Sequence[str], stderr_path: Path, *, ready: bool,
                 env: dict[str, str] | None = None, rt_priority: int | None = None) -> None:
        self.argv = list(argv)
        self.stderr_path = stderr_path
        with stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                rt_prefix(rt_priority) + self.argv,
                stdout=subprocess.PIPE if ready else subprocess.DEVNULL, stderr=err,
                env={**os.environ, **(env or {})},
            )
        self.ready_line = wait_ready(self.proc, stderr_path, " ".join(self.argv[2:4])) \
            if ready else ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(5)

    def stderr(self) -> str:
        return _tail(self.stderr_path, 20000)


class SimTwinProcess:
    """``python -m sim twin`` on a free loopback port with a control channel."""

    def __init__(self, workdir: Path, pki_dir: Path, *, rate_hz: float = 10.0,
                 extra_args: Sequence[str] = (), rt_priority: int | None = None) -> None:
        self.control_path = workdir / "twin.sock"
        self.proc = Proc(
            [sys.executable, "-m", "sim", "twin", "--listen", "127.0.0.1:0", "--pki",
             str(pki_dir), "--rate", str(rate_hz), "--control", str(self.control_path),
             "--device-id", DEVICE_ID, *extra_args],
            workdir / "twin.stderr", ready=True, rt_priority=rt_priority)
        listen = next(w for w in self.proc.ready_line.split() if w.startswith("listen="))
        self.port = int(listen.rpartition(":")[2])
        self.control = ControlClient(self.control_path)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.control.request(req)

    def stats(self, last: int = 100) -> dict[str, Any]:
        return self.control.request({"cmd": "stats", "last": last})

    def stop(self) -> None:
        self.proc.stop()


class Stack:
    """Sim PLC + sim twin + agent, each a real process; see the module docstring.

    ``profile_text`` replaces the sim-tank profile (written to the workdir) so tests can
    tighten timings; ``mode`` is the agent configuration's control authority;
    ``config_extra`` is TOML appended to the agent configuration (``[telemetry]``,
    ``[spool]``, ``[recommendations]`` ...); ``twin_args`` go to ``python -m sim twin``;
    ``twin_configured=False`` leaves ``[twin]`` out of the configuration (the sim twin still
    runs, unheard: a local guard).

    ``realtime``: True runs the agent with the profile's ``[realtime]`` as written (the
    shipped defaults: SCHED_FIFO, memory locked, as in production; the benchmarks and the
    demo); False appends :data:`NO_REALTIME` to a profile that has no ``[realtime]`` table;
    None (the default) is :attr:`realtime_default`, which ``tests/conftest.py`` sets to False
    (a test that is about real time asks for it).

    ``sim_rt_priority`` starts the sim PLC and the sim twin at SCHED_FIFO with that priority
    (threads they start inherit it; the agent is not touched). They stand in for separate
    machines (the PLC is its own hardware, the twin is remote): on a loaded machine their
    own scheduling delays would otherwise be counted as the agent's. For benchmarks under
    load only, and below the agent's own real-time priority (40 for its loop), so the sims
    never preempt the agent they measure but do not wait behind other work either. None
    (default): normal priority, as in every test.
    """

    realtime_default = True

    def __init__(self, *, profile_text: str | None = None, mode: str = "shadow",
                 twin_rate_hz: float = 10.0, agent_env: dict[str, str] | None = None,
                 start_agent: bool = True, workdir: Path | None = None,
                 plc_args: tuple[str, ...] = (), config_extra: str = "",
                 twin_args: tuple[str, ...] = (), twin_configured: bool = True,
                 realtime: bool | None = None,
                 sim_rt_priority: int | None = None) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="twinguard-stack-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = init_pki(self.workdir / "pki", device_id=DEVICE_ID)
        self.profile_path = self.workdir / "profile.toml"
        if profile_text is None:
            profile_text = sim_tank_text()
        self.realtime = self.realtime_default if realtime is None else realtime
        if not self.realtime and not re.search(r"(?m)^\s*\[realtime\]", profile_text):
            profile_text += NO_REALTIME
        self.profile_path.write_text(profile_text)
        self.state_dir = self.workdir / "state"
        self.agent_env = agent_env or {}
        self.mode = mode
        self.config_extra = config_extra
        self.twin_configured = twin_configured  # False: no [twin] table (a local guard)
        (self.workdir / "plc").mkdir(exist_ok=True)
        self.plc = SimPlcProcess(str(self.profile_path), workdir=self.workdir / "plc",
                                 extra_args=plc_args, rt_priority=sim_rt_priority)
        self.twin = self._start_twin(twin_rate_hz, twin_args, sim_rt_priority)
        self.config_path = self.workdir / "agent.toml"
        self.write_config()
        self.agent: Proc | None = None
        self.successors: list[int] = []  # agents started by a hand-over (not our children)
        if start_agent:
            self.start_agent()

    def _start_twin(self, rate_hz: float, args: tuple[str, ...],
                    rt_priority: int | None) -> Any:
        """Start the twin process (a subclass starts another kind of twin)."""
        return SimTwinProcess(self.workdir, self.workdir / "pki", rate_hz=rate_hz,
                              extra_args=args, rt_priority=rt_priority)

    def twin_table(self) -> dict[str, Any]:
        """The ``[twin]`` keys of the agent configuration (before overrides)."""
        p: PkiPaths = self.pki
        return {
            "host": "127.0.0.1", "port": self.twin.port, "server_name": "localhost",
            "ca": str(p.ca_cert), "cert": str(p.device_cert), "key": str(p.device_key),
            "backoff_min_s": 0.05, "backoff_max_s": 0.5, "idle_timeout_s": 1.0,
        }

    def extra_tables(self) -> str:
        """TOML tables written after ``[twin]`` (a subclass adds ``[fleet]``)."""
        return ""

    def write_config(self, **twin_overrides: Any) -> None:
        twin = {**self.twin_table(), **twin_overrides}
        lines = [f'device_id = "{DEVICE_ID}"', f'mode = "{self.mode}"', ""]
        if self.twin_configured:
            lines.append("[twin]")
            lines += [toml_line(k, v) for k, v in twin.items()]
        text = "\n".join(lines) + "\n"
        if self.twin_configured:
            text += self.extra_tables()
        self.config_path.write_text(text + ("\n" + self.config_extra if self.config_extra else ""))

    def start_agent(self, wrapper: Sequence[str] = ()) -> Proc:
        """Start ``python -m agent run`` against the sim PLC and sim twin; ``wrapper`` is a
        command line it runs under (``setpriv ... --``, ``prlimit ... --``)."""
        self.agent = Proc(
            [*wrapper, sys.executable, "-m", "agent", "-v", "run", "--profile",
             str(self.profile_path),
             "--tcp", f"127.0.0.1:{self.plc.port}", "--config", str(self.config_path),
             "--state-dir", str(self.state_dir)],
            self.workdir / "agent.stderr", ready=False, env=self.agent_env)
        return self.agent

    def agent_state(self) -> str | None:
        """The agent's safety state as its last status message to the twin said."""
        statuses = self.twin.stats(last=1)["statuses"]
        return str(statuses[-1][2]) if statuses else None

    def wait_state(self, state: str, timeout: float = 20.0, *, since: float = 0.0,
                   not_conn: int | None = None) -> float:
        """Wait until the twin hears the agent report ``state`` (sent after ``since``;
        ``not_conn``: on another twin connection than that one, e.g. a successor's)."""

        return self._wait_status(2, state, timeout, since, not_conn)

    def wait_authority(self, authority: str, timeout: float = 20.0, *,
                       since: float = 0.0, not_conn: int | None = None) -> float:
        """Wait until the twin hears the agent report twin ``authority`` (local, returning,
        remote) in a status sent after ``since`` (``not_conn`` as :meth:`wait_state`);
        returns when the twin received it."""
        return self._wait_status(5, authority, timeout, since, not_conn)

    def status_conn(self) -> int | None:
        """The twin connection the agent's latest status came on (None: none yet)."""
        statuses = self.twin.stats(last=1)["statuses"]
        return int(statuses[-1][1]) if statuses else None

    def _wait_status(self, index: int, value: str, timeout: float, since: float,
                     not_conn: int | None = None) -> float:
        def seen() -> float | None:
            for st in reversed(self.twin.stats(last=5)["statuses"]):
                if st[index] == value and st[0] >= since and st[1] != not_conn:
                    return float(st[0])
            return None

        try:
            return float(wait_for(seen, timeout, f"agent reports {value}", period=0.05))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- agent stderr ---\n{self.agent_stderr()}") from exc

    def agent_stderr(self) -> str:
        return self.agent.stderr() if self.agent else ""

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``twinguard status ARGS`` against this stack's agent, as a user runs it."""
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "agent", "status", "--state-dir", str(self.state_dir),
             *args], capture_output=True, text=True, timeout=20, check=False,
            env={**os.environ, "COLUMNS": "200"})

    def ack(self) -> subprocess.CompletedProcess[str]:
        """``twinguard ack`` against this stack's agent, as an operator runs it."""
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "agent", "ack", "--state-dir", str(self.state_dir)],
            capture_output=True, text=True, timeout=20, check=False)

    def status_json(self) -> dict[str, Any]:
        """The running agent's status snapshot (``twinguard status --json``)."""
        done = self.status("--json")
        if done.returncode != 0:
            raise RuntimeError(f"twinguard status --json: exit {done.returncode}: "
                               f"{done.stderr}")
        snap: dict[str, Any] = json.loads(done.stdout)
        return snap

    def wait_status(self, cond: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str) -> dict[str, Any]:
        """Poll ``twinguard status --json`` until ``cond(snapshot)``; a socket that is not
        there yet (the agent still starting) is waited for, an agent that died is not."""

        def check() -> dict[str, Any] | None:
            if self.agent is not None and not self.agent.alive():
                raise RuntimeError(f"the agent died:\n{self.agent_stderr()}")
            try:
                snap = self.status_json()
            except RuntimeError:
                return None
            return snap if cond(snap) else None

        snap: dict[str, Any] = wait_for(check, timeout, what, period=0.1)
        return snap

    def wait_twin(self, state: str = "alive", timeout: float = 20.0) -> dict[str, Any]:
        """Wait until ``twinguard status`` shows the twin link ``state`` (alive, late, lost);
        the snapshot. The plant does not wait for a twin (issue 12): a test that makes the
        twin go away must first see it ALIVE."""
        return self.wait_status(lambda s: s["twin"]["state"] == state, timeout,
                                f"twin {state.upper()}")

    def status_text(self) -> str:
        """What ``twinguard status`` prints for a person."""
        return self.status().stdout

    def successor_pid(self, timeout: float = 30.0) -> int:
        """After a hand-over restart (agent.runtime.handover): the pid of the agent that now
        answers the status socket, once it is not the one this stack started. It is not
        this stack's child: :meth:`close` stops it by pid."""
        old = self.agent.pid if self.agent is not None else None

        def new_pid() -> int | None:
            try:
                pid = int(self.status_json()["pid"])
            except RuntimeError:
                return None
            return pid if pid != old else None

        pid = int(wait_for(new_pid, timeout, "a successor answering the status socket", 0.1))
        self.successors.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.successors:
            stop_pid(pid)
        if self.agent is not None and self.agent.alive():
            self.agent.stop()
        self.twin.stop()
        self.plc.close()
        self.close_services()
        if self._tmp is not None:
            self._tmp.cleanup()

    def close_services(self) -> None:
        """Stop what a subclass started besides the three processes (brokers)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def pid_running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan whose exit nobody reaped yet: in a
    container PID 1 may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM a process that is not our child, SIGKILL it after ``timeout_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and pid_running(pid):
            time.sleep(0.05)
        if pid_running(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def output_writes(log: list[dict[str, Any]], output: str, since: float = 0.0,
                  source: str = "modbus") -> list[dict[str, Any]]:
    """Write-log records that wrote ``output`` at or after ``since``."""
    return [r for r in log if output in r.get("names", ()) and r["t"] >= since
            and r.get("source") == source and r.get("accepted", True)]


def recommend_script(items: Sequence[tuple[float, str, float, float]]) -> dict[str, Any]:
    """A sim-twin ``script`` request from ``(at_s, output, value, valid_s)`` tuples."""
    return {"cmd": "script", "items": [
        {"at_s": at, "output": out, "value": value, "valid_s": valid}
        for at, out, value, valid in items]}


def spool_seqs(state_dir: Path) -> list[int]:
    """Seqs held in the agent's telemetry spool file (only read; the agent may be dead).
    A file whose schema the starting agent has not created yet holds none."""
    path = state_dir / "telemetry.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(str(path), timeout=5.0)
    try:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM records ORDER BY seq")]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()
