"""The three status LEDs: what the operator sees, as one literal table (sans-IO).

The runtime maps its own states onto :class:`Indication` (:func:`indication`: plain
lower-case strings, the ``.value`` of the safety/heartbeat/authority enums; link ``none``
without a twin) and the gpiozero adapter (``agent.io.panel.leds.StatusLeds``) shows it once
per tick; :func:`pattern_for` is pure and decides what the three LEDs do. The first matching
row of the table wins ("any" matches every value; ``ack`` is ``waiting_for_ack``: a manual
recovery or a manual return waits for the reset button; ``safe set`` is
``safe_confirmed``, "not confirmed" while a safe value planned is not yet acknowledged and
read back at the PLC):

| state | mode | link | authority | ack | safe set | green | amber | red | meaning |
|---|---|---|---|---|---|---|---|---|---|
| any | any | any | any | any | not confirmed | off | off | fast blink | the safe set is not confirmed at the PLC: written again every tick |
| failsafe | any | any | any | any | any | off | off | fast blink | FAILSAFE: safe values written, latched |
| recovering | any | any | any | yes | any | off | off | on | latched: hold reset (or `twinguard ack`) |
| recovering | any | any | any | no | any | off | slow blink | off | healthy, auto hold-off running |
| starting | any | any | any | any | any | off | slow blink | off | starting: checking the PLC and the sensors, nothing written |
| degraded | any | any | any | any | any | slow blink | on | off | DEGRADED: a channel or group out; local control runs the plant |
| normal | any | alive | remote | any | any | on | off | off | NORMAL, the twin decides the outputs |
| normal | any | late, lost, none | remote | any | any | on | on | off | NORMAL, the twin decides, its heartbeat is late |
| normal | any | any | returning | yes | any | slow blink | fast blink | off | twin eligible again: hold reset (or `twinguard ack`) to give it authority |
| normal | any | any | returning | no | any | slow blink | slow blink | off | twin regaining authority: return hold-off running |
| normal | any | late, lost | any | any | any | fast blink | on | off | twin not heard: local control runs the plant (shadow: nothing was written) |
| normal | any | none | any | any | any | slow blink | off | off | NORMAL, local guard: no twin configured |
| normal | shadow | any | any | any | any | slow blink | off | off | NORMAL, shadow mode: the twin advises, local control |
| normal | active | alive | any | any | any | slow blink | off | off | NORMAL, local control (the twin has not earned authority yet) |

All three dark: the agent is not running. A clean stop turns every LED off
(``StatusLeds.close``). If the process dies, blinking stops at once (it runs on the
process's threads) and the GPIO driver usually releases the pins; a frozen, non-blinking
pattern therefore also means "agent gone" (and the native watchdog sets the fault LED).
Slow blink is 1 Hz (0.5 s on, 0.5 s off), fast blink 4 Hz (0.125 s on, 0.125 s off).
In short: green = the plant runs (steady: the twin decides; blinking: local control);
amber = something needs attention, the plant is running; red = the plant is in its safe
state (fast: a hazard is active; steady: press reset).

The table above is generated from :data:`RULES` by :func:`markdown_table` and a test keeps
the two equal.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from agent.core.authority import Authority, AuthorityMachine
from agent.core.safety import SafetyMachine, State
from agent.model.profile import RecoveryPolicy, ReturnPolicy

log = logging.getLogger(__name__)

STATES = ("starting", "normal", "degraded", "failsafe", "recovering")
MODES = ("shadow", "active")
LINKS = ("alive", "late", "lost", "none")  # none: no twin configured
AUTHORITIES = ("local", "returning", "remote")


@dataclass(frozen=True)
class Indication:
    """What the LEDs must show: the runtime's state, as the lower-case enum values.

    Raises ValueError at construction for a value outside :data:`STATES`, :data:`MODES`,
    :data:`LINKS` or :data:`AUTHORITIES`: that is a bug in the runtime's mapping, not
    operator input.
    """

    state: str
    mode: str
    link: str
    waiting_for_ack: bool
    safe_confirmed: bool = True
    authority: str = "local"

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("state", self.state, STATES),
            ("mode", self.mode, MODES),
            ("link", self.link, LINKS),
            ("authority", self.authority, AUTHORITIES),
        ):
            if value not in allowed:
                raise ValueError(f"Indication.{field}={value!r}: expected one of {allowed}")


class LedMode(enum.Enum):
    """What one LED does."""

    OFF = "off"
    ON = "on"
    BLINK_SLOW = "slow blink"  # 1 Hz
    BLINK_FAST = "fast blink"  # 4 Hz

    @property
    def half_period_s(self) -> float | None:
        """On time (= off time) of a blinking mode in seconds; None for OFF and ON."""
        if self is LedMode.BLINK_SLOW:
            return 0.5
        if self is LedMode.BLINK_FAST:
            return 0.125
        return None


@dataclass(frozen=True)
class LedPattern:
    """One mode per LED."""

    green: LedMode
    amber: LedMode
    red: LedMode


@dataclass(frozen=True)
class Rule:
    """One row of the table: matches when every field holds the indication's value."""

    states: frozenset[str]
    modes: frozenset[str]
    links: frozenset[str]
    authorities: frozenset[str]
    acks: frozenset[bool]
    pattern: LedPattern
    meaning: str
    confirmed: frozenset[bool] = frozenset((False, True))  # safe set confirmed?

    def matches(self, ind: Indication) -> bool:
        return (
            ind.state in self.states
            and ind.mode in self.modes
            and ind.link in self.links
            and ind.authority in self.authorities
            and ind.waiting_for_ack in self.acks
            and ind.safe_confirmed in self.confirmed
        )


