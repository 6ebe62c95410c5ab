"""The three status LEDs: what the operator sees, as one literal table, and a thin adapter.

The runtime maps its own states onto :class:`Indication` (plain lower-case strings, the
``.value`` of the safety/heartbeat enums) and calls :meth:`StatusLeds.show` once per tick;
:func:`pattern_for` is pure and decides what the three LEDs do. The first matching row of
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
(:meth:`StatusLeds.close`). If the process dies, blinking stops at once (it runs on the
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
import types
from dataclasses import dataclass
from typing import Any

from agent.errors import TwinguardError

log = logging.getLogger(__name__)

STATES = ("starting", "normal", "degraded", "failsafe", "recovering")
MODES = ("shadow", "active")
LINKS = ("alive", "late", "lost")


class GpioError(TwinguardError, OSError):
    """A GPIO pin could not be claimed (invalid number, already in use, no GPIO driver)."""


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


class StatusLeds:
    """The three LEDs on GPIO pins (BCM numbers from the profile's ``[board]``).

    A pin of None means that LED is not fitted; it is skipped. ``pin_factory`` is a gpiozero
    pin factory (None: gpiozero's default; tests pass a ``MockFactory``). Blinking runs on
    gpiozero's own background thread per LED, so the caller only calls :meth:`show` when
    the state may have changed (once per tick is fine: an unchanged pattern costs nothing,
    and an LED whose own mode did not change is not touched, so its blink keeps its phase).

    Raises :class:`GpioError` from the constructor when a pin cannot be claimed (pins
    claimed before the failure are released again). :meth:`show` and :meth:`close` never
    raise: a failing LED is an indication problem, not a reason to stop the control loop;
    failures are counted in ``errors`` and logged (the first at ERROR, the rest at DEBUG).
    Call :meth:`show` and :meth:`close` from one thread (the runtime's loop).
    """

    def __init__(
        self,
        green_pin: int | None,
        amber_pin: int | None,
        red_pin: int | None,
        pin_factory: Any = None,
    ) -> None:
        self.errors = 0
        self._leds: dict[str, Any] = {}
        self._modes: dict[str, LedMode] = {}
        self._pattern: LedPattern | None = None
        self._closed = False
        from gpiozero import LED  # noqa: PLC0415 - only where there are LEDs to drive

        try:
            for name, pin in (("green", green_pin), ("amber", amber_pin), ("red", red_pin)):
                if pin is None:
                    continue
                self._leds[name] = LED(pin, initial_value=False, pin_factory=pin_factory)
                self._modes[name] = LedMode.OFF
        except Exception as exc:
            for led in reversed(list(self._leds.values())):
                led.close()
            raise GpioError(
                f"cannot claim status LED pins green={green_pin} amber={amber_pin} "
                f"red={red_pin}: {exc}"
            ) from exc

    @property
    def pattern(self) -> LedPattern | None:
        """The pattern last applied (None before the first :meth:`show`)."""
        return self._pattern

    def show(self, ind: Indication) -> LedPattern:
        """Drive the LEDs to :func:`pattern_for` ``(ind)``; returns that pattern. Never raises."""
        pattern = pattern_for(ind)
        if self._closed or pattern == self._pattern:
            return pattern
        log.debug("LEDs %s -> %s for %s", self._pattern, pattern, ind)
        self._pattern = pattern
        for name, mode in (
            ("green", pattern.green),
            ("amber", pattern.amber),
            ("red", pattern.red),
        ):
            led = self._leds.get(name)
            if led is None or self._modes[name] is mode:
                continue
            try:
                _apply(led, mode)
            except Exception:
                self._fail("cannot drive the %s LED to %s", name, mode.value)
                continue
            self._modes[name] = mode
        return pattern

    def close(self) -> None:
        """Turn every LED off and release the pins. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for name, led in self._leds.items():
            try:
                led.off()
                led.close()
            except Exception:
                self._fail("cannot turn off/release the %s LED", name)

    def __enter__(self) -> StatusLeds:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def _fail(self, msg: str, *args: object) -> None:
        self.errors += 1
        level = logging.ERROR if self.errors == 1 else logging.DEBUG
        log.log(level, msg, *args, exc_info=True)


def _apply(led: Any, mode: LedMode) -> None:
    half = mode.half_period_s
    if half is not None:
        led.blink(on_time=half, off_time=half, background=True)
    elif mode is LedMode.ON:
        led.on()
    else:
        led.off()
