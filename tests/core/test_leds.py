"""Status LEDs: the pure table cell by cell, and the adapter on gpiozero's MockFactory.

The adapter test drives one indication of every distinct pattern at once, each on its own
MockFactory, lets the blink threads run for about a second, then classifies
each pin's recorded history (steady off, steady on, ~0.5 s or ~0.125 s half-periods) with
wide margins, so a loaded machine does not make it flaky.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPin

import agent.core.leds
from agent.core.leds import (
    AUTHORITIES,
    LINKS,
    MODES,
    RULES,
    STATES,
    Indication,
    LedMode,
    LedPattern,
    markdown_table,
    pattern_for,
)
from agent.io.panel.leds import StatusLeds
from agent.model.errors import GpioError

OFF, ON, SLOW, FAST = LedMode.OFF, LedMode.ON, LedMode.BLINK_SLOW, LedMode.BLINK_FAST
GREEN, AMBER, RED = 17, 27, 22

ALL = [
    Indication(s, m, lk, a, c, au)
    for s, m, lk, a, c, au in itertools.product(STATES, MODES, LINKS, (False, True),
                                                (True, False), AUTHORITIES)
]


def expected(ind: Indication) -> LedPattern:
    """The operator's rules restated independently of the RULES table: red = the safe
    state; green = the plant runs (steady: the twin decides, slow: local control, fast: the
    twin is not heard); amber = attention (on: a warning, slow: waiting, fast: press reset)."""
    if ind.state == "failsafe" or not ind.safe_confirmed:
        return LedPattern(OFF, OFF, FAST)
    if ind.state == "recovering":
        return LedPattern(OFF, OFF, ON) if ind.waiting_for_ack else LedPattern(OFF, SLOW, OFF)
    if ind.state == "starting":
        return LedPattern(OFF, SLOW, OFF)
    if ind.state == "degraded":
        return LedPattern(SLOW, ON, OFF)
    if ind.authority == "remote":
        return LedPattern(ON, OFF if ind.link == "alive" else ON, OFF)
    if ind.authority == "returning":
        return LedPattern(SLOW, FAST if ind.waiting_for_ack else SLOW, OFF)
    if ind.link in ("late", "lost"):
        return LedPattern(FAST, ON, OFF)
    return LedPattern(SLOW, OFF, OFF)


# the adapter test shows one indication of every distinct pattern (blink threads are costly)
ONE_PER_PATTERN = list({expected(ind): ind for ind in ALL}.values())


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def pin(factory: MockFactory, n: int) -> MockPin:
    p: MockPin = factory.pin(n)
    return p


@pytest.mark.parametrize("ind", ALL, ids=str)
def test_pattern_for_every_combination(ind: Indication) -> None:
    assert pattern_for(ind) == expected(ind)


def test_every_combination_matches_exactly_the_first_rule_that_is_meant() -> None:
    # every indication is covered by some rule (no fallback needed) ...
    for ind in ALL:
        assert any(r.matches(ind) for r in RULES), ind
    # ... and no rule is dead (shadowed entirely by earlier rules)
    for i, rule in enumerate(RULES):
        firsts = [
            ind for ind in ALL if rule.matches(ind) and not any(r.matches(ind) for r in RULES[:i])
        ]
        assert firsts, f"rule {i} ({rule.meaning}) never applies"


def test_red_is_lit_exactly_when_the_plant_is_in_its_safe_state_or_not_confirmed() -> None:
    for ind in ALL:
        red = pattern_for(ind).red
        safe = ind.state == "failsafe" or (ind.state == "recovering" and ind.waiting_for_ack)
        assert (red is not OFF) == (safe or not ind.safe_confirmed), ind


def test_missing_rule_falls_back_to_failsafe_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent.core.leds, "RULES", ())
    assert pattern_for(Indication("normal", "active", "alive", False)) == LedPattern(OFF, OFF, FAST)


@pytest.mark.parametrize(
    ("field", "value"), [("state", "NORMAL"), ("mode", "auto"), ("link", "dead")]
)
def test_unknown_values_are_rejected(field: str, value: str) -> None:
    kw: dict[str, str] = {"state": "normal", "mode": "shadow", "link": "alive"}
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        Indication(kw["state"], kw["mode"], kw["link"], False)


def test_docstring_table_is_the_rules_table() -> None:
    assert agent.core.leds.__doc__ is not None
    assert markdown_table() in agent.core.leds.__doc__
    assert len(markdown_table().splitlines()) == len(RULES) + 2


def test_the_readme_shows_the_rules_table() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    assert markdown_table() in readme.read_text()


def classify(p: MockPin) -> LedMode:
    """Steady or blinking, and how fast, from the pin's recorded (delta, state) history."""
    changes = p.states[1:]  # states[0] is the initial state
    if len(changes) <= 1:
        return ON if p.state else OFF
    halves = [s.timestamp for s in changes[1:]]  # time between consecutive toggles
    half = statistics.median(halves)
    assert 0.05 < half < 0.9, f"implausible blink half-period {half:.3f} s: {p.states}"
    return SLOW if half > 0.3 else FAST


