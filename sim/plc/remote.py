"""Who drives the simulated plant: the PLC program (local) or the registers a master writes
(remote), switched by the ``[plc_remote]`` flag. Pure: ``now`` passed in, the register image
is ``sim.plc.registers.RegisterMap``'s.

    flag register == remote_value   REMOTE: the heater and cooling the plant gets are the
                                    values in their output registers (what a master wrote)
    anything else                   LOCAL: the program (``sim.plc.program.PiProgram``) drives
                                    them and writes its outputs into those registers each
                                    task cycle, so a master reading them sees what is applied

Switching is bumpless both ways. To LOCAL: the program engages from the heater the plant
gets now (its integrator is initialised from it). To REMOTE: the registers already hold the
program's last outputs, so the plant keeps getting them until a master writes new ones.

A master's write to the heater or cooling register while LOCAL is **staged**: the register
keeps the written value (the program stops overwriting it) and the plant still gets the
program's output, until the flag is next written. A flag write to ``remote_value`` then
applies the staged values at once; one to ``local_value`` drops them (the program's outputs
are written back). So a hazard's "safe set, then flag remote" (two frames: the flag is a coil
or another register) never lets the program overwrite the safe values in between, and
"flag remote, then safe set" gives the plant the program's last outputs (what it had) for
the moment between the two frames. Within one write request the cells are taken in address
order and the request is applied before the next program cycle (the server and the cycles
share one event loop), so a single fc16 carrying both acts as one step.

Nothing here writes the write log: the program's register updates are not master writes.
Mode switches are kept as ``ModeSwitch`` records (``switches``); ``trace`` samples what the
plant got once per task cycle, in both modes (LOCAL: right after each program cycle), and
at each switch.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from agent.model.profile import Output, PlcRemote, Profile, SimProgram
from sim.plc.codec import decode_for, encode_for
from sim.plc.program import CYCLE_S, PiProgram
from sim.plc.registers import RegisterMap

TRACE_LEN = 6000  # task cycles kept (10 minutes at CYCLE_S)


class Mode(enum.Enum):
    LOCAL = "local"  # the PLC program drives the outputs
    REMOTE = "remote"  # the output registers drive them


class _Record:
    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (the control channel's reply)."""
        out: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return out


@dataclass(frozen=True)
class ModeSwitch(_Record):
    """One switch of the program's mode. ``cause``: ``"start"``, ``"modbus"`` (a master
    wrote the flag) or ``"plc watchdog"`` (the communication watchdog's fallback). ``heater_*``:
    what the plant got just before and just after the switch."""

    seq: int
    t: float
    mode: str
    cause: str
    heater_before: float
    heater_after: float


@dataclass(frozen=True)
class TraceEntry(_Record):
    """What the plant got at ``t`` (one per task cycle) and the program's view then."""

    t: float
    mode: str
    heater: float
    cooling: float
    measured: float
    setpoint: float


def _quantised(o: Output, value: float) -> tuple[tuple[int, ...], float]:
    words = encode_for(o, value)
    return words, decode_for(o, words)


