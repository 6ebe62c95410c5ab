"""The three status LEDs on GPIO pins: the thin gpiozero adapter of ``agent.core.leds``.

What each LED does for each state is the rule table in :mod:`agent.core.leds`; this module
only claims the pins and drives them (gpiozero's own background thread blinks them).
"""

from __future__ import annotations

import logging
from typing import Any

from agent.core.leds import Indication, LedMode, LedPattern, pattern_for
from agent.io.closing import Closing
from agent.model.errors import GpioError

log = logging.getLogger(__name__)


class StatusLeds(Closing):
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