@pytest.mark.timeout(20)
def test_adapter_drives_every_pattern() -> None:
    assert len(ONE_PER_PATTERN) >= 10
    factories = [MockFactory() for _ in ONE_PER_PATTERN]
    leds = [StatusLeds(GREEN, AMBER, RED, pin_factory=f) for f in factories]
    try:
        for f in factories:
            for n in (GREEN, AMBER, RED):
                pin(f, n).clear_states()
        for led, ind in zip(leds, ONE_PER_PATTERN, strict=True):
            led.show(ind)
        time.sleep(1.15)  # >= 2 slow half-periods, ~9 fast ones
        for f, ind in zip(factories, ONE_PER_PATTERN, strict=True):
            seen = LedPattern(
                classify(pin(f, GREEN)), classify(pin(f, AMBER)), classify(pin(f, RED))
            )
            assert seen == expected(ind), ind
    finally:
        for led in leds:
            led.close()
    for f in factories:
        for n in (GREEN, AMBER, RED):
            assert pin(f, n).state is False


def test_unchanged_pattern_is_not_reapplied(factory: MockFactory) -> None:
    with StatusLeds(GREEN, AMBER, RED, pin_factory=factory) as leds:
        leds.show(Indication("normal", "active", "alive", False))
        g, a = pin(factory, GREEN), pin(factory, AMBER)
        assert (g.state, a.state) == (True, False)
        g.clear_states()
        for _ in range(5):
            leds.show(Indication("normal", "active", "alive", False))
        # only amber changes: green, steady on, must not be touched (no flicker)
        leds.show(Indication("normal", "active", "late", False))
        assert a.state is True
        assert [s.state for s in g.states] == [True]


def test_absent_leds_are_skipped(factory: MockFactory) -> None:
    with StatusLeds(None, None, RED, pin_factory=factory) as leds:
        assert leds.show(Indication("recovering", "shadow", "alive", True)).red is ON
        assert pin(factory, RED).state is True
        leds.show(Indication("normal", "active", "alive", False))
        assert pin(factory, RED).state is False
        assert leds.errors == 0


def test_close_turns_off_releases_pins_and_is_idempotent(factory: MockFactory) -> None:
    leds = StatusLeds(GREEN, AMBER, RED, pin_factory=factory)
    leds.show(Indication("degraded", "active", "late", False))
    assert pin(factory, GREEN).state and pin(factory, AMBER).state
    leds.close()
    leds.close()
    assert not any(pin(factory, n).state for n in (GREEN, AMBER, RED))
    leds.show(Indication("failsafe", "active", "lost", False))  # after close: no effect
    assert not pin(factory, RED).state
    again = LED(GREEN, pin_factory=factory)  # the pin was released
    again.close()


def test_pin_conflict_is_a_clear_error_and_releases_what_was_claimed(
    factory: MockFactory,
) -> None:
    with pytest.raises(GpioError, match="green=17 amber=17"):
        StatusLeds(GREEN, GREEN, RED, pin_factory=factory)
    LED(GREEN, pin_factory=factory).close()  # the first claim was undone


def test_driver_failure_is_counted_not_raised(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    leds = StatusLeds(GREEN, AMBER, RED, pin_factory=factory)
    broken = pin(factory, AMBER)

    def fail(value: bool) -> None:
        raise OSError("gpiochip gone")

    broken._set_state = fail
    for _ in range(3):
        leds.show(Indication("normal", "active", "late", False))  # amber on: fails
        leds.show(Indication("normal", "active", "alive", False))
    assert pin(factory, GREEN).state is True
    assert leds.errors == 3
    assert sum(r.levelname == "ERROR" for r in caplog.records) == 1
    leds.close()
