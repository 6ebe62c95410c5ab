"""The decision core composed (sans-IO): readings + heartbeats in, decisions out.

Recommendations die with the twin session that sent them (issue 10, item 5): each of the
four drop causes -- heartbeat loss (silence, unhealthy, bye, disconnect), an epoch change,
the plant leaving NORMAL, a mode change -- is made to happen while one is being written,
and what the controller writes afterwards (when it writes again at all) is checked. Since
issue 12 recommendations are written only while the twin holds authority (REMOTE, after
the return hold-off: 1 s in the profile here), and the twin's loss sheds authority instead
of tripping the plant (sim-tank's outputs hold: nothing is written on the shed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_kit import profile, readings

from agent.core.authority import Authority, AuthTransition
from agent.core.controller import Controller, Decision
from agent.core.heartbeat import LinkState
from agent.core.recommend import DropCause, Reason
from agent.core.safety import State
from agent.model.messages import Bye, Heartbeat, Origin, Recommend
from agent.model.mode import Mode
from agent.model.profile import Profile

pytestmark = pytest.mark.timeout(10)

HOLDOFF = 1.0  # the twin's return hold-off ([authority] return_holdoff_s)
PROFILE = profile(authority={"return_holdoff_s": HOLDOFF})
SAFE_TWIN = profile(authority={"return_holdoff_s": HOLDOFF},
                    heater={"on_twin_loss": "safe"})  # the twin's loss is a hazard
ORIGIN = Origin(session=1, epoch=1)  # the link session the heartbeats below come on


def running(mode: Mode, prof: Profile = PROFILE) -> tuple[Controller, float]:
    """A controller past STARTING: PLC fine, twin alive (3 heartbeats), sensors good.
    Nothing has been written (STARTING writes nothing); the twin has no authority yet."""
    c = Controller(prof, mode)
    c.on_session(ORIGIN)
    now = 0.0
    for seq in range(1, 4):
        now += 0.1
        c.on_heartbeat(Heartbeat(1, seq, True), now)
    d = c.tick(readings(now), now, plc_reachable=True, plc_watchdog_ok=True)
    assert c.state is State.NORMAL
    assert d.writes == {} and c.last_written == {}
    assert c.authority.state is not Authority.REMOTE
    return c, now


def take_over(c: Controller, now: float, seq: int) -> tuple[float, int]:
    """Heartbeats and polls until the twin has authority (the return hold-off)."""
    end = now + HOLDOFF + 1.0
    while c.authority.state is not Authority.REMOTE:
        assert now < end, "the twin never took authority"
        now += 0.05
        seq += 1
        step(c, now, seq)
    return now, seq


def step(c: Controller, now: float, seq: int) -> Decision:
    c.on_heartbeat(Heartbeat(1, seq, True), now)
    d = c.tick(readings(now), now, plc_reachable=True, plc_watchdog_ok=True)
    c.written(d.writes)
    return d


def test_takeover_starts_from_what_the_plc_holds_not_from_the_last_write() -> None:
    c, now = running(Mode.ACTIVE)
    d = tick(c, now + 0.05, plc=False)  # a PLC blip: FAILSAFE, the safe set (heater 0)
    c.written(d.writes)
    assert c.last_written["heater_power"] == 0.0
    seq = c.monitor.counters.accepted
    now += 0.05
    while c.state is not State.NORMAL:  # auto recovery after its hold-off
        now += 0.05
        seq += 1
        step(c, now, seq)
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN).accepted
    now, seq = take_over(c, now, seq)
    assert c.needs_seed, "authority taken: the runtime must read what the PLC holds"
    d = step(c, now + 0.05, seq + 1)
    assert d.writes == {} and c.needs_seed, "no write before the PLC's values are known"
    c.seed({"heater_power": 45.0, "cooling_valve": 15.0})  # the operator had moved them
    writes = [step(c, now + 0.05 * i, seq + i).writes for i in range(2, 8)]
    heater = [w["heater_power"] for w in writes if "heater_power" in w]
    assert heater, "the recommendation is written"
    assert all(45.0 <= h <= 50.0 for h in heater), heater  # from 45 up, never a dip to 0
    assert heater[0] <= 45.0 + PROFILE.output("heater_power").max_rate * 0.06  # rate-limited


def test_shadow_mode_never_writes_a_recommendation() -> None:
    c, now = running(Mode.SHADOW)
    assert c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN).accepted
    for i in range(1, round((HOLDOFF + 1.0) / 0.05)):  # well past the return hold-off
        assert step(c, now + 0.05 * i, 3 + i).writes == {}
    assert not c.needs_seed
    assert c.authority.state is Authority.LOCAL


def twin_lost_while_in_charge(prof: Profile) -> tuple[Controller, Decision]:
    """The twin in charge (REMOTE) writing heater 40 -> 50, then silent until LOST."""
    c, now = running(Mode.ACTIVE, prof)
    now, seq = take_over(c, now, 3)
    c.seed({"heater_power": 40.0, "cooling_valve": 20.0})
    c.on_recommend(Recommend("r1", "heater_power", 50.0, 30.0), now, ORIGIN)
    for i in (1, 2):  # the first decision with authority starts the ramp's clock (dt 0)
        step(c, now + 0.05 * i, seq + i)
    assert c.last_written["heater_power"] > 40.0
    now += 0.1
    c.on_timer(now + PROFILE.timing.heartbeat_late_s)  # LATE: a warning only
    assert c.authority.state is Authority.REMOTE and c.state is State.NORMAL
    d = c.on_timer(now + PROFILE.timing.heartbeat_timeout_s)
    assert c.link is LinkState.LOST
    return c, d


def test_losing_the_twin_while_active_sheds_authority_and_holds() -> None:
    c, d = twin_lost_while_in_charge(PROFILE)
    assert c.state is State.NORMAL, "the twin's loss is no hazard by itself"
    assert c.authority.state is Authority.LOCAL
    assert c.authority.shed_reason is not None and "twin LOST" in c.authority.shed_reason
    assert d.writes == {} and not d.safe, "hold: the PLC keeps what it holds"
    assert not c.may_write() and c.recommendations.live() == {}


def test_losing_a_twin_whose_supervision_is_required_writes_the_safe_set() -> None:
    c, d = twin_lost_while_in_charge(SAFE_TWIN)
    assert c.state is State.FAILSAFE
    assert d.safe and d.writes == {"heater_power": 0.0, "cooling_valve": d.writes["cooling_valve"]}
    assert d.writes["heater_power"] == 0.0
    assert c.held is None and not c.may_write()


def tick(c: Controller, now: float, *, plc: bool = True) -> Decision:
    """One poll with the twin's heartbeat just before it (the twin stays ALIVE)."""
    c.on_heartbeat(Heartbeat(1, c.monitor.counters.accepted + 1, True), now)
    return c.tick(readings(now), now, plc_reachable=plc, plc_watchdog_ok=True)


