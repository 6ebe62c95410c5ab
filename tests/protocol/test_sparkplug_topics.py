"""Sparkplug topic names (4_Topics) and the Primary Host's STATE payload."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.model.errors import SparkplugError
from agent.protocol.sparkplug import (
    Kind,
    State,
    encode_state,
    parse_state,
    parse_topic,
    state_topic,
    topic,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("kind", "expected"), [
    ("NBIRTH", "spBv1.0/plant-a/NBIRTH/pump-7"),   # tck-id-topics-nbirth-topic
    ("NDATA", "spBv1.0/plant-a/NDATA/pump-7"),     # tck-id-topics-ndata-topic
    ("NDEATH", "spBv1.0/plant-a/NDEATH/pump-7"),
    ("NCMD", "spBv1.0/plant-a/NCMD/pump-7"),
])
def test_edge_node_topics(kind: str, expected: str) -> None:
    """tck-id-topic-structure, tck-id-topic-structure-namespace-a (spBv1.0)."""
    assert topic("plant-a", kind, "pump-7") == expected
    assert topic("plant-a", Kind(kind), "pump-7") == expected
    assert parse_topic(expected) == ("plant-a", Kind(kind), "pump-7")


def test_ids_may_hold_any_utf8_but_the_reserved_characters() -> None:
    assert topic("Sparkplug B Devices", "NBIRTH", "Raspberry Pi") == \
        "spBv1.0/Sparkplug B Devices/NBIRTH/Raspberry Pi"  # the spec's own example
    assert state_topic("scada-1") == "spBv1.0/STATE/scada-1"
    assert state_topic("Zentrale Ü") == "spBv1.0/STATE/Zentrale Ü"


@pytest.mark.parametrize("bad", ["a+b", "a#", "a/b", "", "nul\x00", "x" * 257, "\ud800"])
def test_a_reserved_character_in_an_id_is_refused(bad: str) -> None:
    """tck-id-topic-structure-namespace-valid-group-id, …-valid-edge-node-id: no '+', '/',
    '#' (and twinguard: not empty, no NUL, at most 256 characters, real UTF-8)."""
    with pytest.raises(ValueError, match="group id"):
        topic(bad, "NDATA", "node")
    with pytest.raises(ValueError, match="edge node id"):
        topic("group", "NDATA", bad)
    with pytest.raises(ValueError, match="host id"):
        state_topic(bad)


def test_a_kind_twinguard_does_not_use_is_refused() -> None:
    with pytest.raises(ValueError, match="DBIRTH"):
        topic("g", "DBIRTH", "n")


@pytest.mark.parametrize("name", [
    "spBv1.0/g/NDATA", "spBv1.0/g/DDATA/n/d", "spAv1.0/g/NDATA/n", "spBv1.0/g/DBIRTH/n",
    "spBv1.0/STATE/host", "spBv1.0//NDATA/n", "spBv1.0/g/NDATA/+",
])
def test_parse_topic_refuses_what_is_not_an_edge_node_topic(name: str) -> None:
    with pytest.raises(SparkplugError):
        parse_topic(name)


# --- STATE -------------------------------------------------------------------------------

def test_state_online_and_offline() -> None:
    """The host's birth and Will payloads (tck-id-payloads-state-will-message-payload)."""
    assert parse_state(b'{"online": true, "timestamp": 1668114759262}') == \
        State(online=True, timestamp_ms=1668114759262)
    assert parse_state(b'{"timestamp":5,"online":false,"extra":[1]}') == State(False, 5)
    assert parse_state(encode_state(State(True, 2**64 - 1))) == State(True, 2**64 - 1)
    assert json.loads(encode_state(State(False, 7))) == {"online": False, "timestamp": 7}


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"\xff\xfe", "not UTF-8"),
    (b"online", "not JSON"),
    (b"[" * 900 + b"]" * 90, "not JSON"),
    (b"[" * 2000, "above 1024"),
    (b"[true, 5]", "not an object"),
    (b"null", "not an object"),
    (b'{"timestamp": 5}', "'online'"),
    (b'{"online": 1, "timestamp": 5}', "'online'"),
    (b'{"online": "true", "timestamp": 5}', "'online'"),
    (b'{"online": true}', "'timestamp'"),
    (b'{"online": true, "timestamp": 5.5}', "'timestamp'"),
    (b'{"online": true, "timestamp": true}', "'timestamp'"),
    (b'{"online": true, "timestamp": -1}', "'timestamp'"),
    (b'{"online": true, "timestamp": "5"}', "'timestamp'"),
    (b'{"online": true, "timestamp": 18446744073709551616}', "'timestamp'"),
    (b'{"online": true, "timestamp": ' + b"9" * 900 + b"}", "'timestamp'"),
])
def test_a_bad_state_payload_raises_one_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(SparkplugError, match=reason):
        parse_state(data)


@given(st.binary(max_size=100) | st.text(max_size=60).map(str.encode))
def test_any_bytes_parse_or_raise_sparkplug_error(data: bytes) -> None:
    try:
        state = parse_state(data)
    except SparkplugError:
        return
    assert isinstance(state.online, bool) and 0 <= state.timestamp_ms < 2**64