_ANY = "any"
_OFF, _ON, _SLOW, _FAST = LedMode.OFF, LedMode.ON, LedMode.BLINK_SLOW, LedMode.BLINK_FAST


def _set(value: str | bool | tuple[str, ...], every: tuple[str, ...] | tuple[bool, ...]
         ) -> frozenset[Any]:
    if value == _ANY:
        return frozenset(every)
    return frozenset(value) if isinstance(value, tuple) else frozenset((value,))


def _row(  # noqa: PLR0917 - positional args keep the table literal
    states: str | tuple[str, ...],
    modes: str,
    links: str | tuple[str, ...],
    authorities: str | tuple[str, ...],
    acks: str | bool,
    green: LedMode,
    amber: LedMode,
    red: LedMode,
    meaning: str,
    confirmed: str | bool = _ANY,
) -> Rule:
    return Rule(
        states=_set(states, STATES), modes=_set(modes, MODES), links=_set(links, LINKS),
        authorities=_set(authorities, AUTHORITIES), acks=_set(acks, (False, True)),
        pattern=LedPattern(green, amber, red), meaning=meaning,
        confirmed=_set(confirmed, (False, True)),
    )


# fmt: off
RULES: tuple[Rule, ...] = (
    _row(_ANY, _ANY, _ANY, _ANY, _ANY, _OFF, _OFF, _FAST,
         "the safe set is not confirmed at the PLC: written again every tick", confirmed=False),
    _row("failsafe", _ANY, _ANY, _ANY, _ANY, _OFF, _OFF, _FAST,
         "FAILSAFE: safe values written, latched"),
    _row("recovering", _ANY, _ANY, _ANY, True, _OFF, _OFF, _ON,
         "latched: hold reset (or `twinguard ack`)"),
    _row("recovering", _ANY, _ANY, _ANY, False, _OFF, _SLOW, _OFF,
         "healthy, auto hold-off running"),
    _row("starting", _ANY, _ANY, _ANY, _ANY, _OFF, _SLOW, _OFF,
         "starting: checking the PLC and the sensors, nothing written"),
    _row("degraded", _ANY, _ANY, _ANY, _ANY, _SLOW, _ON, _OFF,
         "DEGRADED: a channel or group out; local control runs the plant"),
    _row("normal", _ANY, "alive", "remote", _ANY, _ON, _OFF, _OFF,
         "NORMAL, the twin decides the outputs"),
    _row("normal", _ANY, ("late", "lost", "none"), "remote", _ANY, _ON, _ON, _OFF,
         "NORMAL, the twin decides, its heartbeat is late"),
    _row("normal", _ANY, _ANY, "returning", True, _SLOW, _FAST, _OFF,
         "twin eligible again: hold reset (or `twinguard ack`) to give it authority"),
    _row("normal", _ANY, _ANY, "returning", False, _SLOW, _SLOW, _OFF,
         "twin regaining authority: return hold-off running"),
    _row("normal", _ANY, ("late", "lost"), _ANY, _ANY, _FAST, _ON, _OFF,
         "twin not heard: local control runs the plant (shadow: nothing was written)"),
    _row("normal", _ANY, ("none",), _ANY, _ANY, _SLOW, _OFF, _OFF,
         "NORMAL, local guard: no twin configured"),
    _row("normal", "shadow", _ANY, _ANY, _ANY, _SLOW, _OFF, _OFF,
         "NORMAL, shadow mode: the twin advises, local control"),
    _row("normal", "active", ("alive",), _ANY, _ANY, _SLOW, _OFF, _OFF,
         "NORMAL, local control (the twin has not earned authority yet)"),
)
# fmt: on

