"""The report of a fault drill (a rehearsal in the decision core): frozen data, JSON both ways.

A :class:`DrillReport` is what ``agent.core.rehearsal`` found when it played one scenario on
a copy of the agent's decision state: the steps in time order, each with its time relative to
the fault's start (``t``, seconds; negative never), what kind of happening it is, the state of
both axes after it, and what the agent *would* have written, shown and recorded. Nothing in
it was written anywhere.

Step kinds (``Step.kind``)::

    fault      the scenario injects (or clears) its fault
    twin       the twin link changes state (ALIVE / LATE / LOST)
    safety     a plant-safety transition (with its event and cause)
    authority  a twin-authority transition (LOCAL / RETURNING / REMOTE)
    write      what the agent would write (``writes``: output, value, raw, why)
    watchdog   the native watchdog (C) fires: its pre-encoded safe set
    plc        the PLC itself acts (its communication watchdog falls back)
    leds       the status LEDs change pattern
    operator   what the operator has to do (or did, in the rehearsal: an ack)
    note       anything else worth knowing (an assumption, a limit reached)

:meth:`DrillReport.to_dict` and :func:`report_from_dict` are exact inverses (JSON-safe: raw
register values as lists of ints or a bool).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("fault", "twin", "safety", "authority", "write", "watchdog", "plc", "leds",
         "operator", "note")

Raw = tuple[int, ...] | bool | None


@dataclass(frozen=True)
class WouldWrite:
    """One value the agent would have written ``t`` seconds after the fault began:
    engineering ``value``, the ``raw`` registers (or coil) it encodes to (None: not encoded),
    and ``why`` (safe set, shed, ramp...). A write step that folds a ramp holds every one of
    its writes, each with its own ``t``."""

    output: str
    value: float
    raw: Raw
    why: str
    t: float


@dataclass(frozen=True)
class Step:
    """One happening of the rehearsal, ``t`` seconds after the fault began."""

    t: float
    kind: str
    text: str
    state: str  # plant safety after this step (State.value)
    authority: str  # twin authority after this step (Authority.value)
    link: str  # twin link after this step (LinkState.value, "none" without a twin)
    writes: tuple[WouldWrite, ...] = ()
    leds: str = ""  # "green off, amber off, red fast blink" (kind leds)
    audit: tuple[str, ...] = ()  # audit records this step would add: "failsafe_enter: ..."


@dataclass(frozen=True)
class DrillReport:
    """A whole rehearsal; see the module docstring."""

    scenario: str
    summary: str  # one line: what the scenario does
    profile: str  # the profile's source
    poll_period_s: float
    start_state: str
    start_authority: str
    start_link: str
    mode: str
    start_leds: str  # the LEDs' pattern when the drill began (as Step.leds)
    end_state: str
    end_authority: str
    end_link: str
    duration_s: float  # simulated time played
    steps: tuple[Step, ...]
    operator: tuple[str, ...]  # what the operator would have to do, in order
    assumptions: tuple[str, ...]  # what the rehearsal took for granted
    outcome: str  # one line: the reaction and the end state

    @property
    def writes(self) -> tuple[WouldWrite, ...]:
        return tuple(w for s in self.steps for w in s.writes)

    def last_written(self) -> dict[str, float]:
        """The last value the rehearsal would have written to each output."""
        return {w.output: w.value for w in self.writes}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for step in d["steps"]:
            for w in step["writes"]:
                if isinstance(w["raw"], tuple):
                    w["raw"] = list(w["raw"])
            step["audit"] = list(step["audit"])
            step["writes"] = list(step["writes"])
        d["steps"] = list(d["steps"])
        d["operator"] = list(self.operator)
        d["assumptions"] = list(self.assumptions)
        return d


def _raw(value: Any) -> Raw:
    if value is None or isinstance(value, bool):
        return value
    return tuple(int(v) for v in value)


def report_from_dict(d: Mapping[str, Any]) -> DrillReport:
    """The inverse of :meth:`DrillReport.to_dict`; KeyError/TypeError/ValueError for a dict
    that is not one (the caller reports it as a reply that makes no sense)."""
    steps = tuple(
        Step(t=float(s["t"]), kind=str(s["kind"]), text=str(s["text"]), state=str(s["state"]),
             authority=str(s["authority"]), link=str(s["link"]),
             writes=tuple(WouldWrite(str(w["output"]), float(w["value"]), _raw(w["raw"]),
                                     str(w["why"]), float(w["t"])) for w in s["writes"]),
             leds=str(s["leds"]), audit=tuple(str(a) for a in s["audit"]))
        for s in d["steps"])
    return DrillReport(
        scenario=str(d["scenario"]), summary=str(d["summary"]), profile=str(d["profile"]),
        poll_period_s=float(d["poll_period_s"]), start_state=str(d["start_state"]),
        start_authority=str(d["start_authority"]), start_link=str(d["start_link"]),
        mode=str(d["mode"]), start_leds=str(d["start_leds"]), end_state=str(d["end_state"]),
        end_authority=str(d["end_authority"]), end_link=str(d["end_link"]),
        duration_s=float(d["duration_s"]), steps=steps,
        operator=tuple(str(o) for o in d["operator"]),
        assumptions=tuple(str(a) for a in d["assumptions"]), outcome=str(d["outcome"]))
