"""The twin heartbeat monitor: heartbeats and silence in, link events out (sans-IO).

The caller hands in every :class:`~agent.model.messages.Heartbeat` the twin link decoded,
a disconnect when the link drops, and calls :meth:`HeartbeatMonitor.poll` whenever the timer
it set for :meth:`HeartbeatMonitor.deadline` fires (and, for belt and braces, every tick).
``now`` is monotonic seconds from the caller's clock; this module never reads a clock.

Link states (old -> new: when)::

    ALIVE -> LATE    silence >= heartbeat_late_s                       (warning only)
    LATE  -> ALIVE   an accepted healthy heartbeat
    ALIVE, LATE -> LOST
                     silence >= heartbeat_timeout_s, an accepted unhealthy heartbeat,
                     or the link disconnected
    LOST  -> ALIVE   K consecutive accepted healthy heartbeats (default 3), no gap between
                     them longer than heartbeat_late_s (a noisy link does not flap), each
                     counted one at least heartbeat_late_s / 10 after the one counted before
                     it (a burst is one heartbeat, not three)

The streak is evidence that the twin sends *steadily*, so it must span time: K counted
heartbeats span at least (K - 1) * heartbeat_late_s / 10 (sim-tank: 2 * 25 = 50 ms). A
heartbeat closer than that to the last counted one is accepted as usual (it refreshes the
silence timers and its ``seq`` is tracked) but does not advance the streak; it does not
break it either, so a twin faster than the spacing still comes ALIVE (one heartbeat per
spacing counts). A twin whose period is below heartbeat_late_s, as it must be, and above a
tenth of it sees no difference: every heartbeat counts. Three heartbeats in one write, or
heartbeats buffered by a network stall and delivered together, count once.

The monitor starts LOST: nothing has been seen yet.

Which heartbeats count:

* ``epoch`` identifies a twin session and strictly increases across twin restarts. A
  heartbeat from an epoch lower than the highest seen is *stale*: counted and ignored, it
  never changes anything (neither an old "alive" nor an old "unhealthy").
* A higher epoch starts a new session: sequence tracking restarts and a recovery streak in
  progress starts over.
* Within an epoch ``seq`` must strictly increase; a repeated ``seq`` is a *duplicate*, a
  lower one is *out of order*; both are counted and ignored (replays change nothing).
* An accepted heartbeat with ``healthy=False`` drives LOST at once (cause
  "twin reports unhealthy") and breaks any recovery streak.
* A :class:`~agent.model.messages.Bye` of the current (or a newer) epoch drives LOST at once
  and **ends** that epoch for good: later heartbeats of it are counted (``after_bye``) and
  ignored, on this connection and every later one; only another epoch brings the twin back.
  A Bye from an older epoch is stale and ignored like a stale heartbeat.
* The *highest epoch* is tracked per link session: :meth:`HeartbeatMonitor.new_session` (a
  new connection's hello: TLS authenticated the twin, and no frame of an old connection can
  arrive on a new one) forgets it, so an absurd epoch (2^64-1) or a twin whose epoch went
  back cannot lock the twin out until the agent restarts (PROTOCOL.md §4).

LATE is a warning only; for control, only LOST matters. Nothing here raises on bad input:
every heartbeat is either accepted or counted as rejected.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from agent.model.messages import Bye, Heartbeat
from agent.model.profile import Timing

log = logging.getLogger(__name__)

DEFAULT_RECOVER_COUNT = 3
SPACING_FRACTION = 0.1  # counted streak heartbeats are >= this * heartbeat_late_s apart


class LinkState(enum.Enum):
    """How the twin link looks to the agent."""

    ALIVE = "alive"
    LATE = "late"  # warning only: control still trusts the twin
    LOST = "lost"  # for control, the twin is gone


@dataclass(frozen=True)
class LinkEvent:
    """One change of link state, at monotonic time ``t``, with a human-readable cause."""

    old: LinkState
    new: LinkState
    cause: str
    t: float


@dataclass(frozen=True)
class LinkCounters:
    """What the monitor has seen since it was built."""

    accepted: int
    duplicates: int
    out_of_order: int
    stale_epoch: int
    unhealthy: int
    after_bye: int = 0  # heartbeats of an epoch a bye had ended
    too_close: int = 0  # accepted while LOST, closer than min_spacing_s to the last counted


class HeartbeatMonitor:
    """Turns heartbeats and silence into ALIVE / LATE / LOST.

    ``recover_count`` (K) is how many consecutive accepted healthy heartbeats, with no gap
    longer than ``timing.heartbeat_late_s`` between them and counted ones at least
    :attr:`min_spacing_s` apart, bring a LOST link back to ALIVE.
    Raises ValueError if K < 1 or the timing is inconsistent (a bug in the caller or an
    unvalidated profile).
    """

    def __init__(self, timing: Timing, recover_count: int = DEFAULT_RECOVER_COUNT) -> None:
        if recover_count < 1:
            raise ValueError(f"recover_count must be >= 1, got {recover_count}")
        if not 0 < timing.heartbeat_late_s <= timing.heartbeat_timeout_s:
            raise ValueError(
                "need 0 < heartbeat_late_s <= heartbeat_timeout_s, got "
                f"{timing.heartbeat_late_s} and {timing.heartbeat_timeout_s}"
            )
        self._late_s = timing.heartbeat_late_s
        self._timeout_s = timing.heartbeat_timeout_s
        self._recover_count = recover_count
        self.min_spacing_s = timing.heartbeat_late_s * SPACING_FRACTION
        self._state = LinkState.LOST
        self._last_seen: float | None = None
        self._epoch: int | None = None
        self._seq: int | None = None
        self._streak = 0
        self._streak_last: float | None = None
        self._accepted = 0
        self._duplicates = 0
        self._out_of_order = 0
        self._stale_epoch = 0
        self._unhealthy = 0
        self._ended: int | None = None  # the epoch a bye ended on this session
        self._after_bye = 0
        self._too_close = 0

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def last_seen(self) -> float | None:
        """Time of the last accepted heartbeat (healthy or not); None before the first."""
        return self._last_seen

    @property
    def epoch(self) -> int | None:
        """The highest epoch seen (the current twin session); None before the first."""
        return self._epoch

    @property
    def seq(self) -> int | None:
        """The last accepted heartbeat's ``seq`` in the current epoch (None: none yet)."""
        return self._seq

    @property
    def counters(self) -> LinkCounters:
        return LinkCounters(
            accepted=self._accepted,
            duplicates=self._duplicates,
            out_of_order=self._out_of_order,
            stale_epoch=self._stale_epoch,
            unhealthy=self._unhealthy,
            after_bye=self._after_bye,
            too_close=self._too_close,
        )

    def deadline(self) -> float | None:
        """Monotonic time at which :meth:`poll` will next change the state, or None.

        ALIVE: when it turns LATE; LATE: when it turns LOST; LOST: None (only heartbeats
        can change it). ``poll(deadline())`` always fires: the thresholds are inclusive.
        """
        if self._last_seen is None or self._state is LinkState.LOST:
            return None
        if self._state is LinkState.ALIVE:
            return self._last_seen + self._late_s
        return self._last_seen + self._timeout_s

    def on_heartbeat(self, hb: Heartbeat, now: float) -> list[LinkEvent]:
        """Account one received heartbeat; return the state changes it caused (0 or 1)."""
        if self._ended is not None and hb.epoch == self._ended:
            self._after_bye += 1
            log.debug("heartbeat of epoch %d after its bye ignored", hb.epoch)
            return []
        if self._epoch is not None and hb.epoch < self._epoch:
            self._stale_epoch += 1
            log.debug("stale heartbeat epoch %d < %d ignored", hb.epoch, self._epoch)
            return []
        if self._epoch is None or hb.epoch > self._epoch:
            if self._epoch is not None:
                log.info("twin session changed: epoch %d -> %d", self._epoch, hb.epoch)
            self._epoch = hb.epoch
            self._seq = None
            self._reset_streak()
        elif self._seq is not None and hb.seq <= self._seq:
            if hb.seq == self._seq:
                self._duplicates += 1
                log.debug("duplicate heartbeat seq %d ignored", hb.seq)
            else:
                self._out_of_order += 1
                log.debug("out-of-order heartbeat seq %d < %d ignored", hb.seq, self._seq)
            return []

        self._seq = hb.seq
        self._accepted += 1
        previous, self._last_seen = self._last_seen, now
        if not hb.healthy:
            self._unhealthy += 1
            self._reset_streak()
            return self._move(LinkState.LOST, "twin reports unhealthy", now)
        if self._state is not LinkState.LOST:
            return self._move(LinkState.ALIVE, "heartbeat received", now)

        if self._streak_last is None or previous is None or now - previous > self._late_s:
            self._streak, self._streak_last = 1, now  # (re)start: the first of a streak
        elif now - self._streak_last >= self.min_spacing_s:
            self._streak, self._streak_last = self._streak + 1, now
        else:
            self._too_close += 1  # accepted, but too soon after the last counted one
            return []
        if self._streak >= self._recover_count:
            self._reset_streak()
            return self._move(
                LinkState.ALIVE, f"{self._recover_count} consecutive healthy heartbeats", now
            )
        return []

    def on_bye(self, bye: Bye, now: float) -> list[LinkEvent]:
        """The twin says it is going away: LOST at once, unless the Bye is from an old epoch."""
        if self._epoch is not None and bye.epoch < self._epoch:
            self._stale_epoch += 1
            log.debug("stale bye epoch %d < %d ignored", bye.epoch, self._epoch)
            return []
        if self._epoch is None or bye.epoch > self._epoch:
            self._epoch = bye.epoch
            self._seq = None
        self._ended = self._epoch
        self._reset_streak()
        why = f"twin said bye ({bye.reason})" if bye.reason else "twin said bye"
        return self._move(LinkState.LOST, why, now)

    def new_session(self, epoch: int | None = None) -> None:
        """A new link session came up (its hello was accepted): the highest epoch and the
        sequence are forgotten (an epoch a bye ended stays ended; see the module docstring)
        and the hello's ``epoch``, if given, is this connection's epoch from now on: its
        heartbeats are accepted, those of a lower epoch are stale (PROTOCOL.md §4). The
        state is not changed: a LOST link still needs K healthy heartbeats."""
        self._epoch = epoch
        self._seq = None
        self._reset_streak()

    def on_disconnect(self, now: float) -> list[LinkEvent]:
        """The link to the twin dropped: LOST at once. Sequence tracking is kept (replays
        after a reconnect are still rejected)."""
        self._reset_streak()
        return self._move(LinkState.LOST, "twin link disconnected", now)

    def poll(self, now: float) -> list[LinkEvent]:
        """Evaluate the silence timeouts at ``now``; return the state changes (0, 1 or 2)."""
        if self._last_seen is None:
            return []
        # compare against the same sums deadline() returns, so poll(deadline()) always fires
        silence = now - self._last_seen
        events: list[LinkEvent] = []
        if self._state is LinkState.ALIVE and now >= self._last_seen + self._late_s:
            events += self._move(LinkState.LATE, f"no heartbeat for {silence:.3f} s", now)
        if self._state is LinkState.LATE and now >= self._last_seen + self._timeout_s:
            events += self._move(LinkState.LOST, f"no heartbeat for {silence:.3f} s", now)
        return events

    def _reset_streak(self) -> None:
        self._streak = 0
        self._streak_last = None

    def _move(self, new: LinkState, cause: str, now: float) -> list[LinkEvent]:
        if new is self._state:
            return []
        event = LinkEvent(old=self._state, new=new, cause=cause, t=now)
        self._state = new
        return [event]
