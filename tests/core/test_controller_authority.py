"""Twin authority in the composed core (issue 12), sans-IO: what reaches the PLC when the
twin takes authority, loses it (each ``on_twin_loss`` policy), in shadow mode, without a twin,
at a hazard's end, at stop, and across twin sessions (bye, epochs).

Every test drives :class:`core_kit.Plant` (a controller ticked every 50 ms, its writes
acknowledged by a "PLC" dict) and asserts the write log, not what the controller believes.
Profiles are sim-tank variants: the return hold-off is 0.5 s, ``[plc_remote]`` is coil 5.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_kit import DT, FLAG_COIL, Plant, profile, remote

from agent.core.authority import Authority
from agent.core.recommend import DropCause, Reason
from agent.core.safety import State
from agent.io.guard import guard_values
from agent.model.messages import Bye, Heartbeat, Recommend
from agent.model.mode import Mode
from agent.model.profile import PLC_REMOTE, Profile
from agent.protocol.modbus.codec import encode_output
from agent.protocol.modbus.plan import plan_writes

pytestmark = pytest.mark.timeout(20)

HOLDOFF = 0.5
FAST = {"return_holdoff_s": HOLDOFF}
HOLD = profile(authority=FAST)
LOCAL = profile(authority=FAST, heater={"on_twin_loss": "local", "local_value": 20.0})
RELEASE = profile(authority=FAST, plc_remote=FLAG_COIL,
                  heater={"on_twin_loss": "release"}, cooling={"on_twin_loss": "release"})
SAFE = profile(authority=FAST, plc_remote=FLAG_COIL, heater={"on_twin_loss": "safe"})
MANUAL = profile(authority={"return": "manual"}, plc_remote=FLAG_COIL,
                 heater={"on_twin_loss": "release"})
HEATER_RATE = 20.0  # sim-tank heater_power max_rate, %/s
COOLING_RATE = 50.0  # sim-tank cooling_valve max_rate, %/s (its failsafe ramps)
SAFE_SET = {"heater_power": 0.0, "cooling_valve": 100.0}
EPS = 1e-9


def recommend(p: Plant, value: float, rid: str = "r1", output: str = "heater_power") -> None:
    verdict = p.c.on_recommend(Recommend(rid, output, value, 30.0), p.now, p.origin)
    assert verdict.accepted, verdict


def silence(p: Plant) -> None:
    """The twin goes quiet until its link is LOST (heartbeat timeout)."""
    p.heartbeats = False
    p.until(lambda: p.c.link.name == "LOST", 2.0)


def test_the_profiles_used_here_are_valid_and_as_meant() -> None:
    assert RELEASE.plc_remote is not None and RELEASE.plc_remote.address == 5
    assert [o.name for o in RELEASE.writes] == ["heater_power", "cooling_valve", PLC_REMOTE]
    assert SAFE.twin_loss_is_hazard and not RELEASE.twin_loss_is_hazard
    assert LOCAL.output("heater_power").local_value == 20.0
    assert HOLD.authority.return_holdoff_s == HOLDOFF


# --- on_twin_loss, one policy at a time -----------------------------------------------------

def test_hold_writes_nothing_on_the_shed() -> None:
    p = remote(HOLD)
    recommend(p, 50.0)
    p.run(0.5)
    held = dict(p.plc)
    assert held["heater_power"] > 30.0, "the twin was driving the heater"
    mark = p.mark()
    silence(p)
    p.run(1.0)
    assert p.c.state is State.NORMAL and p.authority is Authority.LOCAL
    shed_t = p.c.authority.shed_at
    assert shed_t is not None
    assert [w for w in p.writes_since(mark) if w[0] >= shed_t] == [], "hold: nothing written"
    assert p.plc["heater_power"] >= held["heater_power"], "left where the twin had it"


def test_local_ramps_from_what_the_plc_holds_to_local_value() -> None:
    p = remote(LOCAL, plc={"heater_power": 60.0, "cooling_valve": 20.0})
    assert p.log == [], "taking authority alone writes nothing without a [plc_remote]"
    silence(p)
    assert p.authority is Authority.LOCAL
    p.until(lambda: p.plc["heater_power"] == 20.0, 5.0)
    p.run(0.5)  # reached and acknowledged: the ramp stops
    writes = p.writes_since(0)
    assert {n for _, n, _ in writes} == {"heater_power"}, "cooling (hold) is not written"
    values = [v for _, _, v in writes]
    assert values[0] == pytest.approx(60.0 - HEATER_RATE * DT), "one poll's step from 60"
    prev_t, prev = writes[0][0], values[0]
    for t, _, v in writes[1:]:
        assert prev - HEATER_RATE * max(t - prev_t, 0.0) - EPS <= v <= prev, (t, v, prev)
        prev_t, prev = t, v
    assert values[-1] == 20.0 and values.count(20.0) == 1, "written until acknowledged, once"
    steps = sum(1 for d in p.decisions if "heater_power" in d.writes)
    assert steps == len(values), "one step per decision"


def test_local_writes_its_target_again_until_acknowledged() -> None:
    p = remote(LOCAL, plc={"heater_power": 21.0, "cooling_valve": 20.0})
    p.acknowledge = False  # the PLC stops acknowledging writes
    silence(p)
    p.run(0.3)
    unacked = [d.writes.get("heater_power") for d in p.decisions[-6:]]
    assert unacked and all(v == 20.0 for v in unacked), unacked
    p.acknowledge = True
    p.tick()
    mark = p.mark()
    p.run(0.3)
    assert p.writes_since(mark) == [], "acknowledged at the target: no more writes"


def test_release_hands_back_by_the_flag_and_never_writes_the_outputs() -> None:
    p = remote(RELEASE)
    assert p.plc[PLC_REMOTE] == 1.0, "taking authority set the flag at remote_value"
    recommend(p, 50.0)
    p.run(0.3)
    mark = p.mark()
    p.acknowledge = False  # the flag write is not acknowledged at first
    silence(p)
    p.run(0.2)
    pending = [d.writes for d in p.decisions[-4:]]
    assert all(w == {PLC_REMOTE: 0.0} for w in pending), pending
    p.acknowledge = True
    p.run(0.5)
    after = p.writes_since(mark)
    shed_t = p.c.authority.shed_at
    assert shed_t is not None
    assert [w for w in after if w[0] >= shed_t] == [(after[-1][0], PLC_REMOTE, 0.0)]
    assert p.plc[PLC_REMOTE] == 0.0
    written = len(p.log)
    p.run(0.5)
    assert len(p.log) == written, "confirmed: not written again"


def test_release_flag_is_confirmed_by_written() -> None:
    p = remote(RELEASE)
    p.acknowledge = False
    silence(p)
    assert p.c.flag_wanted == 0.0
    p.c.written({PLC_REMOTE: 0.0}, now=p.now)
    p.acknowledge = True
    mark = p.mark()
    p.run(0.3)
    assert p.writes_since(mark) == [] and p.c.flag_wanted is None


def test_safe_makes_the_twins_loss_a_hazard_in_active_mode() -> None:
    p = remote(SAFE)
    recommend(p, 50.0)
    p.run(0.3)
    silence(p)
    assert p.c.state is State.FAILSAFE
    d = next(d for d in p.decisions if d.safe)
    assert d.writes == {**SAFE_SET, PLC_REMOTE: 1.0}, "the full safe set with the flag"
    p.heartbeats = True  # the twin is back: still latched until recovery
    p.run(0.3)
    assert p.c.state in (State.FAILSAFE, State.RECOVERING)


def test_safe_in_shadow_mode_writes_nothing_on_the_same_loss() -> None:
    p = Plant(SAFE, Mode.SHADOW)
    p.run(HOLDOFF + 0.5)
    recommend(p, 50.0)
    p.run(0.3)
    silence(p)
    p.run(1.0)
    assert p.c.state is State.NORMAL and p.log == []


# --- taking authority -----------------------------------------------------------------------

def test_takeover_sets_the_flag_then_ramps_from_the_seed_after_the_holdoff() -> None:
    p = Plant(RELEASE, plc={"heater_power": 30.0, "cooling_valve": 20.0, PLC_REMOTE: 0.0})
    p.run(0.2)
    recommend(p, 50.0)  # accepted early, written only once the twin has authority
    assert p.log == [] and p.authority is Authority.RETURNING
    [returning_t] = [t.t for d in p.decisions for t in d.authority
                     if t.new is Authority.RETURNING]
    p.until(lambda: bool(p.log), HOLDOFF + 1.0)
    assert p.log[0][0] >= returning_t + HOLDOFF - EPS, "nothing before the hold-off"
    assert p.log[0][1:] == (PLC_REMOTE, 1.0), "the flag first"
    p.run(1.0)
    heater = p.writes_since(0, "heater_power")
    assert heater, "the recommendation is written"
    assert heater[0][0] >= p.log[0][0]
    assert heater[0][2] <= 30.0 + HEATER_RATE * DT + EPS, "from what the PLC held: no bump"
    prev_t, prev = heater[0][0], heater[0][2]
    for t, _, v in heater[1:]:
        assert prev <= v <= prev + HEATER_RATE * (t - prev_t) + EPS
        prev_t, prev = t, v


def test_manual_return_waits_for_an_ack() -> None:
    p = Plant(MANUAL, plc={"heater_power": 30.0, "cooling_valve": 20.0, PLC_REMOTE: 0.0})
    p.run(0.2)
    recommend(p, 50.0)
    p.run(MANUAL.authority.return_holdoff_s + 2.0)  # far past the hold-off: still nothing
    assert p.authority is Authority.RETURNING and p.log == []
    d, refused = p.c.ack(p.now, "button")
    assert refused is None and p.authority is Authority.REMOTE
    p.apply(d)
    assert p.log[0][1:] == (PLC_REMOTE, 1.0)
    p.run(0.5)
    assert p.writes_since(0, "heater_power"), "recommendations follow the ack"


def test_an_ack_with_nothing_to_grant_is_refused_on_both_axes() -> None:
    p = remote(HOLD)
    d, refused = p.c.ack(p.now, "button")
    assert refused is not None and "nothing to acknowledge" in refused
    assert d.writes == {} and p.authority is Authority.REMOTE


# --- shadow mode, no twin -------------------------------------------------------------------

@pytest.mark.parametrize("prof", [HOLD, LOCAL, RELEASE, SAFE], ids=["hold", "local", "release",
                                                                   "safe"])
def test_shadow_mode_writes_nothing_through_a_twin_loss_and_return(prof: Profile) -> None:
    p = Plant(prof, Mode.SHADOW)
    p.run(HOLDOFF + 0.5)
    recommend(p, 50.0)
    p.run(0.5)
    p.tick()
    silence(p)
    p.run(0.5)
    p.heartbeats = True
    p.run(HOLDOFF + 1.0)
    p.apply(p.c.on_disconnect(p.now))
    p.run(0.5)
    assert p.log == [] and p.c.state is State.NORMAL
    assert p.authority is Authority.LOCAL
    p.apply(p.c.stop(p.now))
    assert p.log == []


def test_without_a_twin_nothing_is_written_while_healthy_and_a_trip_acts() -> None:
    p = Plant(RELEASE, Mode.SHADOW, twin=False)
    p.run(2.0)
    assert p.c.state is State.NORMAL and p.authority is Authority.LOCAL and p.log == []
    p.hot = 40.0  # 100 degC: the overtemperature trip
    p.tick()
    assert p.c.state is State.FAILSAFE
    assert p.plc == {**SAFE_SET, PLC_REMOTE: 1.0}


def test_without_a_twin_an_active_safe_profile_still_runs() -> None:
    p = Plant(SAFE, Mode.ACTIVE, twin=False)
    p.run(1.0)
    assert p.c.state is State.NORMAL
    p.apply(p.c.stop(p.now))
    assert p.log == []


# --- a hazard's end -------------------------------------------------------------------------

def hazard_then_recover(prof: Profile) -> Plant:
    p = Plant(prof, Mode.SHADOW)
    p.run(0.3)
    if p.c.state is State.RECOVERING:  # manual recovery policy: the start waits for an ack
        p.apply(p.c.ack(p.now, "button")[0])
    p.hot = 40.0
    p.tick()
    assert p.c.state is State.FAILSAFE and p.plc[PLC_REMOTE] == 1.0
    p.hot = 0.0
    p.until(lambda: p.c.state is State.RECOVERING, 1.0)
    return p


def test_auto_recovery_hands_the_plant_back_to_the_plc_program() -> None:
    p = hazard_then_recover(RELEASE)
    p.until(lambda: p.c.state is State.NORMAL, RELEASE.recovery.holdoff_s + 1.0)
    p.tick()
    assert p.plc[PLC_REMOTE] == 0.0, "the flag back at local_value"


def test_manual_recovery_hands_the_plant_back_to_the_plc_program() -> None:
    prof = profile(plc_remote=FLAG_COIL, heater={"on_twin_loss": "release"},
                   recovery={"policy": "manual"})
    p = hazard_then_recover(prof)
    d, refused = p.c.ack(p.now, "button")
    assert refused is None and p.c.state is State.NORMAL
    p.apply(d)
    p.run(0.3)
    assert p.plc[PLC_REMOTE] == 0.0, "the flag back at local_value"


def test_a_manual_recovery_policy_start_writes_nothing_on_a_healthy_plant() -> None:
    p = Plant(profile(recovery={"policy": "manual"}), Mode.SHADOW)
    p.run(1.0)
    assert p.log == []


# --- stop -----------------------------------------------------------------------------------

def test_stop_in_shadow_writes_nothing() -> None:
    p = Plant(RELEASE, Mode.SHADOW)
    p.run(1.0)
    d = p.apply(p.c.stop(p.now))
    assert d.writes == {} and p.log == []


def test_stop_while_remote_releases_by_the_flag() -> None:
    p = remote(RELEASE)
    recommend(p, 50.0)
    p.run(0.3)
    d = p.apply(p.c.stop(p.now))
    assert d.writes == {PLC_REMOTE: 0.0} and not d.safe
    assert p.c.state is State.NORMAL and p.authority is Authority.LOCAL
    assert p.c.recommendations.live() == {}
    assert p.c.recommendations.dropped[DropCause.AUTHORITY_SHED] == 1


def test_stop_with_hold_writes_nothing() -> None:
    p = remote(HOLD)
    recommend(p, 50.0)
    p.run(0.3)
    assert p.apply(p.c.stop(p.now)).writes == {}


def test_stop_with_local_leaves_the_output_where_it_is() -> None:
    p = remote(LOCAL, plc={"heater_power": 60.0, "cooling_valve": 20.0})
    assert p.apply(p.c.stop(p.now)).writes == {}


def test_stop_with_a_safe_output_is_failsafe_and_the_full_safe_set() -> None:
    p = remote(SAFE)
    d = p.apply(p.c.stop(p.now))
    assert p.c.state is State.FAILSAFE and d.safe
    assert d.writes == {**SAFE_SET, PLC_REMOTE: 1.0}


# --- sessions -------------------------------------------------------------------------------

def test_an_epoch_change_sheds() -> None:
    p = remote(RELEASE)
    mark = p.mark()
    p.epoch += 1  # the twin restarted on the same connection
    p.tick()
    sheds = [t for d in p.decisions for t in d.authority if t.old is Authority.REMOTE]
    assert len(sheds) == 1 and "epoch 1 -> 2" in sheds[0].cause
    assert (PLC_REMOTE, 0.0) in [(n, v) for _, n, v in p.writes_since(mark)]
    p.until(lambda: p.authority is Authority.REMOTE, HOLDOFF + 1.0)  # the new one earns it


def test_after_a_bye_its_epoch_never_brings_authority_back() -> None:
    p = remote(HOLD)
    p.apply(p.c.on_bye(Bye(p.epoch, "maintenance"), p.now))
    assert p.authority is Authority.LOCAL
    p.run(HOLDOFF + 1.0)  # heartbeats of the same epoch go on, on this connection ...
    assert p.authority is Authority.LOCAL and p.c.monitor.counters.after_bye > 0
    p.apply(p.c.on_disconnect(p.now))
    p.session += 1
    p.c.on_session(p.origin)  # ... and on a new one
    p.run(HOLDOFF + 1.0)
    assert p.authority is Authority.LOCAL and p.c.link.name == "LOST"
    p.apply(p.c.on_disconnect(p.now))
    p.session += 1
    p.epoch += 1  # another epoch on a new session does
    p.seq = 0
    p.c.on_session(p.origin)
    p.until(lambda: p.authority is Authority.REMOTE, HOLDOFF + 1.0)


def absurd_epoch_then_sane(p: Plant) -> None:
    p.epoch = 2**64 - 1
    p.run(0.3)
    p.apply(p.c.on_disconnect(p.now))
    p.session += 1
    p.epoch, p.seq = 5, 0  # the twin restarts with a sane clock on its next connection
    p.c.on_session(p.origin)


def test_an_absurd_epoch_does_not_lock_the_twin_out() -> None:
    p = remote(HOLD)
    absurd_epoch_then_sane(p)
    p.until(lambda: p.authority is Authority.REMOTE, HOLDOFF + 1.0)
    assert p.c.monitor.epoch == 5


def test_an_absurd_epoch_does_not_lock_the_twins_recommendations_out() -> None:
    p = remote(HOLD)
    absurd_epoch_then_sane(p)
    p.until(lambda: p.authority is Authority.REMOTE, HOLDOFF + 1.0)
    verdict = p.c.on_recommend(Recommend("r5", "heater_power", 50.0, 30.0), p.now, p.origin)
    assert verdict.reason is Reason.OK, verdict


# --- recommendations die on every shed ------------------------------------------------------

Shed = Callable[[Plant], None]


def shed_silence(p: Plant) -> None:
    silence(p)


def shed_unhealthy(p: Plant) -> None:
    p.apply(p.c.on_heartbeat(Heartbeat(p.epoch, p.seq + 1, False), p.now))
    p.seq += 1


def shed_bye(p: Plant) -> None:
    p.apply(p.c.on_bye(Bye(p.epoch, ""), p.now))


def shed_disconnect(p: Plant) -> None:
    p.apply(p.c.on_disconnect(p.now))


def shed_epoch(p: Plant) -> None:
    p.epoch += 1
    p.tick()


def shed_degraded(p: Plant) -> None:
    p.bad = frozenset({"temp_c"})
    p.tick()


def shed_mode(p: Plant) -> None:
    p.c.set_mode(Mode.SHADOW)
    p.tick()


def shed_stop(p: Plant) -> None:
    p.apply(p.c.stop(p.now))


@pytest.mark.parametrize(("shed", "cause"), [
    (shed_silence, DropCause.HEARTBEAT_LOST), (shed_unhealthy, DropCause.HEARTBEAT_LOST),
    (shed_bye, DropCause.HEARTBEAT_LOST), (shed_disconnect, DropCause.HEARTBEAT_LOST),
    (shed_epoch, DropCause.EPOCH_CHANGED), (shed_degraded, DropCause.LEFT_NORMAL),
    (shed_mode, DropCause.MODE_CHANGED), (shed_stop, DropCause.AUTHORITY_SHED)],
    ids=["silence", "unhealthy", "bye", "disconnect", "epoch", "degraded", "mode", "stop"])
def test_recommendations_die_on_every_shed(shed: Shed, cause: DropCause) -> None:
    p = remote(HOLD)
    recommend(p, 50.0)
    p.run(0.3)
    assert p.writes_since(0, "heater_power"), "being written"
    shed(p)
    assert [t.new for d in p.decisions for t in d.authority if t.old is Authority.REMOTE] == [
        Authority.LOCAL]
    assert p.authority is not Authority.REMOTE
    assert p.c.recommendations.live() == {}
    assert p.c.recommendations.dropped == {**dict.fromkeys(DropCause, 0), cause: 1}
    if shed is not shed_stop:
        mark = p.mark()
        p.heartbeats, p.bad = True, frozenset()
        p.run(HOLDOFF + 1.5)
        assert p.values_since(mark, "heater_power") == [], "never back towards 50"


# --- the watchdog's frames and the write plan -----------------------------------------------

def test_guard_values_set_the_flag_at_remote_value() -> None:
    assert guard_values(RELEASE, {}) == {**SAFE_SET, PLC_REMOTE: 1.0}
    assert guard_values(RELEASE, {PLC_REMOTE: 0.0, "heater_power": 40.0}) == {
        **SAFE_SET, PLC_REMOTE: 1.0}
    assert PLC_REMOTE not in guard_values(HOLD, {})


def test_plan_writes_puts_the_flags_request_first() -> None:
    writes = {o: encode_output(o, v) for o, v in
              zip(RELEASE.writes, (0.0, 100.0, 1.0), strict=True)}
    ops = plan_writes(writes)
    assert ops[0].names == (PLC_REMOTE,)
    assert {n for op in ops[1:] for n in op.names} == {"heater_power", "cooling_valve"}
    reversed_ops = plan_writes(dict(reversed(list(writes.items()))))
    assert reversed_ops[0].names == (PLC_REMOTE,)
