"""Sparkplug B topic names (4_Topics) and the Primary Host's STATE message (sans-IO).

Topics an edge node uses::

    spBv1.0/<group_id>/<NBIRTH|NDATA|NDEATH|NCMD>/<edge_node_id>
    spBv1.0/STATE/<host_id>

A group, edge node or host id is a non-empty UTF-8 string without ``+``, ``#`` or ``/``
(``tck-id-topic-structure-namespace-valid-group-id``, ``…-valid-edge-node-id``; MQTT
wildcards and the level separator); twinguard also refuses NUL and ids longer than 256
characters. ``topic``/``state_topic`` raise ``ValueError`` for a bad id (a configuration
mistake); ``parse_topic`` raises ``SparkplugError`` for a topic off the wire.

STATE payload (5_Operational_Behavior, Primary Host STATE), UTF-8 JSON::

    {"online": true|false, "timestamp": <UTC ms>}

``parse_state`` returns a :class:`State` or raises ``SparkplugError`` naming the problem:
empty (a retained STATE was deleted), above ``MAX_STATE_BYTES``, not UTF-8, not JSON, not
an object, ``online`` missing or not a boolean, ``timestamp`` missing or not an integer in
0..2**64-1. Other keys are ignored.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from agent.model.errors import SparkplugError

NAMESPACE = "spBv1.0"
STATE = "STATE"
MAX_ID = 256
MAX_STATE_BYTES = 1024
_FORBIDDEN = frozenset("+#/\x00")
_MAX_TIMESTAMP = 2**64 - 1


class Kind(enum.StrEnum):
    """The edge-node message types twinguard publishes or receives."""

    NBIRTH = "NBIRTH"
    NDATA = "NDATA"
    NDEATH = "NDEATH"
    NCMD = "NCMD"


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a Sparkplug group, edge node or host id (None: it can)."""
    if not isinstance(value, str):
        return f"must be a str, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID:
        return f"must be at most {MAX_ID} characters"
    bad = sorted(set(value) & _FORBIDDEN)
    if bad:
        return f"must not contain {', '.join(repr(c) for c in bad)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid UTF-8 (no lone surrogates)"
    return None


def _checked(what: str, value: str) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {value!r} {problem}")
    return value


def topic(group: str, kind: Kind | str, edge_node: str) -> str:
    """``spBv1.0/<group>/<kind>/<edge_node>``; ``ValueError`` for a bad id or kind."""
    try:
        kind = Kind(kind)
    except ValueError:
        raise ValueError(f"message kind {kind!r} is not one of "
                         f"{', '.join(k.value for k in Kind)}") from None
    return f"{NAMESPACE}/{_checked('group id', group)}/{kind}/{_checked('edge node id', edge_node)}"


def state_topic(host_id: str) -> str:
    """``spBv1.0/STATE/<host_id>``; ``ValueError`` for a bad id."""
    return f"{NAMESPACE}/{STATE}/{_checked('host id', host_id)}"


def parse_topic(name: str) -> tuple[str, Kind, str]:
    """``(group, kind, edge_node)`` of an edge-node topic; ``SparkplugError`` if ``name``
    is not one (device topics, STATE and other kinds included)."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != NAMESPACE:
        raise SparkplugError(f"topic {name!r} is not spBv1.0/<group>/<kind>/<edge node>")
    _, group, kind, edge_node = parts
    if kind not in Kind.__members__:
        raise SparkplugError(f"topic {name!r}: message kind {kind!r} is not handled here")
    for what, value in (("group id", group), ("edge node id", edge_node)):
        problem = id_problem(value)
        if problem is not None:
            raise SparkplugError(f"topic {name!r}: {what} {problem}")
    return group, Kind(kind), edge_node


@dataclass(frozen=True)
class State:
    """A Primary Host's STATE: ``online`` and the host's ``timestamp_ms`` (UTC ms)."""

    online: bool
    timestamp_ms: int


def encode_state(state: State) -> bytes:
    """The STATE payload for ``state`` (what a host publishes, retained, QoS 1)."""
    return json.dumps({"online": state.online, "timestamp": state.timestamp_ms},
                      separators=(",", ":")).encode()


def parse_state(data: bytes) -> State:
    """The STATE in ``data``; ``SparkplugError`` (never anything else) if it is not one."""
    if not data:
        raise SparkplugError("STATE payload is empty (the retained STATE was deleted)")
    if len(data) > MAX_STATE_BYTES:
        raise SparkplugError(f"STATE payload of {len(data)} bytes is above {MAX_STATE_BYTES}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SparkplugError(f"STATE payload is not UTF-8: {exc}") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SparkplugError(f"STATE payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SparkplugError(f"STATE payload is a JSON {type(obj).__name__}, not an object")
    online = obj.get("online")
    if not isinstance(online, bool):
        raise SparkplugError(f"STATE 'online' must be true or false, got {online!r}")
    stamp = obj.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 <= stamp <= _MAX_TIMESTAMP:
        raise SparkplugError(f"STATE 'timestamp' must be an integer in 0..{_MAX_TIMESTAMP} "
                             f"(UTC ms), got {stamp!r}")
    return State(online=online, timestamp_ms=stamp)
