"""Heartbeat monitor: timeouts, stale epochs, replays, unhealthy twins, debounced recovery."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.heartbeat import HeartbeatMonitor, LinkEvent, LinkState
from agent.model.messages import Bye, Heartbeat
from agent.model.profile import Timing

pytestmark = pytest.mark.timeout(30)

LATE = 0.25
TIMEOUT = 0.5
TIMING = Timing(
    poll_period_s=0.05, heartbeat_timeout_s=TIMEOUT, heartbeat_late_s=LATE, watchdog_deadline_s=0.2
)


def hb(seq: int, epoch: int = 1, healthy: bool = True) -> Heartbeat:
    return Heartbeat(epoch=epoch, seq=seq, healthy=healthy)


def state_of(m: HeartbeatMonitor) -> LinkState:
    """Read the state through a call, so mypy does not pin it after an assert."""
    return m.state


def alive_monitor(t0: float = 0.0, epoch: int = 1, k: int = 3) -> tuple[HeartbeatMonitor, float]:
    """A monitor brought to ALIVE by K healthy heartbeats 0.1 s apart; returns it and the
    time of the last heartbeat (its seqs are 1..k)."""
    m = HeartbeatMonitor(TIMING, recover_count=k)
    times = [t0 + 0.1 * i for i in range(k)]
    for seq, t in enumerate(times, start=1):
        m.on_heartbeat(hb(seq, epoch), t)
    assert state_of(m) is LinkState.ALIVE
    return m, times[-1]


def test_a_burst_of_heartbeats_counts_once() -> None:
    """PROTOCOL.md §5: K heartbeats in 0 ms (one write, or a stall's backlog) are not a
    steady stream; the streak needs its counted heartbeats LATE / 10 apart."""
    m = HeartbeatMonitor(TIMING, recover_count=3)
    assert m.min_spacing_s == pytest.approx(LATE / 10)
    for seq in range(1, 11):
        assert m.on_heartbeat(hb(seq), 1.0) == []  # ten at once: still LOST
    assert state_of(m) is LinkState.LOST and m.counters.too_close == 9
    assert m.deadline() is None  # LOST: only heartbeats change it
    assert m.counters.accepted == 10  # accepted all the same: seq tracked, timers fed
    assert m.on_heartbeat(hb(11), 1.0 + LATE / 10 * 1.01) == []  # the second counted one
    assert m.on_heartbeat(hb(12), 1.0 + LATE / 10 * 1.99) == []  # too close to it
    [ev] = m.on_heartbeat(hb(13), 1.0 + LATE / 10 * 2.02)
    assert ev.new is LinkState.ALIVE


def test_a_twin_faster_than_the_spacing_still_comes_alive() -> None:
    """Heartbeats LATE / 25 apart: one in every few counts, none breaks the streak."""
    m = HeartbeatMonitor(TIMING, recover_count=3)
    period = LATE / 25
    alive_at = None
    for seq in range(1, 100):
        if m.on_heartbeat(hb(seq), seq * period):
            alive_at = seq * period
            break
    assert alive_at is not None
    assert alive_at - period >= 2 * m.min_spacing_s - 1e-9  # the streak spans the spacing
    assert alive_at - period <= 2 * m.min_spacing_s + 2 * period


def test_too_close_heartbeats_do_not_hide_a_gap() -> None:
    """A gap above LATE after an uncounted heartbeat still restarts the streak."""
    m = HeartbeatMonitor(TIMING, recover_count=3)
    m.on_heartbeat(hb(1), 0.0)
    m.on_heartbeat(hb(2), 0.001)  # too close: not counted
    m.on_heartbeat(hb(3), 0.001 + LATE + 0.01)  # gap above LATE: streak starts again at 1
    assert m.on_heartbeat(hb(4), 0.3) == []
    [ev] = m.on_heartbeat(hb(5), 0.35)
    assert ev.new is LinkState.ALIVE


def test_starts_lost_with_no_deadline() -> None:
    m = HeartbeatMonitor(TIMING)
    assert state_of(m) is LinkState.LOST
    assert m.deadline() is None
    assert m.last_seen is None
    assert m.poll(1000.0) == []


def test_k_healthy_heartbeats_bring_the_link_alive() -> None:
    m = HeartbeatMonitor(TIMING, recover_count=3)
    assert m.on_heartbeat(hb(1), 0.0) == []
    assert m.on_heartbeat(hb(2), 0.1) == []
    events = m.on_heartbeat(hb(3), 0.2)
    assert events == [LinkEvent(LinkState.LOST, LinkState.ALIVE, events[0].cause, 0.2)]
    assert "3 consecutive" in events[0].cause
    assert m.counters.accepted == 3


def test_silence_goes_late_then_lost_at_the_deadlines() -> None:
    m, t = alive_monitor()
    assert m.deadline() == pytest.approx(t + LATE)
    assert m.poll(t + LATE - 1e-6) == []
    [late] = m.poll(m.deadline() or 0.0)
    assert (late.old, late.new) == (LinkState.ALIVE, LinkState.LATE)
    assert m.deadline() == pytest.approx(t + TIMEOUT)
    assert m.poll(t + TIMEOUT - 1e-6) == []
    [lost] = m.poll(t + TIMEOUT)
    assert (lost.old, lost.new) == (LinkState.LATE, LinkState.LOST)
    assert "no heartbeat for" in lost.cause
    assert m.deadline() is None


def test_one_long_silence_reports_late_and_lost_in_one_poll() -> None:
    m, t = alive_monitor()
    events = m.poll(t + 10.0)
    assert [(e.old, e.new) for e in events] == [
        (LinkState.ALIVE, LinkState.LATE),
        (LinkState.LATE, LinkState.LOST),
    ]


def test_late_returns_to_alive_on_the_next_heartbeat() -> None:
    m, t = alive_monitor()
    m.poll(t + 0.3)
    assert state_of(m) is LinkState.LATE
    [ev] = m.on_heartbeat(hb(4), t + 0.3)
    assert (ev.old, ev.new) == (LinkState.LATE, LinkState.ALIVE)


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.0, max_value=TIMEOUT / 2), min_size=1, max_size=60))
def test_jitter_up_to_half_the_timeout_never_trips(gaps: list[float]) -> None:
    m, t = alive_monitor()
    seq = 3
    for gap in gaps:
        # poll just before the heartbeat arrives, as the runtime's timer would
        assert all(e.new is not LinkState.LOST for e in m.poll(t + gap))
        t += gap
        seq += 1
        m.on_heartbeat(hb(seq), t)
        assert state_of(m) is LinkState.ALIVE
    assert m.counters.accepted == 3 + len(gaps)


def test_stale_epoch_is_ignored_and_counted() -> None:
    m, t = alive_monitor(epoch=5)
    # a stale "unhealthy" from an old session changes nothing
    assert m.on_heartbeat(hb(99, epoch=4, healthy=False), t + 0.1) == []
    assert state_of(m) is LinkState.ALIVE
    assert m.counters.stale_epoch == 1
    # nor does a stale "alive" keep a silent link up
    assert m.on_heartbeat(hb(100, epoch=4), t + 0.2) == []
    assert m.last_seen == t
    events = m.poll(t + TIMEOUT)
    assert events[-1].new is LinkState.LOST
    assert m.counters.stale_epoch == 2


def test_stale_epoch_cannot_bring_a_lost_link_back() -> None:
    m = HeartbeatMonitor(TIMING)
    m.on_heartbeat(hb(1, epoch=7), 0.0)
    for i in range(10):
        assert m.on_heartbeat(hb(10 + i, epoch=6), 0.05 * (i + 1)) == []
    assert state_of(m) is LinkState.LOST
    assert m.counters.stale_epoch == 10


def test_stale_bye_is_ignored_and_a_current_bye_drops_the_link() -> None:
    m, t = alive_monitor(epoch=3)
    assert m.on_bye(Bye(epoch=2, reason="old"), t) == []
    assert state_of(m) is LinkState.ALIVE
    [ev] = m.on_bye(Bye(epoch=3, reason="shutting down"), t + 0.01)
    assert ev.new is LinkState.LOST
    assert "shutting down" in ev.cause


def test_replayed_and_out_of_order_heartbeats_are_ignored() -> None:
    m, t = alive_monitor()  # seqs 1..3 seen
    assert m.on_heartbeat(hb(3), t + 0.1) == []
    assert m.on_heartbeat(hb(2), t + 0.1) == []
    assert m.on_heartbeat(hb(1), t + 0.1) == []
    c = m.counters
    assert (c.duplicates, c.out_of_order, c.accepted) == (1, 2, 3)
    assert m.last_seen == t  # a replay does not refresh the link
    assert m.poll(t + TIMEOUT)[-1].new is LinkState.LOST


def test_replays_cannot_recover_a_lost_link() -> None:
    m, t = alive_monitor()
    m.on_disconnect(t + 0.01)
    for i in range(5):
        m.on_heartbeat(hb(3), t + 0.02 * (i + 1))
    assert state_of(m) is LinkState.LOST


def test_new_epoch_restarts_sequence_tracking() -> None:
    m, t = alive_monitor(epoch=1)  # seqs 1..3
    assert m.on_heartbeat(hb(1, epoch=2), t + 0.1) == []
    assert state_of(m) is LinkState.ALIVE
    assert m.epoch == 2
    assert m.counters.accepted == 4
    assert m.on_heartbeat(hb(1, epoch=2), t + 0.2) == []
    assert m.counters.duplicates == 1


def test_unhealthy_heartbeat_is_lost_at_once() -> None:
    m, t = alive_monitor()
    [ev] = m.on_heartbeat(hb(4, healthy=False), t + 0.05)
    assert (ev.old, ev.new, ev.cause) == (LinkState.ALIVE, LinkState.LOST, "twin reports unhealthy")
    assert m.counters.unhealthy == 1


def test_disconnect_is_lost_at_once() -> None:
    m, t = alive_monitor()
    [ev] = m.on_disconnect(t + 0.01)
    assert ev.new is LinkState.LOST
    assert m.on_disconnect(t + 0.02) == []


def test_recovery_needs_k_consecutive_healthy_heartbeats() -> None:
    m, t = alive_monitor()
    m.on_heartbeat(hb(4, healthy=False), t + 0.1)
    m.on_heartbeat(hb(5), t + 0.2)
    m.on_heartbeat(hb(6), t + 0.3)
    m.on_heartbeat(hb(7, healthy=False), t + 0.4)  # breaks the streak
    m.on_heartbeat(hb(8), t + 0.5)
    m.on_heartbeat(hb(9), t + 0.6)
    assert state_of(m) is LinkState.LOST
    [ev] = m.on_heartbeat(hb(10), t + 0.7)
    assert ev.new is LinkState.ALIVE


def test_recovery_streak_breaks_on_a_gap_longer_than_the_late_threshold() -> None:
    m = HeartbeatMonitor(TIMING, recover_count=3)
    m.on_heartbeat(hb(1), 0.0)
    m.on_heartbeat(hb(2), 0.2)
    m.on_heartbeat(hb(3), 0.2 + LATE + 0.01)  # gap too long: the streak starts over here
    assert state_of(m) is LinkState.LOST
    m.on_heartbeat(hb(4), 0.3 + LATE)
    assert state_of(m) is LinkState.LOST
    m.on_heartbeat(hb(5), 0.4 + LATE)
    assert state_of(m) is LinkState.ALIVE


def test_a_noisy_link_does_not_flap() -> None:
    """Every other heartbeat lost for good (gap 2 x 0.2 s > late): LOST stays LOST."""
    m = HeartbeatMonitor(TIMING, recover_count=3)
    states = set()
    for i in range(20):
        m.on_heartbeat(hb(2 * i), 0.4 * i)
        m.poll(0.4 * i + 0.2)
        states.add(m.state)
    assert states == {LinkState.LOST}


def test_new_epoch_restarts_a_recovery_streak() -> None:
    m = HeartbeatMonitor(TIMING, recover_count=3)
    m.on_heartbeat(hb(1, epoch=1), 0.0)
    m.on_heartbeat(hb(2, epoch=1), 0.1)
    m.on_heartbeat(hb(1, epoch=2), 0.2)
    assert state_of(m) is LinkState.LOST
    m.on_heartbeat(hb(2, epoch=2), 0.3)
    m.on_heartbeat(hb(3, epoch=2), 0.4)
    assert state_of(m) is LinkState.ALIVE


def test_recover_count_one_recovers_on_the_first_heartbeat() -> None:
    m = HeartbeatMonitor(TIMING, recover_count=1)
    [ev] = m.on_heartbeat(hb(1), 0.0)
    assert ev.new is LinkState.ALIVE


@pytest.mark.parametrize(
    ("k", "late", "timeout"), [(0, LATE, TIMEOUT), (3, 0.0, TIMEOUT), (3, 0.6, TIMEOUT)]
)
def test_inconsistent_construction_is_refused(k: int, late: float, timeout: float) -> None:
    timing = Timing(0.05, heartbeat_timeout_s=timeout, heartbeat_late_s=late, watchdog_deadline_s=1)
    with pytest.raises(ValueError):
        HeartbeatMonitor(timing, recover_count=k)


def test_the_hellos_epoch_is_the_connections_floor() -> None:
    """PROTOCOL.md §4: after a hello of epoch 7, heartbeats of epoch 7 count, of 6 are stale,
    of 8 start a new session; the next hello (epoch 3, a twin whose clock went back) resets it."""
    m = HeartbeatMonitor(TIMING, recover_count=3)
    m.new_session(7)
    assert m.on_heartbeat(hb(1, epoch=6), 0.0) == [] and m.counters.stale_epoch == 1
    for seq, t in ((1, 0.1), (2, 0.2)):
        assert m.on_heartbeat(hb(seq, epoch=7), t) == []
    [ev] = m.on_heartbeat(hb(3, epoch=7), 0.3)
    assert ev.new is LinkState.ALIVE and m.epoch == 7
    m.new_session(3)
    assert m.epoch == 3
    m.on_heartbeat(hb(1, epoch=3), 0.35)
    assert m.counters.stale_epoch == 1 and m.counters.accepted == 4
