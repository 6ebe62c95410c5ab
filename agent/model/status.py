"""The status snapshot model: what ``twinguard status`` shows, as frozen data.

:class:`StatusSnapshot` is built on the agent's loop (``agent.runtime.snapshot``), sent
over the status socket as one JSON object and read back by ``twinguard status``.
:meth:`StatusSnapshot.to_dict` and :func:`snapshot_from_dict` are exact inverses (tuples
travel as lists; non-finite floats travel as null: JSON has no NaN). The reader checks the
:data:`SCHEMA` and every field's type, and names the first bad key in a ``ProtocolError``.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from agent.model.errors import ProtocolError

SCHEMA = 2  # bumped when a field changes meaning, goes away or must be present
EVENTS_KEPT = 50


# --- the snapshot --------------------------------------------------------------------

@dataclass(frozen=True)
class ExcludedChannel:
    channel: str
    reason: str  # ExclusionReason.value, e.g. "out of range"
    detail: str


@dataclass(frozen=True)
class VoteStatus:
    group: str
    value: float | None
    quality: str  # Quality.value
    used: tuple[str, ...]
    excluded: tuple[ExcludedChannel, ...]
    reason: str  # why DEGRADED or BAD; empty when GOOD
    age_s: float  # since the vote was taken


@dataclass(frozen=True)
class TripStatus:
    name: str
    group: str
    cause: str


@dataclass(frozen=True)
class OutputStatus:
    name: str
    value: float | None  # last value the PLC acknowledged; None: never written


@dataclass(frozen=True)
class RecommendationStatus:
    """A live twin recommendation and, in shadow mode, how far it is from the PLC.

    ``actual`` and ``divergence`` come from the latest shadow comparison of this very
    recommendation (same ``id``); they are None in active mode, before the first
    comparison, or when the PLC's output could not be read.
    """

    id: str
    output: str
    value: float  # recommended (engineering units): what shadow mode would have written
    actual: float | None  # what the PLC held at the last shadow comparison
    divergence: float | None  # value - actual
    valid_s: float  # validity asked for by the twin
    valid_left_s: float  # validity left as of the snapshot (>= 0)


@dataclass(frozen=True)
class RecommendationDrops:
    """Live recommendations dropped before their validity ended, by cause (one field per
    ``agent.core.recommend.DropCause``, named by its value)."""

    heartbeat_lost: int = 0  # the session that sent them ended
    epoch_changed: int = 0
    left_normal: int = 0  # the plant left NORMAL
    mode_changed: int = 0
    authority_shed: int = 0


@dataclass(frozen=True)
class RecommendationCounts:
    """Twin recommendations judged since the agent started."""

    accepted: int
    rejected: int
    expired: int
    dropped: RecommendationDrops = field(default_factory=RecommendationDrops)


@dataclass(frozen=True)
class LinkStatus:
    """The twin link's own counters since the link was made (``agent.io.twin.settings.
    LinkCounters``, one field each, same names; PROTOCOL.md §6 and §6.1 say what counts)."""

    connects: int = 0  # TLS handshakes completed
    sessions: int = 0  # twin hellos accepted
    disconnects: int = 0
    failures: int = 0  # attempts that ended before a handshake completed
    frames_in: int = 0
    frames_out: int = 0
    malformed: int = 0  # protocol errors: each closed the connection
    idle_timeouts: int = 0  # no complete frame for idle_timeout_s: closed
    dropped: int = 0  # sends while not connected
    callback_errors: int = 0
    last_error: str | None = None
    replies: int = 0
    replies_dropped: int = 0  # over the reply budget, or nowhere to go
    yields: int = 0
    read_pauses: int = 0
    ahead: int = 0  # liveness messages handled ahead of waiting ones
    waiting_max: int = 0
    discarded: int = 0  # waiting messages dropped because their connection ended
    endpoint: str = ""  # the endpoint dialled last ("host:port")
    switches: int = 0  # walks to the next endpoint (backups configured)
    refused: tuple[RefusedCount, ...] = ()  # ignored messages by reason (fleet link)


@dataclass(frozen=True)
class RefusedCount:
    """How many twin messages the link ignored for one ``reason`` (unsigned, replayed...)."""

    reason: str
    count: int


@dataclass(frozen=True)
class TwinStatus:
    state: str  # LinkState.value
    cause: str
    connected: bool | None  # TLS link up; None when no twin is configured
    epoch: int | None
    last_seen_age_s: float | None
    accepted: int
    duplicates: int
    out_of_order: int
    stale_epoch: int
    unhealthy: int
    after_bye: int = 0  # heartbeats of an epoch a bye had ended
    link: LinkStatus | None = None  # the link's counters; None when no twin is configured


@dataclass(frozen=True)
class ClientStats:
    """The PLC client's counters since it was made (``agent.io.modbus.session``)."""

    connected: bool
    requests: int
    errors: int
    timeouts: int
    exception_replies: int
    reconnects: int
    disconnects: int
    skipped: int
    backed_off_units: tuple[int, ...]
    malformed: int = 0  # replies that did not match their request (each reset the link)
    late_replies: int = 0  # TCP replies to timed-out requests, dropped unread
    last_error: str | None = None  # the most recent failure, in words (kept after recovery)


