"""The local reset button: a deliberate long press acknowledges a latched trip.

Wiring: a normally-open push button between the GPIO pin (BCM number from the profile's
``board.reset_button``) and ground; the pin's internal pull-up holds it high, a press pulls
it low::

    3V3 ──[pull-up]──┬── GPIO n
                     │
                    [ ]  push button (normally open)
                     │
    GND ─────────────┘

Only a press held for ``hold_s`` (``board.reset_hold_s``) counts, once per press however
long it is held: a tap, a bounce or a brushed button does nothing but bump
``short_presses``. A button already pressed when the agent starts (stuck, shorted, or held
through a reboot) never acknowledges: it must be released and pressed again.

Threads: gpiozero reports the press on its own background thread, so ``on_long_press``
runs there. The runtime's event loop is not thread-safe: hand the press over with
:func:`call_in_loop` (``loop.call_soon_threadsafe``), or build the button with
:meth:`ResetButton.for_loop`. Whether an ack is acceptable (state RECOVERING, waiting for
an ack) is for the safety state machine to decide, never for this module.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable
from typing import Any

from agent.io.closing import Closing
from agent.model.errors import GpioError

log = logging.getLogger(__name__)

DEFAULT_BOUNCE_S = 0.05


class _Press(enum.Enum):
    UP = "up"  # released, or never seen pressed (e.g. already down at start)
    DOWN = "down"  # pressed, not yet held for hold_s
    HELD = "held"  # held for hold_s: the long press has fired


def call_in_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> Callable[[], None]:
    """A function, callable from any thread, that schedules ``callback`` on ``loop``.

    If the loop is already closed (agent shutting down) the press is logged and dropped;
    the returned function never raises.
    """

    def handover() -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # loop closed
            log.warning("reset button pressed while the event loop is closed; ignored")

    return handover


class ResetButton(Closing):
    """A push button on ``pin`` that calls ``on_long_press()`` after ``hold_s`` held down.

    ``on_long_press`` runs on gpiozero's thread (see the module docstring) and must be quick
    and thread-safe; an exception from it is logged and counted in ``callback_errors`` and
    the button keeps working. ``pin_factory`` is a gpiozero pin factory (None: gpiozero's
    default; tests pass a ``MockFactory``).

    Raises ValueError for ``hold_s`` <= 0 or a negative ``bounce_s`` (a zero hold would make
    every tap an ack), and :class:`~agent.model.errors.GpioError` when the pin cannot be claimed.
    """

    def __init__(
        self,
        pin: int,
        hold_s: float,
        on_long_press: Callable[[], None],
        pin_factory: Any = None,
        *,
        bounce_s: float | None = DEFAULT_BOUNCE_S,
    ) -> None:
        if not hold_s > 0:
            raise ValueError(f"reset button hold_s must be > 0, got {hold_s!r}")
        if bounce_s is not None and bounce_s < 0:
            raise ValueError(f"reset button bounce_s must be >= 0, got {bounce_s!r}")
        self._on_long_press = on_long_press
        self._lock = threading.Lock()
        self._press = _Press.UP
        self.long_presses = 0
        self.short_presses = 0
        self.callback_errors = 0
        from gpiozero import Button  # noqa: PLC0415 - only where there is a button

        try:
            self._button: Any = Button(
                pin,
                pull_up=True,
                bounce_time=bounce_s,
                hold_time=hold_s,
                hold_repeat=False,
                pin_factory=pin_factory,
            )
        except Exception as exc:
            raise GpioError(f"cannot claim reset button pin {pin}: {exc}") from exc
        self._button.when_pressed = self._pressed
        self._button.when_held = self._held
        self._button.when_released = self._released
        self._closed = False

    @classmethod
    def for_loop(
        cls,
        pin: int,
        hold_s: float,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[], None],
        pin_factory: Any = None,
        *,
        bounce_s: float | None = DEFAULT_BOUNCE_S,
    ) -> ResetButton:
        """A button whose long press runs ``callback`` on ``loop`` (via :func:`call_in_loop`)."""
        return cls(pin, hold_s, call_in_loop(loop, callback), pin_factory, bounce_s=bounce_s)

    @property
    def is_pressed(self) -> bool:
        """True while the button is down."""
        return bool(self._button.is_pressed)

    def close(self) -> None:
        """Stop watching the button and release the pin. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._button.when_pressed = None
        self._button.when_held = None
        self._button.when_released = None
        self._button.close()

    # --- gpiozero callbacks (gpiozero's threads) ----------------------------------------

    def _pressed(self) -> None:
        with self._lock:
            self._press = _Press.DOWN

    def _held(self) -> None:
        with self._lock:
            if self._press is not _Press.DOWN:  # fire once per press, only for a seen press
                return
            self._press = _Press.HELD
            self.long_presses += 1
        log.info("reset button held for %.1f s: acknowledging", self._button.hold_time)
        try:
            self._on_long_press()
        except Exception:
            with self._lock:
                self.callback_errors += 1
            log.exception("reset button callback failed")

    def _released(self) -> None:
        with self._lock:
            short = self._press is _Press.DOWN
            self._press = _Press.UP
            if short:
                self.short_presses += 1
        if short:
            log.info("reset button released before %.1f s: ignored", self._button.hold_time)