def safe_set_once(c: Controller, now: float) -> float:
    """A first hazard (a PLC blip) whose safe set is acknowledged, then auto recovery."""
    c.written(tick(c, now + 0.05, plc=False).writes)
    now += 0.05
    while c.state is not State.NORMAL:
        now += 0.05
        tick(c, now)
    return now


def test_a_safe_set_that_was_not_acknowledged_is_written_again_every_tick() -> None:
    c, now = running(Mode.SHADOW)
    safe = {"heater_power": 0.0, "cooling_valve": 100.0}
    now = safe_set_once(c, now)
    assert c.last_written == safe, "an earlier safe set was acknowledged: the field-trial case"
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

    Active mode, the twin in charge (REMOTE after the return hold-off; shadow: as long),
    seeded from the PLC (heater 0, cooling 20), and one recommendation ``heater_power = 50 %``
    of the session ``ORIGIN`` being written (ramping up at 20 %/s from 0)."""

    def __init__(self, mode: Mode = Mode.ACTIVE) -> None:
        self.c, self.now = running(mode)
        self.seq = 3
        self.epoch = 1
        self.bad: frozenset[str] = frozenset()
        self.heater: list[float] = []  # every heater value written, in order
        self.plc = {"heater_power": 0.0, "cooling_valve": 20.0}  # what the PLC holds
        self.auth: list[AuthTransition] = []  # every authority transition, in order
        self.shed: tuple[int, float] | None = None  # at the last shed: mark, heater held
        self.run(HOLDOFF + 0.1)
        assert (self.c.authority.state is Authority.REMOTE) is (mode is Mode.ACTIVE)
        assert self.heater == [], "nothing written before a recommendation"
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
            self.c.seed(dict(self.plc))
        return d

    def apply(self, d: Decision) -> None:
        if any(t.old is Authority.REMOTE for t in d.authority):
            self.shed = (len(self.heater), self.plc["heater_power"])
        if "heater_power" in d.writes:
            self.heater.append(d.writes["heater_power"])
        self.plc.update(d.writes)
        self.auth += d.authority
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
    # silence: LATE first, a warning only (the plant stays NORMAL), then LOST
    (silence, DropCause.HEARTBEAT_LOST), (unhealthy, DropCause.HEARTBEAT_LOST),
    (bye, DropCause.HEARTBEAT_LOST), (disconnect, DropCause.HEARTBEAT_LOST)])
def test_heartbeat_loss_drops_the_recommendation_for_good(loss: Loss, cause: DropCause) -> None:
    b = Bench()
    b.run(0.5)
    assert b.plc["heater_power"] > 0.0, "the recommendation was being written"
    loss(b)
    b.tick()
    assert b.c.state is State.NORMAL, "the twin's loss is no hazard by itself"
    assert b.c.authority.state is Authority.LOCAL and not b.c.may_write()
    assert [(t.old, t.new) for t in b.auth[-1:]] == [(Authority.REMOTE, Authority.LOCAL)]
    assert b.shed is not None
    t_loss, held = b.shed
    assert b.heater_since(t_loss) == [] and b.plc["heater_power"] == held, "hold"
    assert b.c.recommendations.live() == {}
    assert b.c.recommendations.dropped == {**dict.fromkeys(DropCause, 0), cause: 1}
    # the twin is back (same session or the next one) and takes authority again
    b.run(HOLDOFF + 1.0)
    assert b.c.state is State.NORMAL and b.c.link is LinkState.ALIVE and b.c.may_write()
    assert b.heater_since(t_loss) == [], "never back towards the dropped 50 %"


def test_a_new_epoch_drops_the_recommendation_and_old_ones_are_stale() -> None:
    b = Bench()
    b.run(0.5)
    t_change = b.mark()
    b.epoch = 2  # the twin's heartbeats now say epoch 2, on the same connection
    b.tick()
    [shed] = [t for t in b.auth if t.old is Authority.REMOTE]
    assert shed.new is Authority.LOCAL and "epoch 1 -> 2" in shed.cause, "a new epoch sheds"
    b.run(HOLDOFF + 0.5)
    assert b.c.state is State.NORMAL and b.c.may_write(), "a new epoch alone is no fault"
    assert b.c.recommendations.dropped[DropCause.EPOCH_CHANGED] == 1
    assert b.heater_since(t_change) == [], "the output holds what was last written"
    late = b.c.on_recommend(Recommend("r0", "heater_power", 90.0, 30.0), b.now, ORIGIN)
    assert late.reason is Reason.STALE_SESSION, "read before the new epoch: stale"
    fresh = b.c.on_recommend(Recommend("r2", "heater_power", 5.0, 30.0), b.now,
                             Origin(1, 2))
    assert fresh.accepted
    b.run(0.5)
    assert b.heater_since(t_change)[-1] == pytest.approx(5.0, abs=1e-9), "the new session's own"


def test_leaving_normal_drops_the_recommendation() -> None:
    b = Bench()
    b.run(0.5)
    b.bad = frozenset({"temp_c"})  # one channel of three: DEGRADED, not a trip
    b.tick()
    t_left = b.mark()
    assert b.c.state is State.DEGRADED
    assert b.c.recommendations.dropped[DropCause.LEFT_NORMAL] == 1
    assert b.c.authority.state is Authority.LOCAL, "leaving NORMAL sheds authority"
    b.bad = frozenset()
    b.run(HOLDOFF + 0.5)
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
    c.on_session(ORIGIN)  # connected, no heartbeat yet: the link is LOST
    assert c.on_recommend(Recommend("early", "heater_power", 50.0, 30.0), 0.0, ORIGIN).accepted
    c.on_heartbeat(Heartbeat(1, 1, False), 0.1)  # no LOST transition: it was LOST
    assert c.recommendations.live() == {}
    assert c.recommendations.dropped[DropCause.HEARTBEAT_LOST] == 1
