"""CPU load for the benchmarks: N hogs at normal priority for the whole of a run.

    with cpu_load(2, log=sys.stderr) as load:   # stress-ng --cpu 2, or 2 Python busy loops
        ... measure ...
        load.check()                            # LoadError if a hog has gone
    result.update(load.fields())                # "load", "load_tool", "load_cpu_percent"

Each hog is a process spinning on a core at ``SCHED_OTHER``, nice 0 (what any other job on
the machine would be): ``stress-ng --cpu N`` (its N workers are the hogs) where stress-ng is
on PATH, else N ``python -c "while True: pass"``. ``tool="auto"`` takes stress-ng; if it is
missing and this runs as root with apt-get, ``apt-get install -y stress-ng`` is tried once
per process (``apt-get update`` first if the plain install fails); otherwise, or if that
fails, the Python hogs, and the choice is said on ``log``. ``tool="stress-ng"`` insists
(LoadError without it), ``tool="python"`` never asks for stress-ng.

Contract:

* Entering starts the hogs and returns once every hog exists, runs at ``SCHED_OTHER`` nice 0
  (set in the child before exec, whatever this process runs at, and checked) and has
  burnt CPU; LoadError otherwise (nothing is left running).
* ``check()`` raises LoadError when a hog is gone (exited, a zombie, stopped): a figure
  measured without its load is no figure. Leaving the ``with`` block without an exception
  checks once more, so a hog that died at any time fails the run.
* Leaving the block in any way (an exception, Ctrl-C) stops and reaps the hogs: SIGTERM,
  then SIGKILL to their process group. If this process dies without unwinding (SIGKILL),
  the hogs die with it (``PR_SET_PDEATHSIG``; stress-ng's workers follow their parent).
* ``fields()``: ``load`` (N), ``load_tool`` (``"stress-ng"``, ``"python"``, or None for N
  = 0) and ``load_cpu_percent``: the share of one core each hog got on average while it
  ran (from ``/proc``, so one can see the load was real), None for N = 0.

``cpu_load(0)`` starts nothing, and its ``fields()`` say so.

The simulated PLC and twin of a loaded run start at SCHED_FIFO ``SIM_RT_PRIORITY``
(``sim.stack.Stack(sim_rt_priority=...)``): they stand in for other machines (the PLC is its
own hardware, the twin is remote), so their clocks must not wait behind the hogs, or their
own scheduling delays would be counted as the agent's. 20 is below the agent's real-time
priorities (its event loop at SCHED_FIFO 40, its native watchdog thread higher, issue 14), so
the sims never preempt the agent they measure. An agent at normal priority (no ``[realtime]``)
is preempted by them whenever they run; they are mostly idle (a request's handling, the PLC's
10 ms process tick, the twin's heartbeats).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TextIO

TOOLS = ("auto", "stress-ng", "python")
SIM_RT_PRIORITY = 20  # the sims' SCHED_FIFO priority in loaded runs (see above)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
APT_TIMEOUT_S = 600.0
PR_SET_PDEATHSIG = 1
PYTHON_HOG = "while True:\n    pass\n"
_install_tried = False


class LoadError(RuntimeError):
    """The CPU load could not be started, or a hog went away during the run."""


def find_stress_ng(log: TextIO, *, install: bool = True) -> str | None:
    """stress-ng's path; if missing, as root with apt-get and ``install``, one attempt (per
    process) to install it. None when it is still missing (said on ``log``)."""
    global _install_tried  # noqa: PLW0603 - once per process, whichever benchmark asks
    exe = shutil.which("stress-ng")
    if exe is not None or not install or _install_tried:
        return exe
    _install_tried = True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "stress-ng"]
    print("load: stress-ng missing; apt-get install -y stress-ng", file=log, flush=True)
    for argv in (apt, ["apt-get", "update", "-qq"], apt):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,  # noqa: S603
                                  timeout=APT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"load: {' '.join(argv[:2])} failed: {exc}", file=log, flush=True)
            return None
        if argv is apt and done.returncode == 0:
            break
        if argv is not apt and done.returncode != 0:
            print(f"load: apt-get update failed: {done.stderr.strip()[-300:]}", file=log,
                  flush=True)
            return None
    else:
        print(f"load: apt-get install stress-ng failed: {done.stderr.strip()[-300:]}",
              file=log, flush=True)
    return shutil.which("stress-ng")


def _child_setup(parent: int, libc: Any) -> None:
    """In the forked child, before exec: normal priority, and die with ``parent``."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(PermissionError):  # a niced parent without the right: checked
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


class _Stat:
    """The few fields of ``/proc/PID/stat`` the load needs."""

    def __init__(self, pid: int) -> None:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text.rpartition(")")[2].split()  # fields from 3 (state) on
        self.state = fields[0]
        self.ppid = int(fields[1])
        self.cpu_ticks = int(fields[11]) + int(fields[12])  # utime + stime
        self.nice = int(fields[16])
        self.policy = int(fields[38])


def _stat(pid: int) -> _Stat | None:
    try:
        return _Stat(pid)
    except (OSError, IndexError, ValueError):
        return None


def _exit_status(p: subprocess.Popen[bytes]) -> int | None:
    """The exit status if ``p`` has exited, else None, *without reaping it*: while it is
    unreaped, its pid (and the process group named after it) cannot be reused."""
    if p.returncode is not None:
        return p.returncode
    try:
        info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -1
    return None if info is None else info.si_status


