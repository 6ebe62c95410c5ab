"""What to send to the twin next: a sans-IO decision over seq ranges (no clock, no I/O).

The spool holds records with seqs; the twin acknowledges cumulatively ("I hold everything up
to seq N"). On each (re)connect the forwarder splits the seq line in two::

      acked            boundary (= last committed seq at connect)
    ----|=================|--------------------------->  seq
        |   history       |   live
        |  (resent, rate  |  (sent as soon as committed,
        |   bound, window)|   never waits for history)

* History ``(resume_after, boundary]`` is sent in seq order, marked historical, at most
  ``history_rate`` records/s (token bucket with ``history_burst``), and with at most
  ``window`` historical records sent but not yet acknowledged.
* Live ``(boundary, committed]`` is sent in seq order as soon as it is committed; live data
  is never held back by history (the control loop and live telemetry come first).
* Resend from the last ack after a reconnect: delivery is at-least-once; the twin drops
  duplicates by seq. Because the twin acks only a contiguous prefix, live records stay
  unacked (but delivered) until history has caught up; they are resent after a reconnect.

A ``Send(first, last, historical)`` names a seq range; the adapter reads the stored records
of that range (``Spool.pending(first - 1, limit, upto_seq=last)``; dropped seqs are simply
absent) and transmits them. Tokens are charged for the whole range.

Bad input: an ack above the last committed seq is refused (counted in ``bad_acks``); calling
``next_send`` while disconnected returns None. Nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Send:
    """Send the stored records with ``first <= seq <= last``."""

    first: int
    last: int
    historical: bool

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Forwarder:
    """Pure forwarding decisions. All times are monotonic seconds passed in by the caller."""

    def __init__(
        self,
        *,
        history_rate: float,
        history_burst: int,
        window: int,
        max_batch: int,
        acked: int = 0,
    ) -> None:
        if history_rate <= 0 or history_burst < 1 or window < 1 or max_batch < 1:
            raise ValueError("history_rate > 0, history_burst >= 1, window >= 1, max_batch >= 1")
        self.history_rate = history_rate
        self.history_burst = history_burst
        self.window = window
        self.max_batch = max_batch
        self.connected = False
        self.acked = acked  # highest seq the twin has acknowledged (cumulative)
        self.committed = acked  # highest seq durably in the spool
        self.boundary = acked  # end of history for this connection
        self.hist_sent = acked  # last historical seq sent on this connection
        self.live_sent = acked  # last live seq sent on this connection
        self.bad_acks = 0
        self._tokens = float(history_burst)
        self._t_tokens = 0.0

    # ------------------------------------------------------------------ inputs
    def connect(self, now: float, resume_after: int | None = None) -> None:
        """The link is up: everything after ``resume_after`` up to ``committed`` is history.

        ``resume_after`` defaults to the last ack seen here; pass what the twin reports it
        holds when the protocol tells it (a twin that lost data gets resent whatever the
        spool still has). It is clamped to ``committed``.
        """
        start = self.acked if resume_after is None else min(resume_after, self.committed)
        self.acked = start
        self.connected = True
        self.boundary = self.committed
        self.hist_sent = start
        self.live_sent = self.committed
        self._tokens = float(self.history_burst)
        self._t_tokens = now

    def disconnect(self) -> None:
        """The link dropped: whatever was sent and not acked will be resent on connect."""
        self.connected = False

    def commit(self, last_seq: int) -> None:
        """The spool durably holds records up to ``last_seq`` (seqs only go up)."""
        self.committed = max(self.committed, last_seq)

    def ack(self, upto_seq: int) -> bool:
        """The twin holds everything up to ``upto_seq``. False (counted) if beyond committed."""
        if upto_seq > self.committed:
            self.bad_acks += 1
            return False
        if upto_seq <= self.acked:
            return True
        self.acked = upto_seq
        self.hist_sent = max(self.hist_sent, min(upto_seq, self.boundary))
        self.live_sent = max(self.live_sent, upto_seq)
        return True

    # ------------------------------------------------------------------ decisions
    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._t_tokens)
        self._tokens = min(float(self.history_burst), self._tokens + elapsed * self.history_rate)
        self._t_tokens = max(self._t_tokens, now)

    @property
    def history_in_flight(self) -> int:
        """Historical records sent on this connection and not yet acknowledged."""
        return max(0, self.hist_sent - self.acked)

    @property
    def history_left(self) -> int:
        """Historical records of this connection not yet sent."""
        return max(0, self.boundary - self.hist_sent)

    def next_send(self, now: float) -> Send | None:
        """The next range to send, or None if nothing may be sent now. Live goes first."""
        if not self.connected:
            return None
        if self.committed > self.live_sent:
            first = self.live_sent + 1
            last = min(self.committed, self.live_sent + self.max_batch)
            self.live_sent = last
            return Send(first, last, historical=False)
        self._refill(now)
        room = self.window - self.history_in_flight
        n = min(self.history_left, self.max_batch, room, int(self._tokens))
        if n <= 0:
            return None
        first = self.hist_sent + 1
        self.hist_sent += n
        self._tokens -= n
        return Send(first, self.hist_sent, historical=True)

    def wait_s(self, now: float) -> float | None:
        """Seconds until history may be sent again; 0 if something can be sent now; None if
        nothing is waiting on time (idle, disconnected, or blocked on acks)."""
        if not self.connected:
            return None
        if self.committed > self.live_sent:
            return 0.0
        if self.history_left == 0 or self.window - self.history_in_flight <= 0:
            return None
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.history_rate