@dataclass(frozen=True, kw_only=True)
class PlcStatus(ClientStats):
    """The PLC as the loop sees it: the client's counters and this tick's verdict."""

    reachable: bool  # answered this tick
    watchdog_ok: bool  # PLC communication watchdog read back as configured
    watchdog_timeout_ms: int | None = None  # the timeout the PLC holds, as last read back
    watchdog_expected_ms: int | None = None  # what the profile expects
    watchdog_latched: bool | None = None  # the PLC's "fell back" latch, as last read back

    @classmethod
    def of(cls, client: ClientStats, *, reachable: bool, watchdog_ok: bool,
           watchdog_read: tuple[int | None, bool | None] = (None, None),
           watchdog_expected_ms: int | None = None) -> PlcStatus:
        counters = {f.name: getattr(client, f.name) for f in dataclasses.fields(ClientStats)}
        return cls(**counters, reachable=reachable, watchdog_ok=watchdog_ok,
                   watchdog_timeout_ms=watchdog_read[0], watchdog_latched=watchdog_read[1],
                   watchdog_expected_ms=watchdog_expected_ms)


@dataclass(frozen=True)
class LoopStatus:
    """The loop's counters (``agent.runtime.loop``; the runtime replaces its copy as it
    counts)."""

    ticks: int
    overruns: int
    faults: int
    worst_tick_s: float
    safe_writes: int
    write_failures: int
    io_budget_overruns: int
    safe_write_failures: int = 0
    stale_refused: int = 0  # writes/heartbeats refused after a watchdog fire or past deadline


@dataclass(frozen=True)
class SafeSetStatus:
    """Whether the safe set planned is confirmed (acknowledged and read back) at the PLC."""

    confirmed: bool = True
    unconfirmed: tuple[str, ...] = ()  # outputs whose safe value is not yet confirmed
    since_wall: float | None = None  # Unix time since which the set is not confirmed


@dataclass(frozen=True)
class WatchdogStatus:
    kind: str  # "native" or "python"
    armed: bool
    fired: bool
    kicks: int
    fires: int
    feeds: int
    feed_errors: int
    worst_lateness_ms: float
    last_lateness_ms: float


@dataclass(frozen=True)
class SpoolStatus:
    count: int
    first_seq: int | None
    last_seq: int | None
    bytes: int


@dataclass(frozen=True)
class PolicyRuleStatus:
    name: str  # a signal or group of the profile
    action: str  # Action.value: drop | aggregate | quantize (send is not listed)
    window_s: float | None  # aggregate
    step: float | None  # quantize


@dataclass(frozen=True)
class TelemetryPolicyStatus:
    """The data-minimisation policy in force (``[telemetry.policy]``, agent.core.minimise)."""

    id: str  # as every telemetry record's ``policy.id`` says
    device: str  # DeviceName.value: "id" | "pseudonym"
    sent_as: str  # the device name telemetry carries; "" while telemetry is off
    rules: tuple[PolicyRuleStatus, ...]  # every rule but send, by name
    windows_open: int  # aggregation windows not closed yet


@dataclass(frozen=True)
class SocketStatus:
    """The status server's own counters (filled in by :class:`StatusServer`)."""

    connections: int = 0
    status_requests: int = 0
    acks: int = 0
    bad_requests: int = 0
    busy: int = 0
    errors: int = 0  # the snapshot or ack callable raised (a bug; logged)
    drills: int = 0  # fault drills asked for (``twinguard drill --scenario``)


