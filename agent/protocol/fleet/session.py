"""The fleet link's session rules, sans-IO (FLEET.md §1.5, §7.3, §7.4; ``WIRE.md``).

:class:`FleetSession` is told what happened on one agent's MQTT connection (each call with
the monotonic ``now``) and answers with what to do, as a tuple of frozen actions. The
adapter (``agent.io.fleet.link``) does the bytes: it decodes STATE and NCMD payloads,
publishes NBIRTH/NDEATH and calls back into the runtime. Nothing here imports protobuf or
an MQTT client.

Rules, with the Sparkplug tck-ids they follow:

* STATE (``tck-id-message-flow-edge-node-birth-publish-phid-wait``, ``…-phid-wait-timestamp``):
  an ``online`` STATE whose timestamp is >= every STATE timestamp seen before (the first one
  always counts) gates NBIRTH: :class:`Birth` once per connection. STATE never makes the
  twin ALIVE.
* A valid offline STATE (``…-phid-offline``, ``…-termination-host-offline``): its timestamp
  >= that of the prior ``online`` one (any, if none was seen) while born is a loss at once:
  :class:`Drop` with ``ndeath`` (publish NDEATH, disconnect, walk to the next server,
  ``…-host-offline-reconnect``). An older offline one is stale and ignored
  (``…-host-offline-timestamp``), counted ``state_stale``. An offline STATE before this
  connection's birth only keeps the node waiting (nothing was born to take down).
* Heartbeats: only envelopes the :class:`~agent.protocol.fleet.envelope.Opener` verifies
  count; every refusal is counted by its reason (``refused``). The first verified
  heartbeat of an epoch after the birth opens the session: :class:`Up`, then
  :class:`Deliver` of ``TwinHello(PROTOCOL_LATEST, host_id, epoch)`` and of the heartbeat
  (``WIRE.md``). A heartbeat of a newer epoch is a twin restart: the session ends
  (:class:`Down`) and a new one opens, as a new TLS connection would. A signed ``bye``
  is delivered and ends the session. Heartbeats before the birth are verified (they keep
  the connection from being idle) but not delivered, counted ``before_birth``.
* Half-open connection: no verified heartbeat for ``idle_timeout_s`` since the connection
  came up or the last one: :class:`Drop` (no NDEATH needed: the connection is suspect).
* The echo rule (§7.3): every status the agent sends is noted (:meth:`status_sent`); a
  signed command's ``echo`` is the highest status seq the twin has seen. Once a status
  has been sent in this session, the session is lost when no ack has echoed a status
  sent within the last ``echo_timeout_s`` ("the twin does not hear us"): :class:`Drop`.
* Commands (signed envelopes to this device) are delivered only while the session is up
  and only for its epoch (else counted ``no_session`` / ``stale_epoch``).
* Rebirth (NCMD ``Node Control/Rebirth``): a new :class:`Birth` on the same connection
  with the same bdSeq, never a reconnect; requests within ``REBIRTH_COALESCE_S`` of the
  last birth are coalesced into it (counted ``rebirths_coalesced``).
* ``seq`` (:meth:`next_seq`): 0 in every NBIRTH, then 1..255, wrapping to 0
  (``tck-id-payloads-sequence-num-incrementing``).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.model.messages import (
    PROTOCOL_LATEST,
    Bye,
    Heartbeat,
    Origin,
    TwinHello,
    TwinMessage,
)
from agent.protocol.fleet.envelope import EnvelopeRefused, Opener

REBIRTH_COALESCE_S = 1.0
SEQ_MODULUS = 256


@dataclass(frozen=True)
class Birth:
    """Publish NBIRTH now (seq 0, this connection's bdSeq); ``rebirth``: asked by the host."""

    rebirth: bool = False


@dataclass(frozen=True)
class Up:
    """The session opened (tell the runtime: ``on_connection(True, reason)``)."""

    origin: Origin
    reason: str


@dataclass(frozen=True)
class Deliver:
    """Hand ``msg`` to the runtime (``on_message``), received at ``t``, from ``origin``."""

    msg: TwinMessage
    t: float
    origin: Origin


@dataclass(frozen=True)
class Down:
    """The session ended (``on_connection(False, reason)``); the connection may stay."""

    reason: str


@dataclass(frozen=True)
class Drop:
    """End the connection for ``reason`` and walk to the next server; ``ndeath``: publish
    NDEATH first (the host is told the node is gone)."""

    reason: str
    ndeath: bool


Action = Birth | Up | Deliver | Down | Drop


@dataclass(frozen=True)
class SessionSettings:
    """Who the twin is and the timers. ValueError on impossible values."""

    host_id: str
    device_id: str
    twin_keys: tuple[bytes, ...]
    idle_timeout_s: float = 2.0
    echo_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        if not self.twin_keys:
            raise ValueError("twin_keys must name at least one key")
        for name in ("idle_timeout_s", "echo_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class FleetSession:
    """The rules of the module docstring for one link (across its connections)."""

    settings: SessionSettings
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    refused: Counter[str] = field(default_factory=Counter)
    births: int = 0
    _opener: Opener = field(init=False, repr=False)
    _connected: bool = False
    _born: bool = False
    _born_at: float = float("-inf")
    _state_ts: int | None = None  # the newest STATE timestamp seen (any)
    _online_ts: int | None = None  # the newest online STATE timestamp seen
    _seq: int = 0
    _heard: float = 0.0  # the last verified heartbeat (or the connection's start)
    _session: Origin | None = None
    _up_at: float = 0.0
    _sent: deque[tuple[int, float]] = field(default_factory=deque)  # (status seq, t)
    _echoed_at: float | None = None  # send time of the newest echoed status

    def __post_init__(self) -> None:
        s = self.settings
        self._opener = Opener(s.host_id, s.device_id, s.twin_keys)

    @property
    def session(self) -> Origin | None:
        """The open session, or None."""
        return self._session

    @property
    def born(self) -> bool:
        """NBIRTH was published on this connection."""
        return self._born

    # --- events ----------------------------------------------------------------------

    def connected(self, now: float) -> tuple[Action, ...]:
        """CONNACK received and the subscriptions granted."""
        self._connected, self._born, self._heard = True, False, now
        self._born_at = float("-inf")
        return ()

    def disconnected(self, reason: str) -> tuple[Action, ...]:
        """The MQTT connection ended (ours or the broker's doing): a loss at once."""
        self._connected = self._born = False
        return self._end(reason)

    def state(self, online: bool, timestamp_ms: int, now: float) -> tuple[Action, ...]:
        """A STATE of the configured host arrived (already parsed)."""
        if not online:
            if self._online_ts is not None and timestamp_ms < self._online_ts:
                self.refused["state_stale"] += 1
                return ()
            self._state_ts = max(self._state_ts or 0, timestamp_ms)
            if not self._born:
                return ()  # nothing born yet: keep waiting for online
            return (*self._end("twin host offline (STATE)"),
                    Drop("twin host offline (STATE)", ndeath=True))
        if self._state_ts is not None and timestamp_ms < self._state_ts:
            self.refused["state_stale"] += 1
            return ()
        self._state_ts = self._online_ts = timestamp_ms
        if self._connected and not self._born:
            return (self._birth(now, rebirth=False),)
        return ()

    def state_invalid(self) -> None:
        """A STATE payload that is not one (counted; changes nothing)."""
        self.refused["state_invalid"] += 1

    def rebirth(self, now: float) -> tuple[Action, ...]:
        """The host asked for a rebirth (NCMD ``Node Control/Rebirth`` = true)."""
        if not self._born:
            return ()
        if now - self._born_at < REBIRTH_COALESCE_S:
            self.refused["rebirths_coalesced"] += 1
            return ()
        return (self._birth(now, rebirth=True),)

    def fanout(self, wire: bytes, now: float) -> tuple[Action, ...]:
        """An envelope from the heartbeat fan-out topic."""
        try:
            env = self._opener.open(wire, fanout=True)
        except EnvelopeRefused as exc:
            self.refused[exc.reason] += 1
            return ()
        self._heard = now
        if not self._born:
            self.refused["before_birth"] += 1
            return ()
        msg = env.msg
        assert isinstance(msg, Heartbeat | Bye)  # the Opener's fan-out rule
        out: list[Action] = []
        if self._session is not None and msg.epoch > self._session.epoch:
            out += self._end(f"twin epoch {self._session.epoch} -> {msg.epoch} (a restart)")
        if self._session is None:
            if isinstance(msg, Bye):
                self.refused["no_session"] += 1
                return tuple(out)
            self._session = Origin(next(self.numbers), msg.epoch)
            self._up_at = now
            self._sent.clear()
            self._echoed_at = None
            out += [Up(self._session, f"twin {self.settings.host_id} epoch {msg.epoch}"),
                    Deliver(TwinHello(PROTOCOL_LATEST, self.settings.host_id, msg.epoch),
                            now, self._session)]
        elif msg.epoch < self._session.epoch:  # the Opener refuses older epochs already
            self.refused["stale_epoch"] += 1  # pragma: no cover
            return tuple(out)  # pragma: no cover
        out.append(Deliver(msg, now, self._session))
        if isinstance(msg, Bye):
            out += self._end(f"twin said bye ({msg.reason or 'no reason'})")
        return tuple(out)

    def command(self, wire: bytes, now: float) -> tuple[Action, ...]:
        """An envelope from NCMD ``twinguard/cmd``."""
        try:
            env = self._opener.open(wire, fanout=False)
        except EnvelopeRefused as exc:
            self.refused[exc.reason] += 1
            return ()
        session = self._session
        if session is None:
            self.refused["no_session"] += 1
            return ()
        if env.epoch != session.epoch:
            self.refused["stale_epoch"] += 1
            return ()
        if env.echo is not None:
            self._echo(env.echo)
        return (Deliver(env.msg, now, session),)

    def status_sent(self, seq: int, now: float) -> None:
        """The agent published a status with ``seq`` (for the echo rule)."""
        if self._session is not None:
            self._sent.append((seq, now))

    def tick(self, now: float) -> tuple[Action, ...]:
        """Time passed: the idle timeout and the echo rule."""
        if not self._connected:
            return ()
        if now - self._heard >= self.settings.idle_timeout_s:
            reason = f"idle timeout: no verified heartbeat for {self.settings.idle_timeout_s:g} s"
            return (*self._end(reason), Drop(reason, ndeath=False))
        timeout = self.settings.echo_timeout_s
        if (self._session is not None and self._sent and now - self._sent[0][1] > timeout
                and (self._echoed_at is None or now - self._echoed_at > timeout)):
            reason = (f"the twin does not hear us: no ack echoed a status sent within "
                      f"{timeout:g} s")
            self.refused["echo_timeouts"] += 1
            return (*self._end(reason), Drop(reason, ndeath=True))
        return ()

    def next_seq(self) -> int:
        """The seq of the next NDATA (1..255, then 0, ...; NBIRTH is always 0)."""
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return self._seq

    # --- internals -------------------------------------------------------------------

    def _birth(self, now: float, *, rebirth: bool) -> Birth:
        self._born, self._born_at, self._seq = True, now, 0
        self.births += 1
        return Birth(rebirth)

    def _echo(self, echo: int) -> None:
        """An ack echoed ``echo``: every status up to it was heard."""
        while self._sent and self._sent[0][0] <= echo:
            _, t = self._sent.popleft()
            self._echoed_at = t if self._echoed_at is None else max(self._echoed_at, t)

    def _end(self, reason: str) -> tuple[Action, ...]:
        if self._session is None:
            return ()
        self._session = None
        self._sent.clear()
        self._echoed_at = None
        return (Down(reason),)
