"""What the person running the demo sees: a live terminal view (rich), or plain lines.

Both views take the same calls from the runner - :meth:`View.scenario` (a scenario begins),
:meth:`View.step` (what it does now), :meth:`View.on_new` (new write-log records, agent
status messages and config results, called from the recorder's thread) - and print nothing
else.

The live view (``rich.live.Live``, ~4 Hz) shows the sim PLC's side (true process values,
the value each channel serves with its injected fault, the outputs, the PLC's watchdog), the
agent as its status messages report it (state, mode, twin authority) with the three LEDs
drawn from
:func:`agent.core.leds.pattern_for` (blinking by the phase of wall time; all dark while the agent
process is not running), the twin link as the twin's heartbeat record shows it, the current
scenario and step, and the recent events. The plain view prints one line per event.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.core.leds import (
    AUTHORITIES,
    LINKS,
    STATES,
    Indication,
    LedMode,
    LedPattern,
    pattern_for,
)
from agent.model.profile import PLC_REMOTE, Profile
from sim.demo.judge import held_after, is_output_write, is_safe_write, output_names
from sim.demo.record import ConfigSeen, PlcSample, Recorder, StatusSeen

STATE_STYLE = {"starting": "grey62", "normal": "green", "degraded": "yellow",
               "failsafe": "bold red", "recovering": "cyan"}
LED_COLOR = {"green": "green", "amber": "dark_orange", "red": "red"}
EVENTS_SHOWN = 10
PLAIN_WRITE_EVERY_S = 1.0  # show at most one ordinary output write per this
STATUS_STALE_S = 2.5  # the agent reports every second


class View(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def scenario(self, name: str, index: int, total: int) -> None: ...
    def step(self, text: str) -> None: ...
    def on_new(self, writes: list[dict[str, Any]], statuses: list[StatusSeen],
               configs: list[ConfigSeen]) -> None: ...


def describe_write(rec: dict[str, Any], profile: Profile,
                   held: Mapping[str, int] | None = None) -> str | None:
    """One line for a write-log record worth showing; None for heartbeat-register writes.
    ``held``: raw output values at the PLC before it (a ramp toward safe is then SAFE)."""
    if rec.get("source") == "plc watchdog":
        return f"PLC watchdog fallback: {', '.join(rec.get('names', ()))} -> safe value"
    if rec.get("source") == "control":
        names = ", ".join(rec.get("names", ()))
        return f"PLC control channel set {names} = {rec.get('values')}"
    remote = profile.plc_remote
    if (remote is not None and rec.get("source") == "modbus"
            and PLC_REMOTE in rec.get("names", ())
            and not is_output_write(rec, output_names(profile))):
        value = rec.get("values", [None])[0]
        who = {remote.remote_value: "remote: the agent's registers drive the plant",
               remote.local_value: "local: the PLC program drives the plant"}.get(
                   value, f"raw {value}")
        return f"PLC flag {PLC_REMOTE} = {who}"
    if not is_output_write(rec, output_names(profile)):
        return None
    kind = "SAFE STATE written" if is_safe_write(rec, profile, held) else "output write"
    ok = "" if rec.get("accepted", True) else f" (refused: {rec.get('error')})"
    return f"{kind}: {', '.join(rec.get('names', ()))} = {rec.get('values')} fc {rec['fc']}{ok}"


class _Events:
    """Turns new records and statuses into event lines; shared by both views."""

    def __init__(self, profile: Profile, t0: float,
                 emit: Callable[[float, str], None]) -> None:
        self.profile = profile
        self.t0 = t0
        self.emit = emit
        self.state: str | None = None
        self.mode: str | None = None
        self.authority: str | None = None
        self._fallback_seen = 0.0
        self._held: dict[str, int] = {}
        self._plain_seen = -math.inf

    def feed(self, writes: list[dict[str, Any]], statuses: list[StatusSeen],
             configs: Sequence[ConfigSeen] = ()) -> None:
        items: list[tuple[float, str]] = []
        for rec in writes:
            line = describe_write(rec, self.profile, self._held)
            held_after(self._held, rec, self.profile)
            t = float(rec["t"])
            if rec.get("source") == "plc watchdog":  # one pseudo-entry per output: show once
                if t - self._fallback_seen < 0.5:
                    continue
                self._fallback_seen = t
            if line is not None and line.startswith("output write"):
                if t - self._plain_seen < PLAIN_WRITE_EVERY_S:  # recommendations: 20 Hz
                    continue
                self._plain_seen = t
            if line is not None:
                items.append((t, line))
        for st in statuses:
            if st.state != self.state:
                items.append((st.t, f"agent reports {st.state.upper()} ({st.mode})"
                              + (f", was {self.state}" if self.state else "")))
                self.state = st.state
            if st.mode != self.mode:
                if self.mode is not None:
                    items.append((st.t, f"agent reports mode {st.mode.upper()}, was {self.mode}"))
                self.mode = st.mode
            if st.authority != self.authority:
                if self.authority is not None:
                    items.append((st.t, f"agent reports twin authority {st.authority.upper()}, "
                                  f"was {self.authority}"))
                self.authority = st.authority
        for c in configs:
            verdict = "ACCEPTED" if c.accepted else "REFUSED"
            items.append((c.t, f"config v{c.version}: {verdict} ({c.reason})"))
        for t, line in sorted(items):
            self.emit(t - self.t0, line)


class PlainView:
    """One line per event on ``stream`` (used with ``--no-live`` and when not a TTY)."""

    def __init__(self, profile: Profile, recorder: Recorder, stream: IO[str]) -> None:
        self._stream = stream
        self._t0 = recorder.snapshot().t0
        self._lock = threading.Lock()
        self._events = _Events(profile, self._t0,
                               lambda t, line: self._line(f"{t:7.2f} s  {line}"))
        self._scenario = "start-up"

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self._stream, flush=True)

    def start(self) -> None:
        self._line(f"{0.0:7.2f} s  == twinguard demo: sim PLC, sim twin and agent started")

    def stop(self) -> None:
        pass

    def scenario(self, name: str, index: int, total: int) -> None:
        self._scenario = name
        self._line(f"{time.monotonic() - self._t0:7.2f} s  == scenario {index}/{total}: {name}")

    def step(self, text: str) -> None:
        self._line(f"{time.monotonic() - self._t0:7.2f} s  [{self._scenario}] {text}")

    def on_new(self, writes: list[dict[str, Any]], statuses: list[StatusSeen],
               configs: list[ConfigSeen]) -> None:
        self._events.feed(writes, statuses, configs)


def led_lit(mode: LedMode, now: float) -> bool:
    """Whether an LED in ``mode`` is lit at wall time ``now`` (blinks by phase)."""
    half = mode.half_period_s
    if half is None:
        return mode is LedMode.ON
    return (now % (2 * half)) < half


def link_state(last_heartbeat_t: float | None, now: float, profile: Profile) -> str:
    """alive / late / lost from the age of the twin's last heartbeat (agent's thresholds)."""
    if last_heartbeat_t is None:
        return "lost"
    age = now - last_heartbeat_t
    if age <= profile.timing.heartbeat_late_s:
        return "alive"
    return "late" if age <= profile.timing.heartbeat_timeout_s else "lost"


def leds_for(status: StatusSeen | None, link: str, agent_alive: bool) -> LedPattern | None:
    """The LED pattern the board would show; None (all dark) when the agent is not running."""
    if not agent_alive:
        return None
    state = status.state if status else "starting"
    mode = status.mode if status else "shadow"
    authority = status.authority if status else "local"
    if state not in STATES or link not in LINKS or authority not in AUTHORITIES:
        return LedPattern(LedMode.OFF, LedMode.OFF, LedMode.BLINK_FAST)
    return pattern_for(Indication(state, mode, link, waiting_for_ack=False,
                                  authority=authority))


class LiveView:
    """The rich live view; see the module docstring."""

    def __init__(self, profile: Profile, recorder: Recorder, console: Console,
                 agent_alive: Callable[[], bool]) -> None:
        self.profile = profile
        self.recorder = recorder
        self.console = console
        self.agent_alive = agent_alive
        self._t0 = recorder.snapshot().t0
        self._recent: list[tuple[float, str]] = []  # (seconds since t0, line), time order
        self._lock = threading.Lock()
        self._events = _Events(profile, self._t0, self._event)
        self._scenario = "start-up"
        self._step = "starting the sim PLC, the sim twin and the agent"
        self._live = Live(console=console, refresh_per_second=4, get_renderable=self.render,
                          transient=False)

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.refresh()
        self._live.stop()

    def _event(self, t: float, text: str) -> None:
        """Keep the last events in time order (status messages arrive after the fact)."""
        with self._lock:
            bisect.insort(self._recent, (t, f"{t:7.2f} s  {text}"))
            del self._recent[:-EVENTS_SHOWN]

    def scenario(self, name: str, index: int, total: int) -> None:
        self._scenario = f"{index}/{total} {name}"
        self._event(time.monotonic() - self._t0, f"== scenario {name}")

    def step(self, text: str) -> None:
        self._step = text
        self._event(time.monotonic() - self._t0, f"[{self._scenario}] {text}")

    def on_new(self, writes: list[dict[str, Any]], statuses: list[StatusSeen],
               configs: list[ConfigSeen]) -> None:
        self._events.feed(writes, statuses, configs)

    def render(self) -> Group:
        sample, status, rec = self.recorder.latest()
        now = time.monotonic()
        head = Text.assemble(("twinguard demo", "bold"), f"  {now - self._t0:6.1f} s   ",
                             ("scenario ", "dim"), (self._scenario, "bold cyan"),
                             ("   step ", "dim"), self._step)
        grid = Table.grid(padding=(0, 3))
        grid.add_row(self._plc_table(sample),
                     self._agent_table(status, rec.last_heartbeat_t, rec.twin_sending,
                                       len(rec.heartbeats), now))
        with self._lock:
            lines = [line for _t, line in self._recent]
        events = Text("\n".join(lines) or "(none yet)")
        return Group(Panel(head), grid, Panel(events, title="recent events", title_align="left"))

    def _plc_table(self, s: PlcSample | None) -> Table:
        t = Table(title="sim PLC (true values)", title_justify="left", box=None)
        t.add_column("signal")
        t.add_column("value", justify="right")
        t.add_column("fault", style="red")
        if s is None:
            t.add_row("-", "-", "")
            return t
        if s.temperature is not None:
            t.add_row("process temperature", f"{s.temperature:.2f} degC", "")
        for name, v in s.signals.items():
            unit = self._unit(name)
            t.add_row(f"  {name}", f"{v:.2f} {unit}", s.faults.get(name, ""))
        if s.pressure is not None:
            t.add_row("process pressure", f"{s.pressure:.3f} bar", "")
        for name, v in s.outputs.items():
            t.add_row(f"output {name}", f"{v:.1f} %", "")
        if s.setpoint is not None:
            t.add_row("PLC program setpoint", f"{s.setpoint:.1f} degC", "")
        if s.plc_remote is not None and self.profile.plc_remote is not None:
            remote = s.plc_remote == self.profile.plc_remote.remote_value
            t.add_row("plant driven by", "agent (flag remote)" if remote
                      else "PLC program (flag local)", "")
        wd = "LATCHED (fallback applied)" if s.watchdog_latched else (
            "armed" if s.watchdog_armed else "not armed")
        t.add_row("PLC comm watchdog", wd, "")
        return t

    def _unit(self, name: str) -> str:
        try:
            return self.profile.signal(name).unit
        except KeyError:
            return ""

    def _agent_table(self, status: StatusSeen | None, last_hb: float | None, sending: bool,
                     beats: int, now: float) -> Table:
        t = Table(title="agent (from its status messages)", title_justify="left", box=None)
        t.add_column("")
        t.add_column("")
        alive = self.agent_alive()
        if status is None:
            t.add_row("state", "(no status yet)")
        else:
            stale = not alive or now - status.t > STATUS_STALE_S
            t.add_row("state", Text(status.state.upper(), style=STATE_STYLE.get(status.state, ""))
                      + Text(" (last report)" if stale else "", style="dim"))
            t.add_row("mode", status.mode)
            t.add_row("twin authority", status.authority.upper())
            t.add_row("last status", f"{now - status.t:.1f} s ago")
        t.add_row("process", "running" if alive else Text("NOT RUNNING", style="bold red"))
        link = link_state(last_hb, now, self.profile)
        age = "-" if last_hb is None else f"{now - last_hb:.2f} s ago"
        t.add_row("twin link", Text(f"{link}", style={"alive": "green", "late": "yellow"}.get(
            link, "red")) + Text(f"  ({beats} heartbeats, last {age}"
                                 f"{'' if sending else ', twin STOPPED'})"))
        pattern = leds_for(status, link, alive)
        leds = Text()
        for name in ("green", "amber", "red"):
            mode = LedMode.OFF if pattern is None else getattr(pattern, name)
            lit = led_lit(mode, time.time())
            leds.append("● " if lit else "○ ", style=LED_COLOR[name] if lit else "grey50")
            leds.append(f"{name} ({mode.value})   ", style="dim")
        t.add_row("LEDs", leds)
        return t