@dataclass(frozen=True)
class AuthorityStatus:
    """Who decides the outputs (``agent.core.authority``): ``state`` is local, returning or
    remote; why and since when the twin has none (wall time), the return rule and how long
    an auto return has left."""

    state: str = "local"
    shed_reason: str | None = None
    shed_since_wall: float | None = None
    return_policy: str = "auto"
    holdoff_left_s: float | None = None
    waiting_for_ack: bool = False


@dataclass(frozen=True)
class ThreadSchedStatus:
    """One thread's scheduling as the kernel reports it (``sched_getscheduler`` by id)."""

    tid: int  # kernel thread id (/proc/PID/task/TID)
    name: str  # "loop", "watchdog", or the Python thread's name
    policy: str  # "fifo", "other", "rr", ...; "unknown" where it could not be read
    priority: int  # SCHED_FIFO/RR priority; 0 for the time-sharing policies


@dataclass(frozen=True)
class RealtimeStatus:
    """Real-time scheduling and locked memory (``agent.io.realtime``): what the profile's
    ``[realtime]`` asked, and what the kernel grants, read back when the snapshot is made."""

    scheduling: str  # asked: "fifo" or "other"
    lock_memory: bool  # asked
    loop: ThreadSchedStatus  # the event loop's (main) thread
    watchdog: ThreadSchedStatus | None  # the watchdog thread; None before it is armed
    threads: tuple[ThreadSchedStatus, ...]  # every thread of the agent, those two included
    memory_locked: bool  # VmLck > 0
    vmlck_kib: int
    vmrss_kib: int
    fallback: str | None = None  # what was asked and refused, and why (the WARNING's text)


@dataclass(frozen=True)
class EventEntry:
    wall: float  # Unix time
    kind: str  # "transition", "link", "ack", ... (free text, short)
    text: str


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything ``twinguard status`` shows, as of ``wall`` (Unix time)."""

    schema: int
    version: str
    pid: int
    wall: float
    uptime_s: float
    profile: str
    state: str  # State.value
    mode: str  # Mode.value
    cause: str
    waiting_for_ack: bool
    holdoff_left_s: float | None
    twin: TwinStatus
    votes: tuple[VoteStatus, ...]
    trips: tuple[TripStatus, ...]
    outputs: tuple[OutputStatus, ...]
    recommendations: tuple[RecommendationStatus, ...]  # live ones, by output
    recommendation_counts: RecommendationCounts
    plc: PlcStatus
    loop: LoopStatus
    watchdog: WatchdogStatus | None  # None: no watchdog armed
    spool: SpoolStatus | None  # None: no telemetry spool (no twin configured)
    config_version: int
    events: tuple[EventEntry, ...]
    socket: SocketStatus = field(default_factory=SocketStatus)
    safe_set: SafeSetStatus = field(default_factory=SafeSetStatus)
    authority: AuthorityStatus = field(default_factory=AuthorityStatus)
    realtime: RealtimeStatus | None = None  # None: not reported (an agent run without it)
    telemetry_policy: TelemetryPolicyStatus | None = None  # None: not reported

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists for tuples, null for non-finite floats)."""
        result: dict[str, Any] = _plain(dataclasses.asdict(self))
        return result

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))


def snapshot_from_dict(data: object) -> StatusSnapshot:
    """The inverse of :meth:`StatusSnapshot.to_dict`; unknown keys are ignored.

    Raises ``ProtocolError`` naming the first bad key for a reply that is not a snapshot of
    this :data:`SCHEMA`.
    """
    if not isinstance(data, dict):
        raise ProtocolError("status reply: not a JSON object")
    if data.get("schema") != SCHEMA:
        raise ProtocolError(f"status reply: schema {data.get('schema')!r}, this client "
                            f"reads schema {SCHEMA} (agent and client versions differ)")
    snap: StatusSnapshot = _decode(StatusSnapshot, data, "status")
    return snap


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _decode(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}.{f.name}: missing")
        return tp(**kwargs)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"{where}: no decoder for {tp!r} (a bug in the snapshot model)")
    if not ok:
        raise ProtocolError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return float(value) if tp is float else value
