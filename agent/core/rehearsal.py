"""Rehearse a fault in the decision core only: a copy of the controller, simulated time (sans-IO).

:class:`Rehearsal` deep-copies the live :class:`~agent.core.controller.Controller` (its votes,
heartbeat monitor, both state machines, ramps, what the PLC holds; the frozen profile is
shared) and plays one scenario of ``agent.core.drills`` on the copy, from the caller's
``now`` on, with simulated time: a poll every ``timing.poll_period_s`` (``tick`` with the
readings the fault would cause), the twin's heartbeats every half ``heartbeat_late_s`` while
it sends them, the controller's own deadlines (``on_timer``) when they fall due, an
operator's ack where the recovery waits for one. Nothing of it reaches the live controller:
the copy is the only object the rehearsal calls, and what it would write is only recorded.

The assumptions, also listed in every report: every write is acknowledged by the PLC and
reads back equal (none while the PLC is silent); the sensors not under the fault keep the
values the agent last read; the twin's heartbeats (if it was heard at the start) come
steadily; the PLC's heartbeat register, written every complete tick, is left out.

The work is a generator (:meth:`Rehearsal.run`) that yields after every simulated event, so
the caller can run it in slices on its own loop; :attr:`Rehearsal.report` is the
:class:`~agent.core.drillreport.DrillReport` once the generator is exhausted. The raw
encoding of a value, the audit record kind of a transition and the native watchdog's safe
set belong to other layers: the caller passes them in (:class:`Hooks`).
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from agent.core.authority import Authority
from agent.core.controller import Controller, Decision
from agent.core.drillreport import DrillReport, Raw, Step, WouldWrite
from agent.core.drills import SCENARIOS, ChannelFault, Phase, TwinDoes, build
from agent.core.heartbeat import LinkState
from agent.core.leds import RULES, indication
from agent.core.safety import State
from agent.model.errors import DrillRefused, WriteRefused
from agent.model.messages import Heartbeat
from agent.model.profile import (
    PLC_REMOTE,
    FailsafePolicy,
    Output,
    Profile,
    RecoveryPolicy,
    ReturnPolicy,
)
from agent.model.readings import Quality, Reading

SAME_INSTANT_S = 1e-9  # simulated events closer than this happen at one instant
MAX_PHASE_S = 120.0  # a phase that has not settled after this long ends with a note
ACK_TRIES = 3  # the rehearsal's operator gives up after this many refused acks
ACK_RETRY_S = 1.0
ACK_SOURCE = "console"  # the rehearsal's operator acks as `twinguard ack` would
_FAILSAFE_WHY = {FailsafePolicy.SAFE_VALUE: "failsafe = safe_value: {v:g} at once",
                 FailsafePolicy.RAMP: "failsafe = ramp: towards its safe_value {v:g} at "
                                      "max_rate",
                 FailsafePolicy.HOLD_LAST: "failsafe = hold_last: the last value the agent "
                                           "wrote (else its safe_value {v:g})"}


@dataclass(frozen=True)
class Hooks:
    """What the rehearsal needs from layers above the core (all optional)."""

    encode: Callable[[Output, float], Raw] | None = None  # raw registers/coil of a value
    audit_kind: Callable[[str, str, str, str], str] | None = None  # (old, new, event, cause)
    hang_values: Mapping[str, float] = field(default_factory=dict)  # native watchdog's set


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, profile: Profile) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.profile = profile

    def persistent_id(self, obj: object) -> str | None:
        return "profile" if obj is self.profile else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, profile: Profile) -> None:
        super().__init__(file)
        self.profile = profile

    def persistent_load(self, pid: object) -> Profile:
        return self.profile


def copy_controller(live: Controller) -> Controller:
    """A deep copy of ``live`` that shares its (frozen) profile. Through pickle, in memory:
    half of ``copy.deepcopy``'s time (1.5 ms against 3.6 ms for sim-tank with full voter
    histories, on the development machine), and the copy is the one piece of the rehearsal
    that cannot be sliced; ``copy.deepcopy`` if some state will not pickle."""
    buf = io.BytesIO()
    try:
        _Pickler(buf, live.profile).dump(live)
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(live, {id(live.profile): live.profile})
    buf.seek(0)
    ctrl: Controller = _Unpickler(buf, live.profile).load()
    return ctrl


def _pattern_text(ctrl: Controller) -> tuple[str, bool]:
    """The LEDs' pattern and meaning for the controller's state, and waiting-for-ack."""
    link = ctrl.link.value if ctrl.twin else "none"
    ind = indication(ctrl.machine, ctrl.authority, link, ctrl.profile.recovery.policy,
                     not ctrl.unconfirmed)
    for rule in RULES:
        if rule.matches(ind):
            p = rule.pattern
            return (f"green {p.green.value}, amber {p.amber.value}, red {p.red.value}: "
                    f"{rule.meaning}"), ind.waiting_for_ack
    return "green off, amber off, red fast blink: no rule matched", ind.waiting_for_ack


class Rehearsal:
    """One scenario played on a copy of ``live``; see the module docstring.

    Raises ``DrillRefused`` (``agent.model.errors``) for an unknown scenario, when it
    cannot be played on the live profile, or while the agent is still STARTING (the PLC and
    its watchdog not yet verified: there is no state to rehearse from), before anything is
    copied.
    """

    def __init__(self, live: Controller, scenario: str, now: float, *,
                 target: str | None = None, hooks: Hooks | None = None) -> None:
        self.phases: tuple[Phase, ...] = build(scenario, live.profile, target)
        if live.state is State.STARTING:
            raise DrillRefused("the agent is still starting (the PLC and the sensors not yet "
                               "verified): drill once `twinguard status` shows it running")
        self.scenario = SCENARIOS[scenario]
        self.profile: Profile = live.profile
        self.ctrl = copy_controller(live)
        self.hooks = hooks or Hooks()
        self.t0 = now
        timing = self.profile.timing
        self.period = timing.poll_period_s
        self.hb_period = timing.heartbeat_late_s / 2
        self.settle_s = 3 * self.period
        self.heard = live.twin and live.link is not LinkState.LOST
        self.start = self._where()
        self.steps: list[Step] = []
        self.operator: list[str] = []
        self._base = {k: r for k, r in live.readings.items()}
        self._emitted: dict[str, float] = {k: r.value for k, r in self._base.items()
                                           if r.value is not None}
        self._leds, _ = _pattern_text(self.ctrl)
        self._start_leds = self._leds
        self._report: DrillReport | None = None
        self._merged = 1  # how many write steps the last step holds
        self._t = now
        self._last_change = now
        self._last_timer = float("-inf")
        self._ramps: dict[str, tuple[float, float, float | None]] = {}  # from, to, rate
        self._ack_at: float | None = None
        self._acks_refused = 0
        self._plc_silent_since: float | None = None
        self._fell_back_pending = False
        self._phase = self.phases[0]
        self._phase_t = now

    # --- results -------------------------------------------------------------------------

    @property
    def report(self) -> DrillReport:
        """The report; RuntimeError before :meth:`run` is exhausted (a caller bug)."""
        if self._report is None:
            raise RuntimeError("the rehearsal has not run to its end")
        return self._report

    def play(self) -> DrillReport:
        """Run the whole rehearsal at once (tests, tools) and return the report."""
        for _ in self.run():
            pass
        return self.report

    # --- the engine ----------------------------------------------------------------------

    def run(self) -> Iterator[None]:
        """Play every phase; yields after each simulated event (see the module docstring)."""
        c = self.ctrl
        self._next_poll = self.t0 + self.period
        self._seq = c.monitor.seq or 0
        self._epoch = c.monitor.epoch if c.monitor.epoch is not None else 0
        self._next_hb: float | None = None
        if self.heard:  # the fault begins right after a heartbeat: times count from it
            self._seq += 1
            self._take(c.on_heartbeat(Heartbeat(self._epoch, self._seq, True), self.t0))
            self._next_hb = self.t0 + self.hb_period
        for phase in self.phases:
            self._enter(phase)
            if phase.hang_s:
                yield from self._hang(phase)
            while True:
                self._event()
                yield
                if self._settled():
                    break
                if self._t - self._phase_t > MAX_PHASE_S + phase.min_s:
                    self._step("note", f"not settled after {MAX_PHASE_S:g} s; the drill "
                                       "goes on")
                    break
        self._finish()

    def _enter(self, phase: Phase) -> None:
        t = self._t
        self._phase, self._phase_t = phase, t
        if phase.twin is TwinDoes.UNHEALTHY and self._next_hb is not None:
            self._next_hb = t  # the fault is the first unhealthy heartbeat
        ramps: dict[str, tuple[float, float, float | None]] = {}
        for name, fault in phase.channels.items():
            now_at = self._emitted.get(name)
            if fault.value is not None and now_at is not None:
                to = now_at + fault.value if fault.offset else fault.value
                ramps[name] = (now_at, to, fault.rate)
        if phase.recovery:  # channels that moved come back the way they went
            for name, (_, _, rate) in self._ramps.items():
                base = self._base[name].value
                if base is not None:
                    ramps[name] = (self._emitted[name], base, rate)
        self._ramps = ramps
        self._step("fault", phase.text)
        if not phase.plc_answers:
            self._plc_silent_since = t
        elif self._plc_silent_since is not None:
            silent = t - self._plc_silent_since
            self._fell_back_pending = silent * 1000 >= self.profile.plc_watchdog.expected_timeout_ms
            self._plc_silent_since = None
        if phase.recovery and self.start[0] in ("failsafe", "recovering"):
            self._step("note", "the agent was in its safe states when the drill began")

    def _hang(self, phase: Phase) -> Iterator[None]:
        """The loop stops: nothing is processed; the native watchdog fires at its deadline;
        Python runs again after ``hang_s`` and enters FAILSAFE ("agent hang")."""
        deadline = self.profile.timing.watchdog_deadline_s
        start = self._t
        self._t = start + deadline
        board = self.profile.board
        extra = "".join((
            f"; the fault LED ({board.fault_led}) is set" if board.fault_led else "",
            f"; {board.hw_watchdog} is no longer fed" if board.hw_watchdog else ""))
        writes = tuple(self._would(name, value, "native watchdog (C, no GIL): its "
                                   "pre-encoded safe set")
                       for name, value in self.hooks.hang_values.items())
        self._step("watchdog", f"the native watchdog fires: no complete tick for "
                               f"{deadline:g} s; it sends the safe set it was armed with{extra}",
                   writes)
        yield
        self._t = start + phase.hang_s
        self._take(self.ctrl.fault(self._t, f"agent hang: the loop missed its {deadline:g} s "
                                            "watchdog deadline"))
        self._next_poll = self._t  # the loop ticks at once after an overrun
        if self._next_hb is not None:
            self._next_hb = self._t  # the heartbeats queued meanwhile, read at once
        yield

    def _event(self) -> None:
        """The next simulated event: a heartbeat, a deadline, an ack or a poll."""
        c = self.ctrl
        phase = self._phase
        sends = self._next_hb is not None and (phase.twin is not TwinDoes.SILENT)
        candidates: list[tuple[float, int, str]] = [(self._next_poll, 3, "poll")]
        if sends and self._next_hb is not None:
            candidates.append((self._next_hb, 0, "heartbeat"))
        deadline = c.next_deadline()
        if deadline is not None and deadline > self._last_timer:
            candidates.append((max(deadline, self._t), 1, "timer"))
        if self._ack_at is not None:
            candidates.append((max(self._ack_at, self._t), 2, "ack"))
        if self._plc_silent_since is not None:
            fall = self._plc_silent_since + self.profile.plc_watchdog.expected_timeout_ms / 1000
            candidates.append((max(fall, self._t), 1, "plc"))
        # events a float's rounding apart are one instant (a poll at t0 + 10 x 0.05 and a
        # deadline at t0 + 0.5): the latest of their times, the first by priority; never
        # in the past (a heartbeat the silence skipped)
        soonest = min(c[0] for c in candidates)
        near = [c for c in candidates if c[0] - soonest < SAME_INSTANT_S]
        t = max(*(c[0] for c in near), self._t)
        what = min(near, key=lambda c: c[1])[2]
        self._t = t
        if what == "heartbeat":
            self._seq += 1
            healthy = phase.twin is TwinDoes.HEARTBEATS
            self._take(c.on_heartbeat(Heartbeat(self._epoch, self._seq, healthy), t))
            assert self._next_hb is not None
            self._next_hb += self.hb_period
        elif what == "timer":
            self._last_timer = deadline if deadline is not None else t
            self._take(c.on_timer(t))
        elif what == "ack":
            self._ack(t)
        elif what == "plc":
            self._plc_fell_back(t)
        else:
            readings, answered = self._readings(t)
            fell_back, self._fell_back_pending = self._fell_back_pending, False
            self._take(c.tick(readings, t, plc_reachable=answered,
                              plc_watchdog_ok=c.plc_watchdog_ok,
                              plc_fell_back=fell_back))
            self._next_poll += self.period

    def _plc_fell_back(self, t: float) -> None:
        wd = self.profile.plc_watchdog
        sim = self.profile.sim
        program = sim is not None and sim.program is not None
        self._step("plc", f"the PLC's communication watchdog falls back: no heartbeat "
                          f"register change for {wd.expected_timeout_ms} ms"
                          + (" (the PLC program runs the plant)" if program else
                             " (a PLC falls back to its own program, an I/O coupler to its "
                             "safe outputs: as configured in the PLC)"))
        self._plc_silent_since = None  # once

    def _readings(self, t: float) -> tuple[dict[str, Reading], bool]:
        phase = self._phase
        if not phase.plc_answers:
            return {name: Reading(name, None, None, Quality.BAD, t,
                                  "drill: the PLC does not answer (timeout)")
                    for name in self._base}, False
        out: dict[str, Reading] = {}
        for name, base in self._base.items():
            fault: ChannelFault | None = phase.channels.get(name)
            if fault is not None and fault.value is None:
                out[name] = Reading(name, None, None, Quality.BAD, t, fault.error)
                continue
            if base.value is None:
                out[name] = Reading(name, base.raw, None, base.quality, t, base.error)
                continue
            value = self._ramped(name, t)
            self._emitted[name] = value
            raw = base.raw if value == base.value else None
            out[name] = Reading(name, raw, value, Quality.GOOD, t)
        return out, True

    def _ramped(self, name: str, t: float) -> float:
        base = self._base[name].value
        ramp = self._ramps.get(name)
        if ramp is None:
            assert base is not None
            return base
        start, to, rate = ramp
        if rate is None:
            return to
        reach = rate * max(t - self._phase_t, 0.0)
        return to if abs(to - start) <= reach else start + (reach if to > start else -reach)

    def _moving(self) -> bool:
        return any(rate is not None
                   and rate * (self._t - self._phase_t) < abs(to - start)
                   for start, to, rate in self._ramps.values())

    def _settled(self) -> bool:
        c = self.ctrl
        t = self._t
        if t - self._phase_t < self._phase.min_s or t - self._last_change < self.settle_s:
            return False
        unconfirmed = bool(c.unconfirmed) and self._phase.plc_answers
        if self._moving() or c.local_ramps or unconfirmed or self._ack_at is not None:
            return False
        if not self._phase.recovery:
            return True
        if c.machine.holdoff_deadline() is not None or c.authority.holdoff_deadline():
            return False
        back = self._where() == self.start
        return back or t - self._phase_t > MAX_PHASE_S

    # --- what each decision means ----------------------------------------------------------

    def _where(self) -> tuple[str, str, str]:
        c = self.ctrl
        return (c.state.value, c.authority.state.value,
                c.link.value if c.twin else "none")

    def _step(self, kind: str, text: str, writes: tuple[WouldWrite, ...] = (),
              audit: tuple[str, ...] = (), leds: str = "") -> None:
        state, authority, link = self._where()
        t = round(self._t - self.t0, 6)
        step = Step(t, kind, text, state, authority, link, writes, leds, audit)
        if kind == "write" and self._merge(step):
            return
        self.steps.append(step)
        self._merged = 1
        if kind != "note":
            self._last_change = self._t

    def _merge(self, step: Step) -> bool:
        """A write step right after one of the same kind (a ramp, the safe set sent again):
        folded into it, with its writes, as "N times from .. to .. s". Identical repeats
        (unacknowledged writes) are no change for settling; a ramp's steps are."""
        last = self.steps[-1] if self.steps else None
        if (last is None or last.kind != "write" or last.state != step.state
                or last.authority != step.authority
                or last.text.split(" [")[0] != step.text
                or {w.output for w in last.writes[-len(step.writes):]}
                != {w.output for w in step.writes}):
            return False
        same = [(w.output, w.value) for w in last.writes[-len(step.writes):]] == \
            [(w.output, w.value) for w in step.writes]
        first_t = last.text.split(" from ")[-1].split(" s")[0] if self._merged > 1 \
            else f"{last.t:.3f}"
        self._merged += 1
        self.steps[-1] = replace(
            last, text=f"{step.text} [{self._merged} times, from {first_t} s to "
                       f"{step.t:.3f} s]",
            writes=last.writes if same else last.writes + step.writes)
        if not same:
            self._last_change = self._t
        return True

    def _would(self, name: str, value: float, why: str) -> WouldWrite:
        raw: Raw = None
        if self.hooks.encode is not None:
            try:
                raw = self.hooks.encode(self.profile.output(name), value)
            except (WriteRefused, ValueError):  # the live agent would refuse it too
                why += " (refused: no raw value for it)"
        return WouldWrite(name, value, raw, why, round(self._t - self.t0, 6))

    def _why(self, name: str, value: float, d: Decision) -> str:
        c = self.ctrl
        remote = self.profile.plc_remote
        if d.safe:
            if name == PLC_REMOTE:
                return f"safe set ({d.reason}): [plc_remote] at remote_value, the PLC " \
                       "program takes the agent's values"
            o = self.profile.output(name)
            return f"safe set ({d.reason}): {_FAILSAFE_WHY[o.failsafe].format(v=o.safe_value)}"
        if name == PLC_REMOTE and remote is not None:
            if value == remote.local_value:
                return "[plc_remote] at local_value: the PLC program runs the plant " \
                       "(bumpless)"
            return "twin authority taken: [plc_remote] at remote_value"
        if d.reason == "recommendation":
            return "a live twin recommendation (clamped to limits and rate)"
        o = self.profile.output(name)
        if name in c.local_ramps or o.local_value is not None:
            return f"shed to local: ramp step towards local_value {o.local_value:g} at " \
                   f"{o.max_rate:g} {o.unit}/s"
        return d.reason or "decision"

    def _audit(self, old: str, new: str, event: str, cause: str) -> str:
        kind = self.hooks.audit_kind(old, new, event, cause) if self.hooks.audit_kind \
            else "transition"
        return f"{kind}: {old} -> {new} on {event} ({cause})"

    def _take(self, d: Decision) -> None:
        """Record what one decision of the copy means, then feed back what the PLC would
        acknowledge (everything, unless it is silent)."""
        c = self.ctrl
        for ev in d.link_events:
            audit = () if LinkState.LATE in (ev.old, ev.new) else (
                f"twin_link: {ev.old.value} -> {ev.new.value} ({ev.cause}; at most one "
                "such record every few seconds)",)
            self._step("twin", f"twin link {ev.old.name} -> {ev.new.name}: {ev.cause}",
                       audit=audit)
        for tr in d.transitions:
            self._step("safety", f"plant {tr.old.name} -> {tr.new.name} on {tr.event.name}: "
                                 f"{tr.cause}",
                       audit=(self._audit(tr.old.value, tr.new.value, tr.event.value,
                                          tr.cause),))
            self._guide(tr.new)
        for at in d.authority:
            self._step("authority", f"twin authority {at.old.name} -> {at.new.name} on "
                                    f"{at.event.name}: {at.cause}",
                       audit=(f"authority: {at.old.value} -> {at.new.value} on "
                              f"{at.event.value} ({at.cause})",))
            if at.new is Authority.RETURNING:
                self._guide_return()
        if d.writes:
            writes = tuple(self._would(k, v, self._why(k, v, d)) for k, v in d.writes.items())
            answers = self._phase.plc_answers
            self._step("write", ("would write" if answers else
                                 "would write, but the PLC does not answer: not acknowledged, "
                                 "sent again every tick") + f" ({d.reason or 'decision'})",
                       writes)
            if answers:
                c.written(dict(d.writes), None, self._t)
        self._show()

    def _show(self) -> None:
        leds, waiting = _pattern_text(self.ctrl)
        if leds != self._leds:
            self._leds = leds
            self._step("leds", leds, leds=leds)
        if (waiting and self._phase.recovery and self._ack_at is None
                and self._acks_refused < ACK_TRIES):
            # the operator acks after a moment; after a refusal, a second later
            self._ack_at = self._t + (ACK_RETRY_S if self._acks_refused else self.period)

    def _ack(self, t: float) -> None:
        self._ack_at = None
        decision, refused = self.ctrl.ack(t, ACK_SOURCE)
        how = "the rehearsal acks as `twinguard ack` would"
        if refused is not None:
            self._acks_refused += 1
            self._step("operator", f"the operator acknowledges ({how}): refused: {refused}",
                       audit=(f"ack: refused ({refused})",))
            return
        self._step("operator", f"the operator acknowledges ({how}): accepted",
                   audit=(f"ack: source {ACK_SOURCE}, the operator's pid and uid",))
        self._take(decision)

    def _ack_how(self) -> str:
        board = self.profile.board
        if board.reset_button is None:
            return "run `twinguard ack`"
        return (f"hold the reset button (GPIO {board.reset_button}) for "
                f"{board.reset_hold_s:g} s, or run `twinguard ack`")

    def _advise(self, text: str) -> None:
        if text not in self.operator:
            self.operator.append(text)
        self._step("operator", text)

    def _guide(self, new: State) -> None:
        rec = self.profile.recovery
        c = self.ctrl
        if new is State.FAILSAFE:
            manual = rec.policy is RecoveryPolicy.MANUAL
            self._advise(f"find and clear the cause ({c.machine.cause}); the plant is latched "
                         "safe" + ("; an ack is refused while the hazard lasts" if manual
                                   else ""))
        elif new is State.RECOVERING and rec.policy is RecoveryPolicy.MANUAL:
            self._advise(f"acknowledge (recovery policy manual): {self._ack_how()}")
        elif new is State.RECOVERING:
            self._advise(f"nothing: the agent leaves RECOVERING after {rec.holdoff_s:g} s of "
                         "continuous health (recovery policy auto; an ack cuts it short)")
        elif new is State.DEGRADED:
            bad = [str(e) for v in c.votes.values() for e in v.excluded]
            self._advise("repair or replace what the vote excludes"
                         + (f" ({', '.join(bad)})" if bad else "")
                         + "; the plant keeps running")

    def _guide_return(self) -> None:
        a = self.ctrl.authority.settings
        if a.return_policy is ReturnPolicy.MANUAL:
            self._advise(f"to give the twin its authority back (return policy manual): "
                         f"{self._ack_how()}")
        else:
            self._advise(f"nothing: the twin regains authority after {a.return_holdoff_s:g} s "
                         "of continuous healthy heartbeats (return policy auto)")

    def _finish(self) -> None:
        end = self._where()
        reactions = [s for s in self.steps if s.kind in ("safety", "authority", "watchdog")]
        first = reactions[0] if reactions else None
        outcome = (f"first reaction at {first.t:.3f} s: {first.text}" if first
                   else "no reaction: the agent's state and authority do not change")
        outcome += f"; ends {end[0].upper()}, authority {end[1].upper()}, twin {end[2]}"
        if end != self.start:
            outcome += (f" (not where it began: {self.start[0].upper()}, "
                        f"{self.start[1].upper()}, {self.start[2]})")
        timing = self.profile.timing
        assumptions = [
            "every write is acknowledged by the PLC and reads back equal (none while the PLC "
            "is silent)",
            "sensors not under the fault keep the values the agent last read: " + (", ".join(
                f"{k}={r.value:g}" for k, r in self._base.items() if r.value is not None)
                or "none read yet"),
            "the PLC heartbeat register, written every complete tick, is left out",
            f"simulated time: a poll every {timing.poll_period_s:g} s, the controller's own "
            "deadlines when due",
        ]
        if any(p.hang_s for p in self.phases):
            assumptions.append("the native watchdog runs on after it fired; where it is set to "
                               "exit the agent on a hang (TWINGUARD_WATCHDOG_EXIT), systemd "
                               "restarts the agent instead (not played here)")
        if self.heard:
            assumptions.append(f"the twin sends a heartbeat every {self.hb_period:g} s (half "
                               f"of heartbeat_late_s {timing.heartbeat_late_s:g} s)")
        elif self.ctrl.twin:
            assumptions.append("the twin was not heard when the drill began: no heartbeats")
        else:
            assumptions.append("no twin is configured: the twin's loss changes nothing")
        self._report = DrillReport(
            scenario=self.scenario.name, summary=self.scenario.summary,
            profile=self.profile.source, poll_period_s=timing.poll_period_s,
            start_state=self.start[0], start_authority=self.start[1],
            start_link=self.start[2], mode=self.ctrl.machine.mode.value,
            start_leds=self._start_leds,
            end_state=end[0], end_authority=end[1], end_link=end[2],
            duration_s=round(self._t - self.t0, 6), steps=tuple(self.steps),
            operator=tuple(self.operator), assumptions=tuple(assumptions), outcome=outcome)