def _children(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``, from ``/proc``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st.ppid == pid and st.state not in "ZX":
                out.append(int(entry.name))
    return sorted(out)


class CpuLoad:
    """``n`` CPU hogs (see the module docstring); use through :func:`cpu_load`."""

    def __init__(self, n: int, tool: str = "auto", log: TextIO = sys.stderr) -> None:
        if n < 0:
            raise ValueError("the load must be >= 0 hogs")
        if tool not in TOOLS:
            raise ValueError(f"unknown load tool {tool!r} (known: {', '.join(TOOLS)})")
        self.n = n
        self.log = log
        self.tool: str | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hogs: list[int] = []  # the spinning pids
        self._want = tool
        self._err: IO[bytes] | None = None
        self._t0 = 0.0
        self._ticks0: dict[int, int] = {}
        self._final: dict[str, Any] | None = None

    # -------------------------------------------------------------------------- start
    def start(self) -> None:
        if self.n == 0:
            return
        exe = None if self._want == "python" else find_stress_ng(self.log)
        if exe is None and self._want == "stress-ng":
            raise LoadError("stress-ng is not installed (apt-get install stress-ng)")
        if exe is None and self._want == "auto":
            print("load: stress-ng not available; using the Python busy loops", file=self.log,
                  flush=True)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        try:
            if exe is not None:
                self.tool = "stress-ng"
                self.procs = [self._spawn([exe, "--cpu", str(self.n), "--quiet"])]
            else:
                self.tool = "python"
                argv = [sys.executable, "-I", "-S", "-c", PYTHON_HOG]
                self.procs = [self._spawn(argv) for _ in range(self.n)]
            self._wait_spinning()
        except BaseException:
            self.stop()
            raise
        print(f"load: {self.n} x {self.tool} hog at SCHED_OTHER nice 0 (pids "
              f"{' '.join(map(str, self.hogs))})", file=self.log, flush=True)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getpid()
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
            start_new_session=True,  # Ctrl-C is ours to handle; one group to kill
            preexec_fn=lambda: _child_setup(parent, libc))  # noqa: PLW1509

    def _spinners(self) -> list[int]:
        if self.tool == "python":
            return [p.pid for p in self.procs]
        return _children(self.procs[0].pid)

    def _wait_spinning(self) -> None:
        """Until every hog exists and has burnt CPU; LoadError after START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._check_procs()
            pids = self._spinners()
            stats = {pid: _stat(pid) for pid in pids}
            if len(pids) == self.n and all(s is not None and s.cpu_ticks > 0
                                           for s in stats.values()):
                break
            if time.monotonic() > deadline:
                raise LoadError(f"{self.tool}: {len(pids)} of {self.n} hogs spinning after "
                                f"{START_TIMEOUT_S:g} s{self._stderr()}")
            time.sleep(0.02)
        for pid, st in stats.items():
            assert st is not None
            if st.policy != os.SCHED_OTHER or st.nice != 0:
                raise LoadError(f"hog {pid} runs at policy {st.policy} nice {st.nice}, not "
                                "SCHED_OTHER nice 0")
        self.hogs = pids
        self._t0 = time.monotonic()
        self._ticks0 = {pid: st.cpu_ticks for pid, st in stats.items() if st is not None}

    # -------------------------------------------------------------------------- checks
    def _stderr(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip()
        return f": {text[-500:]}" if text else ""

    def _check_procs(self) -> None:
        for p in self.procs:
            status = _exit_status(p)
            if status is not None:
                raise LoadError(f"the {self.tool} hog {p.pid} exited with status "
                                f"{status}{self._stderr()}")

    def check(self) -> None:
        """LoadError if a hog has gone (exited, zombie, stopped) since the start."""
        if self.n == 0:
            return
        self._check_procs()
        for pid in self.hogs:
            st = _stat(pid)
            if st is None or st.state in "ZXTt":
                state = "gone" if st is None else f"in state {st.state}"
                raise LoadError(f"the {self.tool} hog {pid} is {state}: the run lost its load")

    def fields(self) -> dict[str, Any]:
        """``load``, ``load_tool``, ``load_cpu_percent`` (see the module docstring); after
        the block, as they were when it was left."""
        if self._final is not None:
            return dict(self._final)
        if self.n == 0 or not self.hogs:
            return {"load": self.n, "load_tool": self.tool, "load_cpu_percent": None}
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        tick = os.sysconf("SC_CLK_TCK")
        used = []
        for pid in self.hogs:
            st = _stat(pid)
            if st is not None:
                used.append((st.cpu_ticks - self._ticks0.get(pid, 0)) / tick / elapsed)
        share = 100.0 * sum(used) / len(self.hogs)
        return {"load": self.n, "load_tool": self.tool, "load_cpu_percent": round(share, 1)}

    def finish(self) -> None:
        """The run is over: check once more (LoadError), and keep :meth:`fields` as now."""
        self.check()
        self._final = self.fields()

    # -------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop and reap every hog (idempotent)."""
        for p in self.procs:
            if _exit_status(p) is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        end = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < end and any(_exit_status(p) is None for p in self.procs):
            time.sleep(0.02)
        for p in self.procs:
            if p.returncode is None:  # not reaped yet: the group is still the one we made
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)  # whatever is left (a worker)
            p.wait()
        self.procs = []
        if self._err is not None:
            self._err.close()
            self._err = None


@contextlib.contextmanager
def cpu_load(n: int, tool: str = "auto", log: TextIO = sys.stderr) -> Iterator[CpuLoad]:
    """``n`` CPU hogs for the ``with`` block (see the module docstring)."""
    load = CpuLoad(n, tool, log)
    load.start()
    try:
        yield load
        load.finish()
    finally:
        load.stop()
