"""What the demo records, from outside the agent: the sim PLC and the sim twin, ~10 Hz.

A :class:`Recorder` runs one background thread that asks, every ``period_s``:

* the sim PLC's control channel ``state`` (true process values, the values it serves per
  channel, its outputs, its communication watchdog) and ``writes since N`` (its write log);
* the sim twin's ``stats`` (heartbeats it sent, the agent's status messages it received -
  safety state, mode and twin authority - the configuration bundles it pushed and the
  agent's ``config_result`` answers).

Everything lands in one :class:`Recording` (append-only lists, guarded by a lock;
:meth:`Recorder.snapshot` hands out a consistent copy). Times are ``time.monotonic()`` of
the process that made the observation - CLOCK_MONOTONIC, one clock for the whole host.
Nothing here reads the agent: its state is what its status messages said.

A failing request (a process gone, a timeout) is counted in ``Recording.errors``, logged
once at WARNING (then DEBUG) and the sampling goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HEARTBEATS_PER_REQUEST = 100  # at 10 Hz sampling and a 10 Hz twin: plenty of overlap
STATUSES_PER_REQUEST = 20


@dataclass(frozen=True)
class PlcSample:
    """One ``state`` reply of the sim PLC."""

    t: float
    temperature: float | None
    pressure: float | None
    signals: dict[str, float]
    outputs: dict[str, float]
    faults: dict[str, str]  # signal -> fault kind
    watchdog_armed: bool
    watchdog_latched: bool
    plc_remote: int | None = None  # the [plc_remote] flag's raw value (None: no flag)
    setpoint: float | None = None  # the PLC program's local setpoint (None: no program)


@dataclass(frozen=True)
class StatusSeen:
    """An agent status message as the twin received it."""

    t: float
    state: str
    mode: str
    authority: str = "local"  # twin authority: local, returning or remote


@dataclass(frozen=True)
class ConfigSeen:
    """A ``config_result`` as the twin received it."""

    t: float
    version: int
    accepted: bool
    reason: str


@dataclass(frozen=True)
class Mark:
    """Something the demo did, for the timeline: a scenario boundary or a step."""

    t: float
    kind: str  # "begin", "end" or "step"
    scenario: str
    text: str


@dataclass
class Recording:
    """Everything observed so far (see the module docstring)."""

    t0: float
    samples: list[PlcSample] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)  # write-log records
    heartbeats: list[float] = field(default_factory=list)  # twin send times
    statuses: list[StatusSeen] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    pushes: list[float] = field(default_factory=list)  # twin send times of config pushes
    config_results: list[ConfigSeen] = field(default_factory=list)
    agent_alive: list[tuple[float, bool]] = field(default_factory=list)  # process running?
    twin_sending: bool = True
    last_heartbeat_t: float | None = None
    errors: int = 0

    def copy(self) -> Recording:
        return Recording(
            t0=self.t0, samples=list(self.samples), writes=list(self.writes),
            heartbeats=list(self.heartbeats), statuses=list(self.statuses),
            marks=list(self.marks), pushes=list(self.pushes),
            config_results=list(self.config_results), agent_alive=list(self.agent_alive),
            twin_sending=self.twin_sending,
            last_heartbeat_t=self.last_heartbeat_t, errors=self.errors,
        )


def plc_sample(state: dict[str, Any]) -> PlcSample:
    """A :class:`PlcSample` from the sim PLC's ``state`` reply (see sim/plc/README.md).

    Raises KeyError/TypeError/ValueError for a reply of another shape (the caller counts it).
    """
    wd = state.get("watchdog") or {}
    program = state.get("program") or {}
    flag = state.get("plc_remote")
    return PlcSample(
        t=float(state["t"]),
        temperature=_opt_float(state.get("temperature")),
        pressure=_opt_float(state.get("pressure")),
        signals={str(k): float(v) for k, v in state["signals"].items()},
        outputs={str(k): float(v) for k, v in state["outputs"].items()},
        faults={str(k): str(v.get("kind")) for k, v in (state.get("faults") or {}).items()},
        watchdog_armed=bool(wd.get("armed", False)),
        watchdog_latched=bool(wd.get("latched", False)),
        plc_remote=None if flag is None else int(flag),
        setpoint=_opt_float(program.get("setpoint")),
    )


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


class Recorder:
    """Samples the sim PLC and the sim twin on a background thread; see the module docstring.

    ``plc_request`` and ``twin_request`` send one control request and return the reply dict
    (``sim.plc.control.ControlClient.request`` and ``SimTwinProcess.request``); they may
    raise anything on failure. ``on_new`` is called on the sampling thread with the new
    write records, status messages and config results of each round (for the live view's
    event list); it must not block. ``agent_alive`` tells whether the agent process exists
    (from outside: the process table), recorded each round.
    """

    def __init__(
        self,
        plc_request: Callable[[dict[str, Any]], dict[str, Any]],
        twin_request: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        period_s: float = 0.1,
        on_new: Callable[[list[dict[str, Any]], list[StatusSeen], list[ConfigSeen]], None]
        | None = None,
        agent_alive: Callable[[], bool] | None = None,
    ) -> None:
        self._agent_alive = agent_alive
        self._plc = plc_request
        self._twin = twin_request
        self.period_s = period_s
        self._on_new = on_new
        self._lock = threading.Lock()
        self._rec = Recording(t0=time.monotonic())
        self._next_write = 0
        self._seen_hb: set[tuple[int, int, int]] = set()
        self._seen_status: set[tuple[float, int, int]] = set()
        self._seen_push: set[float] = set()
        self._seen_config: set[tuple[float, int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Take one last sample, stop the thread and wait for it (bounded)."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.sample_once()

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mark(self, kind: str, scenario: str, text: str) -> Mark:
        """Record something the demo did now (scenario boundary or step)."""
        m = Mark(time.monotonic(), kind, scenario, text)
        with self._lock:
            self._rec.marks.append(m)
        return m

    def snapshot(self) -> Recording:
        """A consistent copy of everything recorded so far."""
        with self._lock:
            return self._rec.copy()

    def latest(self) -> tuple[PlcSample | None, StatusSeen | None, Recording]:
        """Cheap view for the live display: last sample, last status, and the recording's
        scalar fields (lists in it are shared and must not be mutated)."""
        with self._lock:
            rec = self._rec
            return (rec.samples[-1] if rec.samples else None,
                    rec.statuses[-1] if rec.statuses else None, rec)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample_once()
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def sample_once(self) -> None:
        """One round of requests; failures are counted and logged, never raised."""
        new_writes: list[dict[str, Any]] = []
        new_statuses: list[StatusSeen] = []
        new_configs: list[ConfigSeen] = []
        new_pushes: list[float] = []
        if self._agent_alive is not None:
            alive = (time.monotonic(), self._agent_alive())
            with self._lock:
                self._rec.agent_alive.append(alive)
        try:
            sample = plc_sample(self._plc({"cmd": "state"})["state"])
            reply = self._plc({"cmd": "writes", "since": self._next_write})
            new_writes = list(reply["writes"])
            self._next_write = int(reply.get("next", self._next_write + len(new_writes)))
            stats = self._twin({"cmd": "stats", "last": HEARTBEATS_PER_REQUEST})
        except Exception as exc:  # a dead process must not stop the recording
            self._fail(exc)
            with self._lock:
                self._rec.writes.extend(new_writes)
            return
        heartbeats: list[float] = []
        for t, conn, epoch, seq, _healthy in stats.get("heartbeats", ()):
            key = (int(conn), int(epoch), int(seq))
            if key not in self._seen_hb:
                self._seen_hb.add(key)
                heartbeats.append(float(t))
        for row in stats.get("statuses", ())[-STATUSES_PER_REQUEST:]:
            t, conn, state, mode, seq = row[:5]
            skey = (float(t), int(conn), int(seq))
            if skey not in self._seen_status:
                self._seen_status.add(skey)
                authority = str(row[5]) if len(row) > 5 and row[5] else "local"
                new_statuses.append(StatusSeen(float(t), str(state), str(mode), authority))
        for p in stats.get("pushes", ()):
            if float(p["t"]) not in self._seen_push:
                self._seen_push.add(float(p["t"]))
                new_pushes.append(float(p["t"]))
        for r in stats.get("config_results", ()):
            ckey = (float(r["t"]), int(r["version"]), str(r["reason"]))
            if ckey not in self._seen_config:
                self._seen_config.add(ckey)
                new_configs.append(ConfigSeen(ckey[0], ckey[1], bool(r["accepted"]), ckey[2]))
        with self._lock:
            rec = self._rec
            rec.samples.append(sample)
            rec.writes.extend(new_writes)
            rec.heartbeats.extend(sorted(heartbeats))
            rec.statuses.extend(sorted(new_statuses, key=lambda s: s.t))
            rec.pushes.extend(sorted(new_pushes))
            rec.config_results.extend(sorted(new_configs, key=lambda c: c.t))
            rec.twin_sending = bool(stats.get("sending", True)) and not stats.get("paused")
            lh = stats.get("last_heartbeat_t")
            rec.last_heartbeat_t = None if lh is None else float(lh)
        if self._on_new is not None and (new_writes or new_statuses or new_configs):
            self._on_new(new_writes, new_statuses, new_configs)

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            self._rec.errors += 1
            n = self._rec.errors
        log.log(logging.WARNING if n == 1 else logging.DEBUG,
                "demo recorder: a sample failed (%d so far): %s", n, exc)
