"""The reset button on gpiozero's MockFactory: press by driving the mock pin low.

Waits are on events with generous timeouts, never on fixed timing assertions: a long press
is held well past ``hold_s`` (and the test waits for the callback), a short press is
released well before it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory, MockPin

from agent.io.panel.button import ResetButton, call_in_loop
from agent.model.errors import GpioError

PIN = 23
HOLD_S = 0.2


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def mock_pin(factory: MockFactory) -> MockPin:
    p: MockPin = factory.pin(PIN)
    return p


class Presses:
    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.count += 1
        self.threads.append(threading.current_thread().name)
        self.event.set()


def long_press(p: MockPin, presses: Presses) -> None:
    p.drive_low()
    assert presses.event.wait(5), "long press never fired"
    time.sleep(HOLD_S * 1.5)  # keep holding: must not fire again
    p.drive_high()


@pytest.mark.timeout(10)
def test_long_press_fires_exactly_once(factory: MockFactory) -> None:
    presses = Presses()
    with ResetButton(PIN, HOLD_S, presses, pin_factory=factory) as button:
        p = mock_pin(factory)
        assert p.pull == "up" and p.state is True  # idle high through the pull-up
        long_press(p, presses)
        assert presses.count == 1
        assert button.long_presses == 1 and button.short_presses == 0
        assert presses.threads[0] != threading.main_thread().name  # gpiozero's thread


@pytest.mark.timeout(10)
def test_short_press_does_nothing_but_is_counted(factory: MockFactory) -> None:
    presses = Presses()
    with ResetButton(PIN, 1.0, presses, pin_factory=factory) as button:
        p = mock_pin(factory)
        for _ in range(3):
            p.drive_low()
            p.drive_high()  # released at once, far below hold_s
        time.sleep(0.3)
        assert presses.count == 0
        assert button.short_presses == 3 and button.long_presses == 0


@pytest.mark.timeout(10)
def test_each_long_press_fires_once(factory: MockFactory) -> None:
    presses = Presses()
    with ResetButton(PIN, HOLD_S, presses, pin_factory=factory) as button:
        p = mock_pin(factory)
        for n in (1, 2):
            presses.event.clear()
            long_press(p, presses)
            assert presses.count == n
        assert button.long_presses == 2 and button.short_presses == 0


class StuckLowPin(MockPin):  # type: ignore[misc]
    """A pin whose button is already down when configured: the pull-up cannot lift it."""

    def _set_pull(self, value: str) -> None:
        self._pull = value


@pytest.mark.timeout(10)
def test_button_held_at_start_never_acknowledges(factory: MockFactory) -> None:
    presses = Presses()
    p = factory.pin(PIN, pin_class=StuckLowPin)
    assert p.state is False  # stuck, shorted, or held through a reboot
    with ResetButton(PIN, HOLD_S, presses, pin_factory=factory) as button:
        assert button.is_pressed
        assert not presses.event.wait(HOLD_S * 3)
        p.drive_high()
        assert button.short_presses == 0  # a release of an unseen press is no press
        long_press(p, presses)  # a fresh press does work
        assert presses.count == 1


@pytest.mark.timeout(10)
def test_callback_error_is_counted_and_button_keeps_working(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    presses = Presses()

    def flaky() -> None:
        presses()
        if presses.count == 1:
            raise RuntimeError("runtime not ready")

    with ResetButton(PIN, HOLD_S, flaky, pin_factory=factory) as button:
        p = mock_pin(factory)
        long_press(p, presses)
        presses.event.clear()
        long_press(p, presses)
        assert presses.count == 2
        assert button.callback_errors == 1
        assert "reset button callback failed" in caplog.text


@pytest.mark.timeout(10)
def test_for_loop_runs_callback_on_the_event_loop_thread(factory: MockFactory) -> None:
    async def scenario() -> tuple[int, threading.Thread]:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[threading.Thread] = loop.create_future()

        def on_ack() -> None:  # must run on the loop's thread
            fired.set_result(threading.current_thread())

        with ResetButton.for_loop(PIN, HOLD_S, loop, on_ack, pin_factory=factory) as b:
            p = mock_pin(factory)
            p.drive_low()
            thread = await asyncio.wait_for(fired, 5)
            p.drive_high()
            return b.long_presses, thread

    count, thread = asyncio.run(scenario())
    assert count == 1
    assert thread is threading.main_thread()


def test_call_in_loop_after_loop_closed_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    calls: list[int] = []
    call_in_loop(loop, lambda: calls.append(1))()  # must not raise
    assert calls == []
    assert "event loop is closed" in caplog.text


def test_close_releases_the_pin(factory: MockFactory) -> None:
    button = ResetButton(PIN, HOLD_S, Presses(), pin_factory=factory)
    button.close()
    button.close()
    Button(PIN, pin_factory=factory).close()


def test_bad_arguments(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="hold_s"):
        ResetButton(PIN, 0, Presses(), pin_factory=factory)
    with pytest.raises(ValueError, match="bounce_s"):
        ResetButton(PIN, 1.0, Presses(), pin_factory=factory, bounce_s=-1)
    taken = Button(PIN, pin_factory=factory)
    with pytest.raises(GpioError, match="pin 23"):
        ResetButton(PIN, 1.0, Presses(), pin_factory=factory)
    taken.close()
