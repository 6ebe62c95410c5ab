"""Twin messages: round trips, and strict decoding that names the bad field."""

from __future__ import annotations

import itertools
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from agent.model.errors import ProtocolError
from agent.model.messages import (
    PROTOCOL_VERSION,
    AgentHello,
    Bye,
    Heartbeat,
    Message,
    Status,
    TwinHello,
)
from agent.model.text import REFUSED
from agent.protocol.twin.frames import FrameDecoder, encode
from agent.protocol.twin.schema import (
    U64_MAX,
    decode_agent,
    decode_twin,
    nonprintable,
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
    AgentHello("tank-07", "0.1.0", PROTOCOL_VERSION, 500, 250),
    AgentHello("tank-07", "0.1.0", PROTOCOL_VERSION, 1, 1),
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
        "hello.twin_id: text has a non-printable character U+000A (Cc) at index 1",
    ),
    (
        {"t": "hello", "protocol": 1, "twin_id": "twin\u00a0a", "epoch": 1},
        "hello.twin_id: text has a non-printable character U+00A0 (Zs) at index 4",
    ),
    (
        {"t": "bye", "epoch": 1, "reason": "soft\u00adhyphen"},
        "bye.reason: text has a non-printable character U+00AD (Cf) at index 4",
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


AGENT_HELLO: dict[str, Any] = {"t": "hello", "device_id": "d", "agent_version": "1",
                               "protocol": 1, "heartbeat_timeout_ms": 500,
                               "heartbeat_late_ms": 250}

BAD_AGENT: list[tuple[dict[str, Any], str]] = [
    (HB, "unknown agent->twin"),
    (
        {"t": "status", "state": "NORMAL", "mode": "turbo", "seq": 1},
        "status.mode: 'turbo' not one of",
    ),
    ({"t": "status", "state": "NORMAL", "mode": "shadow"}, "status.seq: missing"),
    ({**AGENT_HELLO, "protocol": "1"}, "hello.protocol"),
    ({k: v for k, v in AGENT_HELLO.items() if k != "heartbeat_timeout_ms"},
     "hello.heartbeat_timeout_ms: missing"),
    ({k: v for k, v in AGENT_HELLO.items() if k != "heartbeat_late_ms"},
     "hello.heartbeat_late_ms: missing"),
    ({**AGENT_HELLO, "heartbeat_timeout_ms": 0},
     "hello.heartbeat_timeout_ms: 0 below its minimum 1"),
    ({**AGENT_HELLO, "heartbeat_late_ms": 0}, "hello.heartbeat_late_ms: 0 below its minimum 1"),
    ({**AGENT_HELLO, "heartbeat_late_ms": True}, "hello.heartbeat_late_ms: expected uint64"),
    ({**AGENT_HELLO, "heartbeat_late_ms": 250.0}, "hello.heartbeat_late_ms: expected uint64"),
    ({**AGENT_HELLO, "heartbeat_late_ms": 501},
     "hello.heartbeat_late_ms: 501 above heartbeat_timeout_ms 500"),
    ({**AGENT_HELLO, "device_id": "tank\u200b07"}, "hello.device_id: text has a non-printable"),
    ({**AGENT_HELLO, "timing": 1}, "hello.timing: unknown field"),
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
    with pytest.raises(ProtocolError, match=r"hello\.heartbeat_late_ms: 300 above"):
        to_wire(AgentHello("d", "1", PROTOCOL_VERSION, 200, 300))
    with pytest.raises(ProtocolError, match=r"hello\.heartbeat_timeout_ms: 0 below"):
        to_wire(AgentHello("d", "1", PROTOCOL_VERSION, 0, 0))
    with pytest.raises(TypeError):
        to_wire("heartbeat")  # type: ignore[arg-type]


def test_agent_hello_carries_the_heartbeat_timing_on_the_wire() -> None:
    assert to_wire(AgentHello("d", "1", PROTOCOL_VERSION, 500, 250)) == AGENT_HELLO
    assert decode_agent(AGENT_HELLO) == AgentHello("d", "1", PROTOCOL_VERSION, 500, 250)


@pytest.mark.timeout(30)
def test_text_rule_is_the_fixed_table_whatever_the_python() -> None:
    """PROTOCOL.md §3: the refused characters are one fixed table, not this Python's
    ``isprintable()``. The table is sorted and disjoint, holds every control, surrogate,
    private-use code point and noncharacter, and leaves unassigned code points allowed."""
    assert all(a <= b < c for (a, b, _), (c, _, _) in itertools.pairwise(REFUSED))
    noncharacters = {*range(0xFDD0, 0xFDF0)} | {p * 0x10000 + x for p in range(17)
                                               for x in (0xFFFE, 0xFFFF)}
    fixed = {*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000), *range(0xE000, 0xF900),
             *range(0xF0000, 0xFFFFE), *range(0x100000, 0x10FFFE), *noncharacters}
    for cp in fixed:
        assert nonprintable(chr(cp)) is not None, hex(cp)
    for ch in (" ", "A", "\u00e9", "\u4e2d", "\U0001f600", "\u00b0", "\u00b3"):
        assert nonprintable(ch) is None
    assert nonprintable("\U000e0080") is None  # unassigned: allowed on every version
    assert nonprintable("ab\u00a0") == (2, "U+00A0", "Zs")


@pytest.mark.timeout(30)
@pytest.mark.skipif(unicodedata.unidata_version != "14.0.0",
                    reason="the table is Unicode 14.0's (Python 3.11); other versions differ in "
                           "characters assigned later, which is the point of the table")
def test_text_table_is_unicode_14s_categories() -> None:
    """Where the table came from: for every code point Unicode 14.0 assigns, refused exactly
    when its general category is Cc, Cf, Cs, Co, Zl, Zp or Zs (U+0020 excepted)."""
    refused_cats = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"}
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        category = unicodedata.category(ch)
        if category == "Cn":
            continue
        bad = nonprintable(ch)
        assert (bad is not None) == (cp != 0x20 and category in refused_cats), hex(cp)
        if bad is not None:
            assert bad == (0, f"U+{cp:04X}", category)


@pytest.mark.parametrize("ch", ["e", "\u00e9", "\u4e2d", "\U0001f600"], ids=["1", "2", "3", "4"])
def test_text_length_counts_code_points_not_bytes(ch: str) -> None:
    """128 code points pass whatever their UTF-8 size (up to 512 bytes); 129 do not."""
    ok = {"t": "hello", "protocol": 1, "twin_id": ch * 128, "epoch": 1}
    (frame,) = FrameDecoder().feed(encode(ok))
    assert decode_twin(frame) == TwinHello(1, ch * 128, 1)
    assert len((ch * 128).encode()) == 128 * len(ch.encode())
    with pytest.raises(ProtocolError, match=r"text length 129 code points not in 1\.\.128"):
        decode_twin({**ok, "twin_id": ch * 129})


def test_space_is_the_one_allowed_separator() -> None:
    assert decode_twin({"t": "bye", "epoch": 1, "reason": "going down now"}) == Bye(
        1, "going down now")
    for sep in ("\u2028", "\u2029", "\u3000", "\u2007"):
        with pytest.raises(ProtocolError, match="non-printable character"):
            decode_twin({"t": "bye", "epoch": 1, "reason": f"a{sep}b"})


def test_protocol_md_lists_the_same_text_table_as_the_code() -> None:
    """The table of PROTOCOL.md §3 (what a twin implements) is the code's, range by range
    (the noncharacter row is prose: every plane's last two code points and U+FDD0..U+FDEF)."""
    doc = (Path(__file__).parents[2] / "agent" / "protocol" / "twin" / "PROTOCOL.md").read_text()
    listed: set[tuple[int, int]] = set()
    for line in doc.splitlines():
        row = re.match(r"\s*\| `(Cc|Zs|Zl|Cf|Cs|Co)`[^|]*\|([^|]*)\|", line)
        if row:
            for a, b in re.findall(r"U\+([0-9A-F]{4,6})(?:\.\.U\+([0-9A-F]{4,6}))?", row[2]):
                listed.add((int(a, 16), int(b or a, 16)))
    code = {(a, b) for a, b, cls in REFUSED if cls != "noncharacter"}
    # the doc writes Zl and Zp as one row of two single code points
    assert listed == code
    assert {(a, b) for a, b, cls in REFUSED if cls == "noncharacter"} == {
        (0xFDD0, 0xFDEF), *((p * 0x10000 + 0xFFFE, p * 0x10000 + 0xFFFF) for p in range(17))}
