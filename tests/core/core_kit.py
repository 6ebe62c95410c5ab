"""Profiles and a tick-by-tick driver for the decision core's unit tests (sans-IO).

Profiles are the shipped ``hw_profiles/sim-tank.toml`` read with ``tomllib`` and changed as a
dict before :func:`agent.config.profile.parse.parse_profile` validates them, so every profile
a test uses is one the config layer accepts. :class:`Plant` drives a
:class:`~agent.core.controller.Controller` the way the runtime does (heartbeat, timer, tick,
then the writes acknowledged as a PLC that takes every write would), and keeps what the
"PLC" holds, so tests assert what reached it, not what the controller believes.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config.profile.parse import parse_profile
from agent.core.authority import Authority
from agent.core.controller import Controller, Decision
from agent.model.messages import Heartbeat, Origin
from agent.model.mode import Mode
from agent.model.profile import Profile
from agent.model.readings import Quality, Reading

SIM_TANK = Path(__file__).resolve().parents[2] / "hw_profiles" / "sim-tank.toml"
VALUES = {"temp_a": 60.0, "temp_b": 60.1, "temp_c": 59.9, "pressure_a": 2.0, "pressure_b": 2.01}
DT = 0.05  # the sim-tank poll period
# [plc_remote] on coil 5: sim-tank's only coil is the PLC watchdog's reset (coil 0)
FLAG_COIL: dict[str, Any] = {"table": "coil", "address": 5, "remote_value": 1, "local_value": 0}


def sim_tank_dict() -> dict[str, Any]:
    """sim-tank's register map as a plain coupler: the shipped file without its
    ``[plc_remote]``, its PLC program and its outputs' ``on_twin_loss``/``local_value``
    (every output ``hold``); a test adds what it is about."""
    with SIM_TANK.open("rb") as f:
        data = tomllib.load(f)
    data.pop("plc_remote", None)
    data.get("sim", {}).pop("program", None)
    for out in data["outputs"]:
        out.pop("on_twin_loss", None)
        out.pop("local_value", None)
    return data


def build(data: Mapping[str, Any]) -> Profile:
    return parse_profile(data, "sim-tank (test copy)")


def profile(*, heater: Mapping[str, Any] | None = None,
            cooling: Mapping[str, Any] | None = None,
            plc_remote: Mapping[str, Any] | None = None,
            authority: Mapping[str, Any] | None = None,
            recovery: Mapping[str, Any] | None = None) -> Profile:
    """sim-tank with keys added to the heater's and the cooling valve's ``[[outputs]]``,
    a ``[plc_remote]`` and ``[authority]`` / ``[recovery]`` tables (None: as shipped)."""
    data = copy.deepcopy(sim_tank_dict())
    by_name = {o["name"]: o for o in data["outputs"]}
    by_name["heater_power"].update(heater or {})
    by_name["cooling_valve"].update(cooling or {})
    if plc_remote is not None:
        data["plc_remote"] = dict(plc_remote)
    if authority is not None:
        data["authority"] = dict(authority)
    if recovery is not None:
        data["recovery"] = {**data["recovery"], **recovery}
    return build(data)


def readings(now: float, bad: frozenset[str] = frozenset(),
             hot: float = 0.0) -> dict[str, Reading]:
    """Good readings that wobble a little (never "stuck"); the ``bad`` ones BAD; ``hot``
    added to every temperature (above 95 degC: the overtemperature trip)."""
    wobble = 0.05 * math.sin(7.0 * now)
    return {k: Reading(k, None, v + wobble + (hot if k.startswith("temp") else 0.0),
                       Quality.BAD if k in bad else Quality.GOOD, now)
            for k, v in VALUES.items()}


class Plant:
    """A controller driven tick by tick (:data:`DT`), as the runtime drives it.

    ``plc`` is what the PLC holds (every write is acknowledged and read back unless
    ``acknowledge`` is False); ``log`` every write that reached it, in order, with its time;
    ``decisions`` every decision. A seed request (``needs_seed``) is answered from ``plc``.
    """

    def __init__(self, prof: Profile, mode: Mode = Mode.ACTIVE, *, twin: bool = True,
                 plc: Mapping[str, float] | None = None) -> None:
        self.c = Controller(prof, mode, twin=twin)
        self.profile = prof
        self.now = 0.0
        self.epoch = 1
        self.seq = 0
        self.session = 1
        self.heartbeats = twin
        self.bad: frozenset[str] = frozenset()
        self.hot = 0.0
        self.plc_reachable = True
        self.plc_watchdog_ok = True
        self.acknowledge = True
        self.plc: dict[str, float] = dict(plc if plc is not None else
                                          {"heater_power": 30.0, "cooling_valve": 20.0})
        self.log: list[tuple[float, str, float]] = []
        self.decisions: list[Decision] = []
        if twin:
            self.c.on_session(self.origin)

    @property
    def origin(self) -> Origin:
        return Origin(self.session, self.epoch)

    @property
    def authority(self) -> Authority:
        return self.c.authority.state

    def apply(self, d: Decision) -> Decision:
        self.decisions.append(d)
        if d.writes and self.acknowledge:
            for name, value in d.writes.items():
                self.plc[name] = value
                self.log.append((self.now, name, value))
            self.c.written(d.writes, now=self.now)
        return d

    def heartbeat(self, healthy: bool = True) -> Decision:
        self.seq += 1
        return self.apply(self.c.on_heartbeat(Heartbeat(self.epoch, self.seq, healthy),
                                              self.now))

    def tick(self) -> Decision:
        """One poll period: a heartbeat (while ``heartbeats``), the timer, the poll."""
        self.now = round(self.now + DT, 9)
        if self.heartbeats:
            self.heartbeat()
        self.apply(self.c.on_timer(self.now))
        d = self.apply(self.c.tick(readings(self.now, self.bad, self.hot), self.now,
                                   plc_reachable=self.plc_reachable,
                                   plc_watchdog_ok=self.plc_watchdog_ok))
        if self.c.needs_seed:  # authority taken: the runtime reads what the PLC holds
            self.c.seed({o.name: self.plc.get(o.name) for o in self.profile.outputs})
        return d

    def run(self, seconds: float) -> list[Decision]:
        return [self.tick() for _ in range(round(seconds / DT))]

    def until(self, cond: Any, limit_s: float = 60.0) -> None:
        """Tick until ``cond()`` holds; AssertionError after ``limit_s`` of plant time."""
        end = self.now + limit_s
        while not cond():
            assert self.now < end, f"not reached within {limit_s} s of plant time"
            self.tick()

    def mark(self) -> int:
        return len(self.log)

    def writes_since(self, mark: int, name: str | None = None) -> list[tuple[float, str, float]]:
        return [w for w in self.log[mark:] if name is None or w[1] == name]

    def values_since(self, mark: int, name: str) -> list[float]:
        return [v for _, n, v in self.log[mark:] if n == name]


def remote(prof: Profile, mode: Mode = Mode.ACTIVE, **kw: Any) -> Plant:
    """A plant whose twin has taken authority (REMOTE, seeded from the PLC)."""
    p = Plant(prof, mode, **kw)
    p.until(lambda: p.authority is Authority.REMOTE and not p.c.needs_seed)
    return p
