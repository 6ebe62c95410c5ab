"""Twin messages: round trips, and strict decoding that names the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import ProtocolError
from agent.twin.frames import FrameDecoder, encode
from agent.twin.messages import (
    PROTOCOL_VERSION,
    U64_MAX,
    AgentHello,
    Bye,
    Heartbeat,
    Message,
    Status,
    TwinHello,
    decode_agent,
    decode_twin,
    to_wire,
)

pytestmark = pytest.mark.timeout(10)

TWIN_MSGS: list[Message] = [
    TwinHello(PROTOCOL_VERSION, "twin-a", 1_700_000_000_000),
    Heartbeat(5, 1, True),
    Heartbeat(5, U64_MAX, False, sent_ms=1_700_000_000_123),
    Bye(5),
    Bye(5, "maintenance"),
]
AGENT_MSGS: list[Message] = [
    AgentHello("tank-07", "0.1.0", PROTOCOL_VERSION),
    Status("NORMAL", "shadow", 0),
    Status("FAILSAFE", "active", 42, sent_ms=1),
]


@pytest.mark.parametrize("msg", TWIN_MSGS, ids=repr)
def test_twin_messages_round_trip_through_frames(msg: Message) -> None:
    (frame,) = FrameDecoder().feed(encode(to_wire(msg)))
    assert decode_twin(frame) == msg


@pytest.mark.parametrize("msg", AGENT_MSGS, ids=repr)
def test_agent_messages_round_trip_through_frames(msg: Message) -> None:
    (frame,) = FrameDecoder().feed(encode(to_wire(msg)))
    assert decode_agent(frame) == msg


def test_optional_fields_left_out_on_the_wire() -> None:
    assert to_wire(Heartbeat(1, 2, True)) == {
        "t": "heartbeat",
        "epoch": 1,
        "seq": 2,
        "healthy": True,
    }


def test_heartbeat_keeps_the_shared_constructor() -> None:
    hb = Heartbeat(3, 4, True)  # how the heartbeat monitor and its tests build it
    assert (hb.epoch, hb.seq, hb.healthy, hb.sent_ms) == (3, 4, True, None)


HB: dict[str, Any] = {"t": "heartbeat", "epoch": 1, "seq": 2, "healthy": True}

BAD_TWIN: list[tuple[dict[str, Any], str]] = [
    ({"t": "status", "state": "X", "mode": "shadow", "seq": 1}, "unknown twin->agent"),
    ({"t": "recommendation"}, "unknown twin->agent"),
    ({"epoch": 1}, "t:"),
    ({k: v for k, v in HB.items() if k != "seq"}, "heartbeat.seq: missing"),
    ({k: v for k, v in HB.items() if k != "healthy"}, "heartbeat.healthy: missing"),
    ({**HB, "seq": "2"}, "heartbeat.seq: expected uint64"),
    ({**HB, "seq": True}, "heartbeat.seq: expected uint64"),
    ({**HB, "seq": 2.0}, "heartbeat.seq: expected uint64"),
    ({**HB, "seq": -1}, "heartbeat.seq: -1 out of uint64"),
    ({**HB, "epoch": None}, "heartbeat.epoch: expected uint64"),
    ({**HB, "healthy": 1}, "heartbeat.healthy: expected bool"),
    ({**HB, "sent_ms": "now"}, "heartbeat.sent_ms: expected uint64"),
    ({**HB, "extra": 1}, "heartbeat.extra: unknown field"),
    ({"t": "hello", "protocol": 1, "twin_id": "", "epoch": 1}, "hello.twin_id: text length"),
    (
        {"t": "hello", "protocol": 1, "twin_id": "a\nb", "epoch": 1},
        "hello.twin_id: text has control",
    ),
    ({"t": "hello", "protocol": 1, "twin_id": "x" * 129, "epoch": 1}, "hello.twin_id: text length"),
    ({"t": "hello", "protocol": 1, "twin_id": b"x", "epoch": 1}, "hello.twin_id: expected text"),
    (
        {"t": "hello", "device_id": "d", "agent_version": "1", "protocol": 1},
        "hello.device_id: unknown",
    ),
    ({"t": "bye"}, "bye.epoch: missing"),
    ({"t": "bye", "epoch": 1, "reason": 7}, "bye.reason: expected text"),
]


@pytest.mark.parametrize(("frame", "match"), BAD_TWIN, ids=[m for _, m in BAD_TWIN])
def test_bad_twin_message_names_the_field(frame: dict[str, Any], match: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_twin(frame)
    assert match in str(info.value)


BAD_AGENT: list[tuple[dict[str, Any], str]] = [
    (HB, "unknown agent->twin"),
    (
        {"t": "status", "state": "NORMAL", "mode": "turbo", "seq": 1},
        "status.mode: 'turbo' not one of",
    ),
    ({"t": "status", "state": "NORMAL", "mode": "shadow"}, "status.seq: missing"),
    ({"t": "hello", "device_id": "d", "agent_version": "1", "protocol": "1"}, "hello.protocol"),
]


@pytest.mark.parametrize(("frame", "match"), BAD_AGENT, ids=[m for _, m in BAD_AGENT])
def test_bad_agent_message_names_the_field(frame: dict[str, Any], match: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_agent(frame)
    assert match in str(info.value)


def test_u64_bounds() -> None:
    assert decode_twin({**HB, "seq": U64_MAX}) == Heartbeat(1, U64_MAX, True)
    with pytest.raises(ProtocolError, match="out of uint64"):
        decode_twin({**HB, "seq": U64_MAX + 1})


def test_to_wire_refuses_what_the_peer_would_refuse() -> None:
    with pytest.raises(ProtocolError, match=r"heartbeat\.seq"):
        to_wire(Heartbeat(1, -5, True))
    with pytest.raises(ProtocolError, match=r"status\.mode"):
        to_wire(Status("NORMAL", "yolo", 1))
    with pytest.raises(TypeError):
        to_wire("heartbeat")  # type: ignore[arg-type]
