"""The operator's side of the runtime: status LEDs, reset button, status socket, systemd.

``OperatorPanel`` is a thin adapter the runtime calls at three points — ``start`` (once the
loop runs), ``after_tick`` (at the end of every complete tick) and ``close`` — plus
``show`` whenever the state may have changed between ticks (twin messages, timers, acks).

- LEDs and button use gpiozero with the pins of ``profile.board``; no pin, no device. A
  board without GPIO (a development machine: gpiozero finds no pin factory) runs without
  them, with one warning; ``GPIOZERO_PIN_FACTORY=mock`` gives gpiozero's MockFactory.
- The button's long press and ``twinguard ack`` both end in the runtime's ack coroutine.
- systemd (``Type=notify``): READY=1 once the loop runs (even in STARTING: holding the
  plant safe *is* running), WATCHDOG=1 only from ``after_tick`` — a hung loop stops it —
  at most every ``WATCHDOG_MIN_INTERVAL_S``; STATUS= on every change of state/mode/link.
- The status socket (``agent.io.status_socket``) answers ``twinguard status`` / ``twinguard ack``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.core.leds import Indication
from agent.io.panel.button import ResetButton
from agent.io.panel.leds import StatusLeds
from agent.io.panel.sdnotify import Notifier
from agent.io.status_client import socket_path
from agent.io.status_socket import DrillHandler, StatusServer
from agent.model.errors import GpioError, StatusSocketInUse
from agent.model.profile import Profile
from agent.model.status import StatusSnapshot

log = logging.getLogger(__name__)

WATCHDOG_MIN_INTERVAL_S = 0.5

Ack = Callable[[str, str], Awaitable[tuple[bool, str]]]


def gpio_present(dev: Path = Path("/dev")) -> bool:
    """GPIO can be driven here: a GPIO character device exists, or gpiozero is told which
    pin factory to use (``GPIOZERO_PIN_FACTORY``, e.g. ``mock`` in tests), or a test set one."""
    if os.environ.get("GPIOZERO_PIN_FACTORY") or any(dev.glob("gpiochip*")):
        return True
    gpiozero = sys.modules.get("gpiozero")  # already loaded: a caller chose a pin factory
    return gpiozero is not None and gpiozero.Device.pin_factory is not None


class OperatorPanel:
    """LEDs, button, sd_notify and the status socket of one agent (see module docstring)."""

    def __init__(self, profile: Profile, state_dir: Any, snapshot: Callable[[], StatusSnapshot],
                 ack: Ack, pin_factory: Any = None, *,
                 drill: DrillHandler | None = None) -> None:
        self.profile = profile
        self._snapshot = snapshot
        self._ack = ack
        self._pin_factory = pin_factory
        self.leds: StatusLeds | None = None
        self.button: ResetButton | None = None
        self.notifier = Notifier()
        self.server = StatusServer(socket_path(state_dir), snapshot, ack, drill=drill)
        self._shown: Indication | None = None
        self._last_watchdog: float | None = None

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Claim the GPIO pins, open the status socket, tell systemd the agent is up.

        Raises StatusSocketInUse if another agent serves this state directory (two agents
        must never guard one plant from one state directory).
        """
        if gpio_present():
            with warnings.catch_warnings():  # one warning of ours below, not gpiozero's four
                from gpiozero import PinFactoryFallback  # noqa: PLC0415 - only with GPIO

                warnings.simplefilter("ignore", PinFactoryFallback)
                self._claim_gpio(loop)
        elif self._wants_gpio():
            log.warning("no GPIO on this machine (no /dev/gpiochip*): status LEDs and reset "
                        "button disabled")
        try:
            await self.server.start()
        except StatusSocketInUse:
            raise
        except OSError as exc:
            log.error("status socket unavailable (%s): status and console ack disabled", exc)
        self.notifier.ready("starting")

    def _wants_gpio(self) -> bool:
        b = self.profile.board
        return any(p is not None for p in (b.led_green, b.led_amber, b.led_red, b.reset_button))

    def _claim_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        board = self.profile.board
        try:
            self.leds = StatusLeds(board.led_green, board.led_amber, board.led_red,
                                   pin_factory=self._pin_factory)
        except GpioError as exc:
            log.warning("status LEDs unavailable: %s", exc)
        if board.reset_button is not None:
            try:
                self.button = ResetButton.for_loop(
                    board.reset_button, board.reset_hold_s, loop, self._button_pressed,
                    pin_factory=self._pin_factory)
            except GpioError as exc:
                log.warning("reset button unavailable: %s", exc)

    def _button_pressed(self) -> None:
        async def press() -> None:
            accepted, reason = await self._ack("button", f"gpio{self.profile.board.reset_button}")
            log.info("reset button: %s", "acknowledged" if accepted else f"refused: {reason}")

        task = asyncio.get_running_loop().create_task(press(), name="reset button")
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def show(self, ind: Indication) -> None:
        """Update LEDs and systemd's STATUS= when the indication changed."""
        if ind == self._shown:
            return
        self._shown = ind
        if self.leds is not None:
            self.leds.show(ind)
        text = f"{ind.state} ({ind.mode}), twin {ind.link}"
        if ind.waiting_for_ack:
            text += ", waiting for an acknowledgement"
        self.notifier.status(text)

    def after_tick(self, now: float, ind: Indication) -> None:
        """End of a complete tick: the only place WATCHDOG=1 is sent from."""
        self.show(ind)
        if self._last_watchdog is None or now - self._last_watchdog >= WATCHDOG_MIN_INTERVAL_S:
            self._last_watchdog = now
            self.notifier.watchdog()

    async def close(self) -> None:
        self.notifier.stopping("stopping")
        if self.button is not None:
            self.button.close()
        if self.leds is not None:
            self.leds.close()  # all dark: the agent is not running
        await self.server.close()
        self.notifier.close()