class RemoteSwitch:
    """The program of ``config`` on ``profile``'s heater and cooling, behind ``flag``.

    Without a flag (``flag`` None) the program is LOCAL for good. Call ``start`` once, then
    ``written`` for every master write the PLC takes, ``cycle`` every PLC tick.
    """

    def __init__(
        self,
        profile: Profile,
        config: SimProgram,
        heater: Output,
        cooling: Output,
        regs: RegisterMap,
    ) -> None:
        self.flag: PlcRemote | None = profile.plc_remote
        self.heater = heater
        self.cooling = cooling
        self.regs = regs
        self.pi = PiProgram(config, heater.minimum, heater.maximum)
        self.mode = Mode.LOCAL
        self.staged: set[str] = set()
        self.switches: list[ModeSwitch] = []
        self.trace: deque[TraceEntry] = deque(maxlen=TRACE_LEN)
        self._applied = {heater.name: heater.minimum, cooling.name: config.cooling}
        self._measured = 0.0
        self._next_sample: float | None = None

    # ------------------------------------------------------------------ what the plant gets
    def applied(self, name: str) -> float | None:
        """The value the plant gets for output ``name`` when the program drives it (LOCAL),
        None when the register's value applies (REMOTE, or an output the program ignores)."""
        if self.mode is Mode.LOCAL and name in self._applied:
            return self._applied[name]
        return None

    def _plant(self, o: Output) -> float:
        value = self.applied(o.name)
        return decode_for(o, self.regs.get_item(o)) if value is None else value

    def _put(self, o: Output, value: float) -> None:
        words, self._applied[o.name] = _quantised(o, value)
        if o.name not in self.staged:
            self.regs.put_item(o, words)

    def _flag_remote(self) -> bool:
        f = self.flag
        return f is not None and self.regs.get_item(f.output) == (f.remote_value,)

    # ------------------------------------------------------------------ events
    def start(self, now: float, measured: float) -> None:
        """At power-up: LOCAL (whatever the flag says), engaged from the heater register."""
        self._measured = measured
        self._engage(now, "start", self._plant(self.heater))

    def _engage(self, now: float, cause: str, before: float) -> None:
        self.mode = Mode.LOCAL
        out = self.pi.engage(now, before, self._measured)
        self._put(self.heater, out.heater)
        self._put(self.cooling, out.cooling)
        self._record(now, cause, before)

    def _record(self, now: float, cause: str, before: float) -> None:
        after = self._plant(self.heater)
        self.switches.append(
            ModeSwitch(len(self.switches), now, self.mode.value, cause, before, after)
        )
        self._sample(now)

    def written(self, name: str, now: float, cause: str = "modbus") -> None:
        """A master (or the PLC's watchdog, ``cause``) wrote point ``name`` at ``now``."""
        if self.flag is not None and name == self.flag.output.name:
            self._flag_written(now, cause)
        elif self.mode is Mode.LOCAL and name in self._applied:
            self.staged.add(name)

    def _flag_written(self, now: float, cause: str) -> None:
        staged, self.staged = self.staged, set()
        before = self._plant(self.heater)
        if self._flag_remote():
            if self.mode is Mode.LOCAL:
                self.mode = Mode.REMOTE  # the registers hold the staged or the last outputs
                self._record(now, cause, before)
        elif self.mode is Mode.REMOTE:
            self._engage(now, cause, before)
        elif staged:  # local, and a master's staged values are dropped
            for o in (self.heater, self.cooling):
                self._put(o, self._applied[o.name])

    def set_setpoint(self, value: float) -> None:
        self.pi.set_setpoint(value)

    def cycle(self, now: float, measured: float) -> None:
        """One PLC tick: the program's task cycle when due (LOCAL), a trace sample."""
        self._measured = measured
        if self.mode is Mode.LOCAL:
            out = self.pi.cycle(now, measured)
            if out is not None:  # one sample per program cycle, taken right after it
                self._put(self.heater, out.heater)
                self._put(self.cooling, out.cooling)
                self._sample(now)
        elif self._next_sample is None or now >= self._next_sample:
            self._sample(now)

    def _sample(self, now: float) -> None:
        self.trace.append(
            TraceEntry(now, self.mode.value, self._plant(self.heater), self._plant(self.cooling),
                       self._measured, self.pi.setpoint)
        )  # fmt: skip
        self._next_sample = now + CYCLE_S

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        cfg = self.pi.config
        return {
            "mode": self.mode.value, "setpoint": self.pi.setpoint, "kp": cfg.kp, "ki": cfg.ki,
            "cooling": cfg.cooling, "comm_fallback": cfg.comm_fallback.value,
            "measured": self._measured, "integral": self.pi.integral,
            "staged": sorted(self.staged), "switches": len(self.switches),
        }  # fmt: skip

    def trace_since(self, t: float) -> list[TraceEntry]:
        return [e for e in self.trace if e.t >= t]
