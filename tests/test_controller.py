"""The decision core composed (sans-IO): readings + heartbeats in, decisions out."""

from __future__ import annotations

import pytest

from agent.controller import Controller, Decision
from agent.profile.load import load_profile
from agent.readings import Quality, Reading
from agent.safety import Mode, State
from agent.twin.messages import Heartbeat, Recommend

pytestmark = pytest.mark.timeout(10)

PROFILE = load_profile("sim-tank")
VALUES = {"temp_a": 60.0, "temp_b": 60.1, "temp_c": 59.9, "pressure_a": 2.0, "pressure_b": 2.01}


def readings(now: float) -> dict[str, Reading]:
    return {k: Reading(k, None, v, Quality.GOOD, now) for k, v in VALUES.items()}


def running(mode: Mode) -> tuple[Controller, float]:
    """A controller past STARTING: PLC fine, twin alive (3 heartbeats), sensors good."""
    c = Controller(PROFILE, mode)
    c.written(c.start(0.0).writes)
    now = 0.0
    for seq in range(1, 4):
        now += 0.1
        c.on_heartbeat(Heartbeat(1, seq, True), now)
    c.tick(readings(now), now, plc_reachable=True, plc_watchdog_ok=True)
    assert c.state is State.NORMAL
    return c, now


def step(c: Controller, now: float, seq: int) -> Decision:
    c.on_heartbeat(Heartbeat(1, seq, True), now)
    d = c.tick(readings(now), now, plc_reachable=True, plc_watchdog_ok=True)
    c.written(d.writes)
    return d


def test_takeover_starts_from_what_the_plc_holds_not_from_the_last_write() -> None:
    c, now = running(Mode.ACTIVE)
    assert c.last_written["heater_power"] == 0.0  # the safe start
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now).accepted
    d = step(c, now + 0.05, 4)
    assert d.writes == {} and c.needs_seed, "no write before the PLC's values are known"
    c.seed({"heater_power": 45.0, "cooling_valve": 15.0})  # the operator had moved them
    writes = [step(c, now + 0.05 * i, 4 + i).writes for i in range(2, 8)]
    heater = [w["heater_power"] for w in writes if "heater_power" in w]
    assert heater, "the recommendation is written"
    assert all(45.0 <= h <= 50.0 for h in heater), heater  # from 45 up, never a dip to 0
    assert heater[0] <= 45.0 + PROFILE.output("heater_power").max_rate * 0.06  # rate-limited


def test_shadow_mode_never_writes_a_recommendation() -> None:
    c, now = running(Mode.SHADOW)
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now).accepted
    for i in range(1, 20):
        assert step(c, now + 0.05 * i, 3 + i).writes == {}
    assert not c.needs_seed


def test_losing_the_twin_while_active_writes_the_safe_set() -> None:
    c, now = running(Mode.ACTIVE)
    c.seed({"heater_power": 40.0, "cooling_valve": 20.0})
    c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now)
    step(c, now + 0.05, 4)
    d = c.on_timer(now + 0.05 + PROFILE.timing.heartbeat_timeout_s)
    assert c.state is State.FAILSAFE
    assert d.writes["heater_power"] == 0.0
    assert c.held is None or not c.may_write()


def tick(c: Controller, now: float, *, plc: bool = True) -> Decision:
    """One poll with the twin's heartbeat just before it (the twin stays ALIVE)."""
    c.on_heartbeat(Heartbeat(1, c.monitor.counters.accepted + 1, True), now)
    return c.tick(readings(now), now, plc_reachable=plc, plc_watchdog_ok=True)


def test_a_safe_set_that_was_not_acknowledged_is_written_again_every_tick() -> None:
    c, now = running(Mode.SHADOW)
    safe = {"heater_power": 0.0, "cooling_valve": 100.0}
    assert c.last_written == safe, "the safe start was acknowledged: the field-trial case"
    d = tick(c, now + 0.05, plc=False)  # the PLC stops answering: FAILSAFE
    assert c.state is State.FAILSAFE and d.safe and d.writes == safe
    for i in range(2, 12):  # the writes fail (nothing acknowledged): again, every tick
        d = tick(c, now + 0.05 * i, plc=i > 6)  # the PLC answers again from tick 7 on
        assert d.writes == safe and d.safe, i
        assert c.state is State.FAILSAFE, "the latch holds while the safe set is unconfirmed"
        assert c.unconfirmed == safe and c.unconfirmed_since == now + 0.05
    c.written(safe, confirmed=set(), now=now + 0.6)  # acknowledged, but read back different
    d = tick(c, now + 0.65)
    assert d.writes == safe and c.state is State.FAILSAFE
    c.written(safe, confirmed={"heater_power", "cooling_valve"}, now=now + 0.7)
    assert c.unconfirmed == {} and c.unconfirmed_since is None
    d = tick(c, now + 0.75)
    assert d.writes == {} and c.state is State.RECOVERING


def test_a_safe_value_acknowledged_after_it_was_replanned_is_not_confirmed() -> None:
    c, now = running(Mode.SHADOW)
    tick(c, now + 0.05, plc=False)
    c.unconfirmed["cooling_valve"] = 90.0  # as if a newer plan asked for another value
    c.written({"heater_power": 0.0, "cooling_valve": 100.0}, now=now + 0.1)
    assert c.unconfirmed == {"cooling_valve": 90.0}


def test_an_unconfirmed_refresh_keeps_recovering_from_completing() -> None:
    c, now = running(Mode.SHADOW)
    c.refresh_s = 1.0  # a refresh falls inside the hold-off
    d = tick(c, now + 0.05, plc=False)
    c.written(d.writes, now=now + 0.05)
    tick(c, now + 0.1)
    assert c.state is State.RECOVERING
    holdoff = PROFILE.recovery.holdoff_s
    t = now + 0.1 + c.refresh_s  # the periodic refresh of the safe set is due ...
    d = tick(c, t)
    assert d.safe and d.writes  # ... and never acknowledged
    for i in range(1, 10):
        d = tick(c, t + holdoff * i / 3)
        assert d.writes and c.state is State.RECOVERING, "no recovery while unconfirmed"
    c.written(d.writes, now=t + holdoff * 4)
    d = tick(c, t + holdoff * 4)
    assert c.state is State.NORMAL
