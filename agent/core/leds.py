"""The three status LEDs: what the operator sees, as one literal table (sans-IO).

The runtime maps its own states onto :class:`Indication` (:func:`indication`: plain
lower-case strings, the ``.value`` of the safety/heartbeat enums) and the gpiozero adapter
(``agent.io.panel.leds.StatusLeds``) shows it once per tick; :func:`pattern_for` is pure and
decides what the three LEDs do. The first matching row of
the table wins ("any" matches every value; ``ack`` is ``waiting_for_ack``; ``safe set`` is
``safe_confirmed``, "not confirmed" while a safe value planned is not yet acknowledged and
read back at the PLC):

| state | mode | link | ack | safe set | green | amber | red | meaning |
|---|---|---|---|---|---|---|---|---|
| any | any | any | any | not confirmed | off | off | fast blink | the safe set is not confirmed at the PLC: written again every tick |
| failsafe | any | any | any | any | off | off | fast blink | FAILSAFE: safe values written, latched |
| recovering | any | any | yes | any | off | off | on | latched: hold reset (or `twinguard ack`) |
| recovering | any | any | no | any | off | slow blink | off | healthy, auto hold-off running |
| starting | any | any | any | any | off | slow blink | off | starting, safe values held |
| degraded | active | any | any | any | on | on | off | DEGRADED, twin in control |
| degraded | shadow | any | any | any | slow blink | on | off | DEGRADED, shadow mode |
| normal | active | alive | any | any | on | off | off | NORMAL, twin in control |
| normal | shadow | alive | any | any | slow blink | off | off | NORMAL, shadow mode (twin advises) |
| normal | active | late, lost | any | any | on | on | off | NORMAL, twin heartbeat late |
| normal | shadow | late, lost | any | any | slow blink | on | off | NORMAL, shadow, twin heartbeat late |

All three dark: the agent is not running. A clean stop turns every LED off
(``StatusLeds.close``). If the process dies, blinking stops at once (it runs on the
process's threads) and the GPIO driver usually releases the pins; a frozen, non-blinking
pattern therefore also means "agent gone" (and the native watchdog sets the fault LED).
Slow blink is 1 Hz (0.5 s on, 0.5 s off), fast blink 4 Hz (0.125 s on, 0.125 s off).
In short: green = the agent runs the plant (steady: the twin writes; blinking: shadow);
amber = something needs attention but the plant is running; red = the plant is in its
safe state (fast: a fault is active; steady: press reset).

The table above is generated from :data:`RULES` by :func:`markdown_table` and a test keeps
the two equal.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from agent.core.safety import SafetyMachine, State
from agent.model.profile import RecoveryPolicy

log = logging.getLogger(__name__)

STATES = ("starting", "normal", "degraded", "failsafe", "recovering")
MODES = ("shadow", "active")
LINKS = ("alive", "late", "lost")


@dataclass(frozen=True)
class Indication:
    """What the LEDs must show: the runtime's state, as the lower-case enum values.

    Raises ValueError at construction for a value outside :data:`STATES`, :data:`MODES`
    or :data:`LINKS`: that is a bug in the runtime's mapping, not operator input.
    """

    state: str
    mode: str
    link: str
    waiting_for_ack: bool
    safe_confirmed: bool = True

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("state", self.state, STATES),
            ("mode", self.mode, MODES),
            ("link", self.link, LINKS),
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
    acks: frozenset[bool]
    pattern: LedPattern
    meaning: str
    confirmed: frozenset[bool] = frozenset((False, True))  # safe set confirmed?

    def matches(self, ind: Indication) -> bool:
        return (
            ind.state in self.states
            and ind.mode in self.modes
            and ind.link in self.links
            and ind.waiting_for_ack in self.acks
            and ind.safe_confirmed in self.confirmed
        )


_ANY_MODE = frozenset(MODES)
_ANY_LINK = frozenset(LINKS)
_ANY_ACK = frozenset((False, True))
_OFF, _ON, _SLOW, _FAST = LedMode.OFF, LedMode.ON, LedMode.BLINK_SLOW, LedMode.BLINK_FAST


def _row(  # noqa: PLR0917 - positional args keep the table literal
    state: str,
    modes: frozenset[str] | str,
    links: frozenset[str] | tuple[str, ...],
    acks: frozenset[bool] | bool,
    green: LedMode,
    amber: LedMode,
    red: LedMode,
    meaning: str,
) -> Rule:
    return Rule(
        states=frozenset((state,)),
        modes=frozenset((modes,)) if isinstance(modes, str) else modes,
        links=frozenset(links),
        acks=frozenset((acks,)) if isinstance(acks, bool) else acks,
        pattern=LedPattern(green, amber, red),
        meaning=meaning,
    )


# fmt: off
RULES: tuple[Rule, ...] = (
    Rule(frozenset(STATES), _ANY_MODE, _ANY_LINK, _ANY_ACK, LedPattern(_OFF, _OFF, _FAST),
         "the safe set is not confirmed at the PLC: written again every tick",
         confirmed=frozenset((False,))),
    _row("failsafe", _ANY_MODE, _ANY_LINK, _ANY_ACK, _OFF, _OFF, _FAST,
         "FAILSAFE: safe values written, latched"),
    _row("recovering", _ANY_MODE, _ANY_LINK, True, _OFF, _OFF, _ON,
         "latched: hold reset (or `twinguard ack`)"),
    _row("recovering", _ANY_MODE, _ANY_LINK, False, _OFF, _SLOW, _OFF,
         "healthy, auto hold-off running"),
    _row("starting", _ANY_MODE, _ANY_LINK, _ANY_ACK, _OFF, _SLOW, _OFF,
         "starting, safe values held"),
    _row("degraded", "active", _ANY_LINK, _ANY_ACK, _ON, _ON, _OFF,
         "DEGRADED, twin in control"),
    _row("degraded", "shadow", _ANY_LINK, _ANY_ACK, _SLOW, _ON, _OFF,
         "DEGRADED, shadow mode"),
    _row("normal", "active", ("alive",), _ANY_ACK, _ON, _OFF, _OFF,
         "NORMAL, twin in control"),
    _row("normal", "shadow", ("alive",), _ANY_ACK, _SLOW, _OFF, _OFF,
         "NORMAL, shadow mode (twin advises)"),
    _row("normal", "active", ("late", "lost"), _ANY_ACK, _ON, _ON, _OFF,
         "NORMAL, twin heartbeat late"),
    _row("normal", "shadow", ("late", "lost"), _ANY_ACK, _SLOW, _ON, _OFF,
         "NORMAL, shadow, twin heartbeat late"),
)
# fmt: on

_FALLBACK = LedPattern(_OFF, _OFF, _FAST)


def pattern_for(ind: Indication) -> LedPattern:
    """The LED pattern for ``ind``: the first row of :data:`RULES` that matches.

    The table covers every valid indication (a test enumerates them); should a row ever be
    missing, the answer is the FAILSAFE pattern (red fast blink), never an exception.
    """
    for rule in RULES:
        if rule.matches(ind):
            return rule.pattern
    log.error("no LED rule for %s; showing the FAILSAFE pattern", ind)
    return _FALLBACK


def markdown_table() -> str:
    """:data:`RULES` as the Markdown table in this module's docstring (for the README)."""

    def cell(values: frozenset[str], order: tuple[str, ...]) -> str:
        if values == frozenset(order):
            return "any"
        return ", ".join(v for v in order if v in values)

    def ack_cell(acks: frozenset[bool]) -> str:
        if acks == _ANY_ACK:
            return "any"
        return "yes" if True in acks else "no"

    def confirmed_cell(confirmed: frozenset[bool]) -> str:
        if confirmed == _ANY_ACK:
            return "any"
        return "confirmed" if True in confirmed else "not confirmed"

    lines = [
        "| state | mode | link | ack | safe set | green | amber | red | meaning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in RULES:
        lines.append(
            f"| {cell(r.states, STATES)} | {cell(r.modes, MODES)} | {cell(r.links, LINKS)} "
            f"| {ack_cell(r.acks)} | {confirmed_cell(r.confirmed)} | {r.pattern.green.value} "
            f"| {r.pattern.amber.value} | {r.pattern.red.value} | {r.meaning} |"
        )
    return "\n".join(lines)


def indication(machine: SafetyMachine, link: str, recovery: RecoveryPolicy,
               safe_confirmed: bool = True) -> Indication:
    """What the LEDs should say for this safety state, mode, twin link and safe set."""
    waiting = machine.state is State.RECOVERING and recovery is RecoveryPolicy.MANUAL
    return Indication(machine.state.value, machine.mode.value, link, waiting, safe_confirmed)