_FALLBACK = LedPattern(_OFF, _OFF, _FAST)


def pattern_for(ind: Indication) -> LedPattern:
    """The LED pattern for ``ind``: the first row of :data:`RULES` that matches.

    The table covers every valid indication (a test enumerates them); should a row ever be
    missing, the answer is the FAILSAFE pattern (red fast blink), never an exception.
    """
    rule = rule_for(ind)
    if rule is not None:
        return rule.pattern
    log.error("no LED rule for %s; showing the FAILSAFE pattern", ind)
    return _FALLBACK


def rule_for(ind: Indication) -> Rule | None:
    """The first row of :data:`RULES` that matches ``ind`` (its pattern and meaning); None
    if no row does (a bug: a test enumerates every valid indication)."""
    for rule in RULES:
        if rule.matches(ind):
            return rule
    return None


def markdown_table() -> str:
    """:data:`RULES` as the Markdown table in this module's docstring (for the README)."""

    def cell(values: frozenset[Any], order: tuple[Any, ...], names: dict[Any, str]) -> str:
        if values == frozenset(order):
            return "any"
        return ", ".join(names.get(v, str(v)) for v in order if v in values)

    acks = {True: "yes", False: "no"}
    confirmed = {True: "confirmed", False: "not confirmed"}
    lines = [
        "| state | mode | link | authority | ack | safe set | green | amber | red | meaning |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in RULES:
        lines.append(
            f"| {cell(r.states, STATES, {})} | {cell(r.modes, MODES, {})} "
            f"| {cell(r.links, LINKS, {})} | {cell(r.authorities, AUTHORITIES, {})} "
            f"| {cell(r.acks, (True, False), acks)} "
            f"| {cell(r.confirmed, (True, False), confirmed)} | {r.pattern.green.value} "
            f"| {r.pattern.amber.value} | {r.pattern.red.value} | {r.meaning} |"
        )
    return "\n".join(lines)


def indication(machine: SafetyMachine, authority: AuthorityMachine, link: str,
               recovery: RecoveryPolicy, safe_confirmed: bool = True) -> Indication:
    """What the LEDs should say for the two axes, the mode, the twin link (``none``: no
    twin configured) and the safe set."""
    waiting = ((machine.state is State.RECOVERING and recovery is RecoveryPolicy.MANUAL)
               or (authority.state is Authority.RETURNING
                   and authority.settings.return_policy is ReturnPolicy.MANUAL))
    return Indication(machine.state.value, machine.mode.value, link, waiting, safe_confirmed,
                      authority.state.value)
