"""The messages of the twin protocol, as frozen data (see agent/protocol/twin/PROTOCOL.md).

Every message is one msgpack map (``agent.protocol.twin.frames``) whose ``"t"`` names its
type and whose other keys are exactly the dataclass fields below (optional ones may be left
out):

=========  ==============  ==================================================
direction  ``t``           class (fields)
=========  ==============  ==================================================
twin→agent ``hello``       TwinHello(protocol, twin_id, epoch)
twin→agent ``heartbeat``   Heartbeat(epoch, seq, healthy, [sent_ms])
twin→agent ``bye``         Bye(epoch, [reason])
agent→twin ``hello``       AgentHello(device_id, agent_version, protocol,
                           heartbeat_timeout_ms, heartbeat_late_ms)
agent→twin ``status``      Status(state, mode, seq, [sent_ms])
twin→agent ``recommend``   Recommend(id, output, value, valid_s)
twin→agent ``ack``         Ack(upto)
agent→twin ``recommend_result``  RecommendResult(id, accepted, reason, [detail])
agent→twin ``resume``      Resume(after)
agent→twin ``telemetry``   Telemetry(seq, prev, t_ms, historical, body)
twin→agent ``config_push`` ConfigPush(bundle)
agent→twin ``config_result``  ConfigResult(version, accepted, reason, [detail])
=========  ==============  ==================================================

The wire rules (field kinds, strict decoding, ``to_wire``) are in
:mod:`agent.protocol.twin.schema`; the cores (heartbeat, recommendations, controller) and the
runtime use only these classes. A new message type is a class here and a schema row there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

PROTOCOL_VERSION = 1  # what the agent's hello says: the version it needs from the twin
PROTOCOL_LATEST = 2  # the highest it speaks; a twin hello of 2 gets version-2 fields (§3.4)
TEXT_MAX = 128  # code points of a ``text`` field, unless its schema says otherwise


# --- twin -> agent ----------------------------------------------------------------------


@dataclass(frozen=True)
class TwinHello:
    """Twin -> agent, first message on every connection: who the twin is, which session."""

    T: ClassVar[str] = "hello"
    protocol: int
    twin_id: str
    epoch: int


@dataclass(frozen=True)
class Heartbeat:
    """Twin -> agent: "I am alive" (``healthy``) or "I am here but unhealthy".

    ``epoch`` identifies the twin's session and strictly increases across twin restarts
    (like Sparkplug B's bdSeq); ``seq`` strictly increases within an epoch.
    ``sent_ms`` (optional) is the twin's wall clock in Unix milliseconds: informative only,
    never used for a safety decision (the agent times heartbeats by its own monotonic clock).
    """

    T: ClassVar[str] = "heartbeat"
    epoch: int
    seq: int
    healthy: bool
    sent_ms: int | None = None


@dataclass(frozen=True)
class Bye:
    """Twin -> agent: "I am going away": loss of heartbeat for this epoch, at once."""

    T: ClassVar[str] = "bye"
    epoch: int
    reason: str | None = None


# --- agent -> twin ----------------------------------------------------------------------


@dataclass(frozen=True)
class AgentHello:
    """Agent -> twin, first message on every connection.

    ``heartbeat_timeout_ms`` / ``heartbeat_late_ms`` are the agent's heartbeat timing (the
    hardware profile's ``[timing]`` in milliseconds, both > 0, late <= timeout) so that the
    twin can choose a heartbeat period below ``heartbeat_late_ms``.
    """

    T: ClassVar[str] = "hello"
    device_id: str
    agent_version: str
    protocol: int
    heartbeat_timeout_ms: int
    heartbeat_late_ms: int


@dataclass(frozen=True)
class Status:
    """Agent -> twin: the agent's own heartbeat, safety state and the twin's authority. Sent
    once as soon as the session is up, on every change of either, and at least once a
    second."""

    T: ClassVar[str] = "status"
    state: str
    mode: str
    seq: int
    sent_ms: int | None = None
    authority: str | None = None  # local, returning, remote (PROTOCOL.md §5.1)


# --- recommendations and telemetry (issue 5; PROTOCOL.md sections 7.1 and 7.2) ----------

RECOMMEND_ID_MAX = 64
BODY_MAX = 60 * 1024  # one telemetry body; a frame around it stays under the default max_frame
RECOMMEND_REASONS = ("ok", "stale_session", "unknown_output", "out_of_limits", "not_a_number",
                     "expired", "too_long")


@dataclass(frozen=True)
class Origin:
    """Where a twin message came from, as the link saw it (not a wire message).

    ``session`` numbers the link's UP sessions (one per accepted twin hello; unique within
    the agent process, never reused); ``epoch`` is the twin epoch in force at the message's
    place in the stream: the hello's, raised by any higher ``epoch`` of a heartbeat or bye
    read before it on that connection. Recommendations are bound to it (PROTOCOL.md §7.1.1).
    """

    session: int
    epoch: int


@dataclass(frozen=True)
class Recommend:
    """Twin -> agent: "set ``output`` to ``value`` (engineering units) for ``valid_s`` s".

    Validated by the agent the moment it arrives (``agent.core.recommend``); always answered
    with a :class:`RecommendResult` carrying the same ``id``.
    """

    T: ClassVar[str] = "recommend"
    id: str
    output: str
    value: float
    valid_s: float


@dataclass(frozen=True)
class Ack:
    """Twin -> agent: "I hold every telemetry record up to seq ``upto``" (cumulative)."""

    T: ClassVar[str] = "ack"
    upto: int


@dataclass(frozen=True)
class RecommendResult:
    """Agent -> twin: the verdict on recommendation ``id`` (``reason`` "ok" when accepted)."""

    T: ClassVar[str] = "recommend_result"
    id: str
    accepted: bool
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class Resume:
    """Agent -> twin, once per connection before any telemetry: the agent's records up to
    ``after`` are acknowledged (or gone); what it sends on this connection comes after it."""

    T: ClassVar[str] = "resume"
    after: int


@dataclass(frozen=True)
class Telemetry:
    """Agent -> twin: one spooled record. ``prev`` is the seq of the record before it in
    the agent's spool (nothing exists between ``prev`` and ``seq``); ``body`` is the record's
    msgpack bytes (``agent.protocol.telemetry``)."""

    T: ClassVar[str] = "telemetry"
    seq: int
    prev: int
    t_ms: int
    historical: bool
    body: bytes


# --- configuration push (issue 6; PROTOCOL.md section 7.3) ------------------------------

CONFIG_BUNDLE_MAX = 60 * 1024  # bytes of one bundle on the wire (the agent's own cap is lower)
CONFIG_REASONS = (
    # the push was accepted, then confirmed / reverted when its confirmation window closed
    "accepted", "confirmed", "reverted",
    # refusals (agent.config.push.Reason), the bundle could not be stored, or was not handled
    "too_large", "malformed", "unsigned", "unknown_key", "bad_signature", "wrong_device",
    "not_yet_valid", "expired", "replay", "rollback", "bad_toml", "invalid_config",
    "role_not_allowed", "approvers_required", "safety_change_while_active", "store_failed",
)


@dataclass(frozen=True)
class ConfigPush:
    """Twin -> agent: a signed configuration bundle (``agent.config.bundle`` bytes) to evaluate.
    Always answered with a :class:`ConfigResult`."""

    T: ClassVar[str] = "config_push"
    bundle: bytes


@dataclass(frozen=True)
class ConfigResult:
    """Agent -> twin: what became of a pushed bundle (``reason`` one of CONFIG_REASONS).

    ``version`` is the bundle's version (0 if it could not be decoded). An accepted bundle
    gets ``accepted``, then ``confirmed`` (twin ALIVE again within the window) or
    ``reverted`` (``accepted`` false: the agent went back to its last good configuration).
    """

    T: ClassVar[str] = "config_result"
    version: int
    accepted: bool
    reason: str
    detail: str | None = None


TwinMessage = TwinHello | Heartbeat | Bye | Recommend | Ack | ConfigPush
AgentMessage = AgentHello | Status | RecommendResult | Resume | Telemetry | ConfigResult
Message = TwinMessage | AgentMessage
