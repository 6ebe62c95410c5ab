"""The wire schema of the twin protocol's messages: strict decoding and encoding.

The messages themselves are frozen data in :mod:`agent.model.messages`; this module says,
per message type, which field has which wire kind, and checks every frame against it.

Decoding is strict: an unknown type, an unknown or missing field, or a value of the wrong
type or out of range raises ``ProtocolError`` naming the type and the field. A ``text``
field is refused if it holds a character of the fixed table ``agent.model.text.REFUSED``
(PROTOCOL.md §3; the same on every Python version). Integers are never booleans (``True``
is not a seq). A ``float`` field takes any msgpack float or int (never a bool): an int
becomes the nearest IEEE-754 double (exact up to 2**53 in magnitude; every int64/uint64 is
finite as a double), NaN and ±inf pass: *values* are judged by the receiver's validation
(``agent.core.recommend``), which answers with a reason instead of closing the connection.
New message types are new rows in the tables ``TWIN_TO_AGENT`` / ``AGENT_TO_TWIN``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from agent.model.errors import ProtocolError
from agent.model.messages import (
    BODY_MAX,
    CONFIG_BUNDLE_MAX,
    CONFIG_REASONS,
    RECOMMEND_ID_MAX,
    RECOMMEND_REASONS,
    TEXT_MAX,
    Ack,
    AgentHello,
    AgentMessage,
    Bye,
    ConfigPush,
    ConfigResult,
    Heartbeat,
    Message,
    Recommend,
    RecommendResult,
    Resume,
    Status,
    Telemetry,
    TwinHello,
    TwinMessage,
)
from agent.model.text import first_refused

U64_MAX = 2**64 - 1


class Kind(enum.Enum):
    """Wire type of a field."""

    U64 = "uint64"  # msgpack int, 0 <= v <= 2**64-1, never a bool
    BOOL = "bool"  # msgpack true/false only
    TEXT = "text"  # msgpack str, 1..max_len (default 128) code points, see nonprintable()
    FLOAT = "float"  # msgpack float or int (never a bool) as a double; NaN/inf pass
    BIN = "bin"  # msgpack bin (bytes), length 1..max_len


@dataclass(frozen=True)
class Field:
    """One field of a message schema."""

    name: str
    kind: Kind
    optional: bool = False
    choices: tuple[str, ...] = ()
    max_len: int = TEXT_MAX  # TEXT: code points; BIN: bytes
    minimum: int = 0  # U64 only: the smallest value allowed


MODES = ("shadow", "active")
AUTHORITIES = ("local", "returning", "remote")

SCHEMAS: dict[type[Any], tuple[Field, ...]] = {
    TwinHello: (Field("protocol", Kind.U64), Field("twin_id", Kind.TEXT), Field("epoch", Kind.U64)),
    Heartbeat: (
        Field("epoch", Kind.U64),
        Field("seq", Kind.U64),
        Field("healthy", Kind.BOOL),
        Field("sent_ms", Kind.U64, optional=True),
    ),
    Bye: (Field("epoch", Kind.U64), Field("reason", Kind.TEXT, optional=True)),
    AgentHello: (
        Field("device_id", Kind.TEXT),
        Field("agent_version", Kind.TEXT),
        Field("protocol", Kind.U64),
        Field("heartbeat_timeout_ms", Kind.U64, minimum=1),
        Field("heartbeat_late_ms", Kind.U64, minimum=1),
    ),
    Status: (
        Field("state", Kind.TEXT),
        Field("mode", Kind.TEXT, choices=MODES),
        Field("seq", Kind.U64),
        Field("sent_ms", Kind.U64, optional=True),
        Field("authority", Kind.TEXT, optional=True, choices=AUTHORITIES),
    ),
    Recommend: (
        Field("id", Kind.TEXT, max_len=RECOMMEND_ID_MAX),
        Field("output", Kind.TEXT),
        Field("value", Kind.FLOAT),
        Field("valid_s", Kind.FLOAT),
    ),
    Ack: (Field("upto", Kind.U64),),
    RecommendResult: (
        Field("id", Kind.TEXT, max_len=RECOMMEND_ID_MAX),
        Field("accepted", Kind.BOOL),
        Field("reason", Kind.TEXT, choices=RECOMMEND_REASONS),
        Field("detail", Kind.TEXT, optional=True),
    ),
    Resume: (Field("after", Kind.U64),),
    Telemetry: (
        Field("seq", Kind.U64),
        Field("prev", Kind.U64),
        Field("t_ms", Kind.U64),
        Field("historical", Kind.BOOL),
        Field("body", Kind.BIN, max_len=BODY_MAX),
    ),
    ConfigPush: (Field("bundle", Kind.BIN, max_len=CONFIG_BUNDLE_MAX),),
    ConfigResult: (
        Field("version", Kind.U64),
        Field("accepted", Kind.BOOL),
        Field("reason", Kind.TEXT, choices=CONFIG_REASONS),
        Field("detail", Kind.TEXT, optional=True),
    ),
}

TWIN_TO_AGENT: dict[str, type[Any]] = {
    c.T: c for c in (TwinHello, Heartbeat, Bye, Recommend, Ack, ConfigPush)
}
AGENT_TO_TWIN: dict[str, type[Any]] = {
    c.T: c for c in (AgentHello, Status, RecommendResult, Resume, Telemetry, ConfigResult)
}


def _hello_timing(msg: Any) -> str | None:
    if msg.heartbeat_late_ms > msg.heartbeat_timeout_ms:
        return (f"hello.heartbeat_late_ms: {msg.heartbeat_late_ms} above "
                f"heartbeat_timeout_ms {msg.heartbeat_timeout_ms}")
    return None


# Rules across fields of one message: a message -> a reason it is invalid, or None.
CROSS_CHECKS: dict[type[Any], Callable[[Any], str | None]] = {AgentHello: _hello_timing}

def nonprintable(text: str) -> tuple[int, str, str] | None:
    """The first character of ``text`` a ``text`` field refuses, as (index, "U+XXXX",
    class), or None: the fixed table of :mod:`agent.model.text` (PROTOCOL.md §3)."""
    return first_refused(text)


def _check(mtype: str, spec: Field, value: Any) -> Any:
    where = f"{mtype}.{spec.name}"
    if spec.kind is Kind.U64:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{where}: expected uint64, got {type(value).__name__}")
        if not 0 <= value <= U64_MAX:
            raise ProtocolError(f"{where}: {value} out of uint64 range")
        if value < spec.minimum:
            raise ProtocolError(f"{where}: {value} below its minimum {spec.minimum}")
    elif spec.kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where}: expected bool, got {type(value).__name__}")
    elif spec.kind is Kind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{where}: expected float, got {type(value).__name__}")
        if isinstance(value, int):
            try:
                value = float(value)  # the nearest double; every int64/uint64 is finite
            except OverflowError:  # only a Python int beyond msgpack's range (a sender bug)
                raise ProtocolError(f"{where}: integer beyond the range of a float") from None
    elif spec.kind is Kind.BIN:
        if not isinstance(value, bytes):
            raise ProtocolError(f"{where}: expected bin, got {type(value).__name__}")
        if not 1 <= len(value) <= spec.max_len:
            raise ProtocolError(f"{where}: bin length {len(value)} not in 1..{spec.max_len}")
    else:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: expected text, got {type(value).__name__}")
        if not 1 <= len(value) <= spec.max_len:
            raise ProtocolError(
                f"{where}: text length {len(value)} code points not in 1..{spec.max_len}")
        bad = nonprintable(value)
        if bad is not None:
            index, code, category = bad
            raise ProtocolError(
                f"{where}: text has a non-printable character {code} ({category}) "
                f"at index {index}")
        if spec.choices and value not in spec.choices:
            raise ProtocolError(f"{where}: {value!r} not one of {', '.join(spec.choices)}")
    return value


def _decode(table: Mapping[str, type[Any]], frame: Mapping[str, Any], direction: str) -> Any:
    mtype = frame.get("t")
    if not isinstance(mtype, str):
        raise ProtocolError("t: message type missing or not a string")
    cls = table.get(mtype)
    if cls is None:
        raise ProtocolError(f"t: unknown {direction} message type {mtype!r}")
    schema = SCHEMAS[cls]
    known = {f.name for f in schema}
    for key in frame:
        if key != "t" and key not in known:
            raise ProtocolError(f"{mtype}.{key}: unknown field")
    kwargs: dict[str, Any] = {}
    for spec in schema:
        if spec.name not in frame:
            if spec.optional:
                continue
            raise ProtocolError(f"{mtype}.{spec.name}: missing field")
        kwargs[spec.name] = _check(mtype, spec, frame[spec.name])
    msg = cls(**kwargs)
    _cross_check(msg)
    return msg


def _cross_check(msg: Any) -> None:
    rule = CROSS_CHECKS.get(type(msg))
    problem = rule(msg) if rule is not None else None
    if problem is not None:
        raise ProtocolError(problem)


def decode_twin(frame: Mapping[str, Any]) -> TwinMessage:
    """A twin->agent message from a decoded frame; ProtocolError naming the bad field."""
    msg: TwinMessage = _decode(TWIN_TO_AGENT, frame, "twin->agent")
    return msg


def decode_agent(frame: Mapping[str, Any]) -> AgentMessage:
    """An agent->twin message from a decoded frame; ProtocolError naming the bad field."""
    msg: AgentMessage = _decode(AGENT_TO_TWIN, frame, "agent->twin")
    return msg


def to_wire(msg: Message) -> dict[str, Any]:
    """The map to frame for ``msg`` (optional fields that are None are left out).

    Raises ProtocolError if a field would not pass the receiver's strict decoding (a bug
    of the sender, refused before it reaches the wire).
    """
    schema = SCHEMAS.get(type(msg))
    if schema is None:
        raise TypeError(f"not a twin protocol message: {type(msg).__name__}")
    out: dict[str, Any] = {"t": msg.T}
    for spec in schema:
        value = getattr(msg, spec.name)
        if value is None and spec.optional:
            continue
        out[spec.name] = _check(msg.T, spec, value)
    _cross_check(msg)
    return out


def _assert_schemas_match_classes() -> None:
    for cls, schema in SCHEMAS.items():
        names = tuple(f.name for f in fields(cls))
        if names != tuple(s.name for s in schema):
            raise AssertionError(f"schema of {cls.__name__} does not match its fields")


_assert_schemas_match_classes()
