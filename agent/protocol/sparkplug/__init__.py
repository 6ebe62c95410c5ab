"""Sparkplug B 3.0 for the fleet transport (sans-IO): the payload codec, an edge node's
messages, topics and the Primary Host's STATE.

``sparkplug_b.proto`` is twinguard's own schema, written from the specification's field
numbers; ``sparkplug_b_pb2`` (and its ``.pyi``) is generated from it by protoc and
committed (``tests/protocol/test_sparkplug_schema.py`` checks the two agree). ``metrics``
holds the payload as frozen dataclasses, ``codec`` the bytes (``encode_payload``,
``decode_payload``), ``messages`` NBIRTH/NDATA/NDEATH, ``next_seq`` and ``AliasTable``,
``topics`` the topic names and STATE.

Needs protobuf, from the optional ``twinguard[fleet]`` extra: only this package may import
it (``tests/test_layering.py``), and nothing outside the fleet transport imports this
package, so an agent on the default TLS link never loads protobuf.
"""

from __future__ import annotations

from agent.model.errors import SparkplugError

from .codec import decode_payload, encode_payload
from .messages import (
    BDSEQ,
    REBIRTH,
    AliasTable,
    bd_seq_of,
    nbirth,
    ndata,
    ndeath,
    next_seq,
    rebirth_requested,
)
from .metrics import DataType, Metric, Payload, Property
from .topics import Kind, State, encode_state, parse_state, parse_topic, state_topic, topic

__all__ = [
    "BDSEQ", "REBIRTH", "AliasTable", "DataType", "Kind", "Metric", "Payload", "Property",
    "SparkplugError", "State", "bd_seq_of", "decode_payload", "encode_payload",
    "encode_state", "nbirth", "ndata", "ndeath", "next_seq", "parse_state", "parse_topic",
    "rebirth_requested", "state_topic", "topic",
]
