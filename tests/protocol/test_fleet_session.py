"""The fleet link's sans-IO session rules (agent.protocol.fleet.session), with ``now``
passed in: STATE gate and loss, the session, the echo and idle rules, rebirth, seq."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from agent.model.messages import Ack, Bye, Heartbeat, Origin, Recommend, TwinHello
from agent.protocol.fleet.envelope import FANOUT, public_bytes, seal
from agent.protocol.fleet.session import (
    Birth,
    Deliver,
    Down,
    Drop,
    FleetSession,
    SessionSettings,
    Up,
)

pytestmark = pytest.mark.timeout(60)

KEY = Ed25519PrivateKey.generate()


def session(**kw: float) -> FleetSession:
    return FleetSession(SessionSettings("twin", "dev", public_bytes([KEY]), **kw),
                        numbers=itertools.count(7))


def hb(seq: int, epoch: int = 1, *, healthy: bool = True) -> bytes:
    return seal(Heartbeat(epoch, seq, healthy), KEY, host="twin", to=FANOUT, epoch=epoch,
                seq=seq, sent_ms=0)


def cmd(msg: object, seq: int, epoch: int = 1, echo: int | None = None) -> bytes:
    return seal(msg, KEY, host="twin", to="dev", epoch=epoch, seq=seq,  # type: ignore[arg-type]
                sent_ms=0, echo=echo)


def opened(s: FleetSession, now: float = 0.0) -> Origin:
    assert s.connected(now) == ()
    assert s.state(True, 100, now) == (Birth(False),)
    acts = s.fanout(hb(1), now)
    assert isinstance(acts[0], Up)
    return acts[0].origin


def test_online_state_gates_the_birth_once_per_connection() -> None:
    s = session()
    assert s.state(True, 100, 0.0) == ()  # not connected: nothing to birth
    s.connected(0.0)
    assert s.state(True, 100, 0.0) == (Birth(False),)
    assert s.state(True, 101, 0.1) == ()  # born already
    s.disconnected("gone")
    s.connected(1.0)
    assert s.state(True, 99, 1.0) == ()  # older than the newest seen: stale
    assert s.refused["state_stale"] == 1
    assert s.state(True, 101, 1.0) == (Birth(False),)  # equal to the newest: valid


def test_an_offline_state_before_the_birth_only_keeps_waiting() -> None:
    s = session()
    s.connected(0.0)
    assert s.state(False, 50, 0.0) == ()
    assert s.state(True, 40, 0.1) == ()  # older than that offline: stale
    assert s.state(True, 60, 0.2) == (Birth(False),)


def test_a_valid_offline_is_a_loss_and_a_stale_one_is_ignored() -> None:
    s = session()
    opened(s)
    assert s.state(False, 99, 1.0) == ()
    assert s.refused["state_stale"] == 1 and s.session is not None
    assert s.state(False, 100, 1.0) == (Down("twin host offline (STATE)"),
                                        Drop("twin host offline (STATE)", ndeath=True))
    assert s.session is None


def test_the_first_verified_heartbeat_opens_the_session_hello_first() -> None:
    s = session()
    s.connected(0.0)
    assert s.fanout(hb(1), 0.0) == ()  # before the birth: verified, not delivered
    assert s.refused["before_birth"] == 1
    s.state(True, 1, 0.0)
    acts = s.fanout(hb(2), 0.5)
    origin = Origin(7, 1)
    assert acts == (Up(origin, "twin twin epoch 1"),
                    Deliver(TwinHello(2, "twin", 1), 0.5, origin),
                    Deliver(Heartbeat(1, 2, True), 0.5, origin))
    assert s.fanout(hb(3, healthy=False), 0.6) == (Deliver(Heartbeat(1, 3, False), 0.6, origin),)


def test_refused_heartbeats_are_counted_by_reason_and_change_nothing() -> None:
    s = session()
    opened(s)
    other = Ed25519PrivateKey.generate()
    forged = seal(Heartbeat(1, 9, True), other, host="twin", to=FANOUT, epoch=1, seq=9, sent_ms=0)
    assert s.fanout(forged, 1.0) == ()
    assert s.fanout(hb(1), 1.0) == ()  # the same stream position again
    assert s.fanout(b"junk", 1.0) == ()
    assert dict(s.refused) == {"signature": 1, "replayed": 1, "malformed": 1}


def test_a_newer_epoch_is_a_new_session_and_a_bye_ends_it() -> None:
    s = session()
    first = opened(s)
    acts = s.fanout(hb(1, epoch=2), 1.0)
    second = Origin(8, 2)
    assert acts == (Down("twin epoch 1 -> 2 (a restart)"), Up(second, "twin twin epoch 2"),
                    Deliver(TwinHello(2, "twin", 2), 1.0, second),
                    Deliver(Heartbeat(2, 1, True), 1.0, second))
    assert first != second
    bye = seal(Bye(2, "stop"), KEY, host="twin", to=FANOUT, epoch=2, seq=2, sent_ms=0)
    assert s.fanout(bye, 2.0) == (Deliver(Bye(2, "stop"), 2.0, second),
                                  Down("twin said bye (stop)"))
    assert s.session is None


def test_commands_only_in_a_session_and_for_its_epoch() -> None:
    s = session()
    assert s.command(cmd(Ack(1), 1), 0.0) == ()
    assert s.refused["no_session"] == 1
    origin = opened(s)
    rec = Recommend("r", "out", 1.0, 5.0)
    assert s.command(cmd(rec, 4), 0.2) == (Deliver(rec, 0.2, origin),)
    assert s.command(cmd(Ack(2), 2), 0.3) == ()  # behind the stream: a replay
    assert s.command(cmd(Ack(3), 5, epoch=3), 0.4) == ()  # not the session's epoch
    assert s.refused["stale_epoch"] == 1 and s.refused["replayed"] == 1


def test_the_echo_rule() -> None:
    s = session(echo_timeout_s=3.0, idle_timeout_s=100.0)
    opened(s)
    assert s.tick(10.0) == ()  # nothing sent yet: nothing to echo
    s.status_sent(1, 10.0)
    s.status_sent(2, 11.0)
    assert s.tick(13.0) == ()
    assert s.command(cmd(Ack(0), 1, echo=1), 13.0)  # heard the status sent at 10.0
    assert s.tick(13.5) == ()
    s.status_sent(3, 12.5)
    assert s.tick(13.9) == ()  # status 2, the oldest unechoed, was sent 2.9 s ago
    (down, drop) = s.tick(14.1)  # 3.1 s ago, and the newest echoed one 4.1 s ago
    assert isinstance(down, Down) and "does not hear us" in down.reason
    assert drop == Drop(down.reason, ndeath=True)


def test_idle_without_verified_heartbeats_drops_the_connection() -> None:
    s = session(idle_timeout_s=2.0)
    s.connected(0.0)
    assert s.tick(1.9) == ()
    s.state(True, 1, 1.0)
    s.fanout(hb(1), 1.5)
    assert s.tick(3.4) == ()
    (down, drop) = s.tick(3.6)
    assert isinstance(down, Down) and isinstance(drop, Drop) and not drop.ndeath
    s.disconnected("idle")
    assert s.tick(100.0) == ()  # not connected: nothing to time


def test_rebirth_only_when_born_and_coalesced_within_a_second() -> None:
    s = session()
    assert s.rebirth(0.0) == ()
    s.connected(0.0)
    s.state(True, 1, 0.0)
    assert s.rebirth(0.5) == ()
    assert s.refused["rebirths_coalesced"] == 1
    assert s.rebirth(1.2) == (Birth(True),)
    assert s.rebirth(2.0) == ()
    assert s.births == 2


@given(st.integers(1, 1000), st.integers(0, 5))
def test_seq_counts_from_the_birth_and_wraps(n: int, rebirth_after: int) -> None:
    s = session()
    s.connected(0.0)
    s.state(True, 1, 0.0)
    got = [s.next_seq() for _ in range(n)]
    assert got == [i % 256 for i in range(1, n + 1)]
    s.rebirth(10.0 + rebirth_after)
    assert s.next_seq() == 1  # the rebirth's NBIRTH was seq 0


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=30))
def test_only_an_online_state_at_least_as_new_as_every_earlier_one_births(
        states: list[tuple[bool, int]]) -> None:
    """Property: a Birth is answered to an online STATE whose timestamp is >= every STATE
    timestamp seen (stale offlines excepted, which are ignored), at most once."""
    s = session()
    s.connected(0.0)
    newest: int | None = None
    online: int | None = None
    births = 0
    for i, (up, ts) in enumerate(states):
        acts = s.state(up, ts, float(i))
        valid = (ts >= newest if newest is not None else True) if up else \
            (online is None or ts >= online)
        if valid:
            newest = ts if newest is None else max(newest, ts)
            if up:
                online = ts
        expect_birth = up and valid and births == 0
        assert (Birth(False) in acts) == expect_birth
        births += expect_birth
        if not up and valid and births:  # born (no session): NDEATH and disconnect
            assert acts == (Drop("twin host offline (STATE)", ndeath=True),)
            break
        assert all(isinstance(a, Birth) for a in acts)
