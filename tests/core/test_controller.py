"""The decision core composed (sans-IO): readings + heartbeats in, decisions out.

Recommendations die with the twin session that sent them (issue 10, item 5): each of the
four drop causes -- heartbeat loss (silence, unhealthy, bye, disconnect), an epoch change,
the plant leaving NORMAL, a mode change -- is made to happen while one is being written,
and what the controller writes afterwards (when it writes again at all) is checked."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from agent.config.profile.load import load_profile
from agent.core.controller import Controller, Decision
from agent.core.heartbeat import LinkState
from agent.core.recommend import DropCause, Reason
from agent.core.safety import State
from agent.model.messages import Bye, Heartbeat, Origin, Recommend
from agent.model.mode import Mode
from agent.model.readings import Quality, Reading

pytestmark = pytest.mark.timeout(10)

PROFILE = load_profile("sim-tank")
VALUES = {"temp_a": 60.0, "temp_b": 60.1, "temp_c": 59.9, "pressure_a": 2.0, "pressure_b": 2.01}
ORIGIN = Origin(session=1, epoch=1)  # the link session the heartbeats below come on


def readings(now: float, bad: frozenset[str] = frozenset()) -> dict[str, Reading]:
    """Good readings that wobble a little (never "stuck"); the ``bad`` ones BAD."""
    wobble = 0.05 * math.sin(7.0 * now)
    return {k: Reading(k, None, v + wobble, Quality.BAD if k in bad else Quality.GOOD, now)
            for k, v in VALUES.items()}


def running(mode: Mode) -> tuple[Controller, float]:
    """A controller past STARTING: PLC fine, twin alive (3 heartbeats), sensors good."""
    c = Controller(PROFILE, mode)
    c.written(c.start(0.0).writes)
    c.on_session(ORIGIN)
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
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN).accepted
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
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN).accepted
    for i in range(1, 20):
        assert step(c, now + 0.05 * i, 3 + i).writes == {}
    assert not c.needs_seed


def test_losing_the_twin_while_active_writes_the_safe_set() -> None:
    c, now = running(Mode.ACTIVE)
    c.seed({"heater_power": 40.0, "cooling_valve": 20.0})
    c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN)
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

# --- recommendations die with the session that sent them ---------------------------------

class Bench:
    """A running controller driven tick by tick (50 ms), its writes applied as acknowledged.

    Active mode, seeded from the PLC, and one recommendation ``heater_power = 50 %`` of
    the session ``ORIGIN`` being written (ramping up at 20 %/s from 0)."""

    def __init__(self, mode: Mode = Mode.ACTIVE) -> None:
        self.c, self.now = running(mode)
        self.seq = 3
        self.epoch = 1
        self.bad: frozenset[str] = frozenset()
        self.heater: list[float] = []  # every heater value written, in order
        self.c.seed({"heater_power": 0.0, "cooling_valve": 20.0})
        verdict = self.c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), self.now,
                                      ORIGIN)
        assert verdict.accepted

    def tick(self, *, heartbeat: bool = True) -> Decision:
        self.now += 0.05
        if heartbeat:
            self.seq += 1
            self.apply(self.c.on_heartbeat(Heartbeat(self.epoch, self.seq, True), self.now))
        self.apply(self.c.on_timer(self.now))
        d = self.c.tick(readings(self.now, self.bad), self.now, plc_reachable=True,
                        plc_watchdog_ok=True)
        self.apply(d)
        if self.c.needs_seed:  # authority regained: the runtime reads what the PLC holds
            self.c.seed({"heater_power": self.c.last_written["heater_power"],
                         "cooling_valve": 20.0})
        return d

    def apply(self, d: Decision) -> None:
        if "heater_power" in d.writes:
            self.heater.append(d.writes["heater_power"])
        self.c.written(d.writes)

    def run(self, seconds: float, **kw: bool) -> None:
        for _ in range(round(seconds / 0.05)):
            self.tick(**kw)

    def mark(self) -> int:
        return len(self.heater)

    def heater_since(self, mark: int) -> list[float]:
        """Heater values written after :meth:`mark` returned ``mark``."""
        return self.heater[mark:]


def test_bench_writes_the_recommendation_when_nothing_ends_it() -> None:
    b = Bench()
    b.run(1.0)
    assert b.heater and max(b.heater) >= 15.0, "it ramps towards 50"
    assert b.c.recommendations.live()["heater_power"].origin == ORIGIN


Loss = Callable[[Bench], None]


def silence(b: Bench) -> None:
    b.run(PROFILE.timing.heartbeat_timeout_s + 0.1, heartbeat=False)


def unhealthy(b: Bench) -> None:
    b.seq += 1
    b.apply(b.c.on_heartbeat(Heartbeat(b.epoch, b.seq, False), b.now))


def bye(b: Bench) -> None:
    b.apply(b.c.on_bye(Bye(b.epoch, "maintenance"), b.now))
    b.apply(b.c.on_disconnect(b.now))
    b.c.on_session(Origin(2, b.epoch + 1))  # the twin's next session
    b.epoch += 1


def disconnect(b: Bench) -> None:
    b.apply(b.c.on_disconnect(b.now))
    b.c.on_session(Origin(2, b.epoch))  # a reconnect of the same twin session


@pytest.mark.parametrize(("loss", "cause"), [
    # silence: LATE first, which degrades the plant (sim-tank): it left NORMAL before LOST
    (silence, DropCause.LEFT_NORMAL), (unhealthy, DropCause.HEARTBEAT_LOST),
    (bye, DropCause.HEARTBEAT_LOST), (disconnect, DropCause.HEARTBEAT_LOST)])
def test_heartbeat_loss_drops_the_recommendation_for_good(loss: Loss, cause: DropCause) -> None:
    b = Bench()
    b.run(0.5)
    loss(b)
    b.tick()
    t_loss = b.mark()
    assert b.heater[-1] == 0.0, "the safe value was written"
    assert b.c.state is State.FAILSAFE
    assert b.c.recommendations.live() == {}
    assert b.c.recommendations.dropped == {**dict.fromkeys(DropCause, 0), cause: 1}
    # the twin is back (same session or the next one) and the plant recovers
    b.run(PROFILE.recovery.holdoff_s + 1.0)
    assert b.c.state is State.NORMAL and b.c.link is LinkState.ALIVE and b.c.may_write()
    assert set(b.heater_since(t_loss)) <= {0.0}, "never back towards the dropped 50 %"


def test_a_new_epoch_drops_the_recommendation_and_old_ones_are_stale() -> None:
    b = Bench()
    b.run(0.5)
    t_change = b.mark()
    b.epoch = 2  # the twin's heartbeats now say epoch 2, on the same connection
    b.run(1.0)
    assert b.c.state is State.NORMAL and b.c.may_write(), "a new epoch alone is no fault"
    assert b.c.recommendations.dropped[DropCause.EPOCH_CHANGED] == 1
    assert b.heater_since(t_change) == [], "the output holds what was last written"
    late = b.c.on_recommend(Recommend("r0", "heater_power", 90.0, 30.0), b.now, ORIGIN)
    assert late.reason is Reason.STALE_SESSION, "read before the new epoch: stale"
    fresh = b.c.on_recommend(Recommend("r2", "heater_power", 5.0, 30.0), b.now,
                             Origin(1, 2))
    assert fresh.accepted
    b.run(0.5)
    assert b.heater_since(t_change)[-1] == 5.0, "the new session's own is written"


def test_leaving_normal_drops_the_recommendation() -> None:
    b = Bench()
    b.run(0.5)
    b.bad = frozenset({"temp_c"})  # one channel of three: DEGRADED, not a trip
    b.tick()
    t_left = b.mark()
    assert b.c.state is State.DEGRADED
    assert b.c.recommendations.dropped[DropCause.LEFT_NORMAL] == 1
    b.bad = frozenset()
    b.run(1.0)
    assert b.c.state is State.NORMAL and b.c.may_write()
    assert b.heater_since(t_left) == [], "back in NORMAL, nothing of the dropped one"


def test_a_fault_outside_a_decision_drops_it_before_any_write() -> None:
    b = Bench()
    b.run(0.5)
    t_fault = b.mark()
    b.apply(b.c.fault(b.now, "internal error"))  # FAILSAFE without a decision
    b.run(PROFILE.recovery.holdoff_s + 1.0)
    assert b.c.state is State.NORMAL
    assert b.c.recommendations.dropped[DropCause.LEFT_NORMAL] == 1
    assert b.heater[t_fault] == 0.0 and set(b.heater_since(t_fault)) == {0.0}


@pytest.mark.parametrize(("start", "then"), [(Mode.SHADOW, Mode.ACTIVE),
                                             (Mode.ACTIVE, Mode.SHADOW)])
def test_a_mode_change_drops_the_recommendation(start: Mode, then: Mode) -> None:
    b = Bench(start)
    b.run(0.5)
    b.c.set_mode(then)
    t_change = b.mark()
    b.run(1.0)
    assert b.c.recommendations.live() == {}
    assert b.c.recommendations.dropped[DropCause.MODE_CHANGED] == 1
    assert b.heater_since(t_change) == [], "a promotion never writes what shadow accepted"
    b.c.set_mode(then)  # not a change: nothing to drop, nothing counted
    assert b.c.recommendations.dropped[DropCause.MODE_CHANGED] == 1


def test_an_unhealthy_heartbeat_drops_one_accepted_while_the_link_was_lost() -> None:
    c = Controller(PROFILE, Mode.ACTIVE)
    c.written(c.start(0.0).writes)
    c.on_session(ORIGIN)  # connected, no heartbeat yet: the link is LOST
    assert c.on_recommend(Recommend("early", "heater_power", 50.0, 30.0), 0.0, ORIGIN).accepted
    c.on_heartbeat(Heartbeat(1, 1, False), 0.1)  # no LOST transition: it was LOST
    assert c.recommendations.live() == {}
    assert c.recommendations.dropped[DropCause.HEARTBEAT_LOST] == 1
