"""Signed fleet envelopes: what crosses an untrusted broker, and every way one is refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.model.messages import Ack, Bye, Heartbeat, Recommend
from agent.protocol.fleet.envelope import (
    DOMAIN,
    WIRE_MAX,
    EnvelopeRefused,
    Opener,
    public_bytes,
    seal,
)

pytestmark = pytest.mark.timeout(10)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
HOST, DEVICE = "twin-1", "tank-01"


def opener(*keys: Ed25519PrivateKey) -> Opener:
    return Opener(HOST, DEVICE, public_bytes(keys or (KEY,)))


def hb(epoch: int = 7, seq: int = 1, **kw: Any) -> bytes:
    return seal(Heartbeat(epoch, seq, True), KEY, host=HOST, to="*", epoch=epoch, seq=seq,
                sent_ms=1000, **kw)


def by_hand(body: dict[str, Any], key: Ed25519PrivateKey = KEY) -> bytes:
    """An envelope built from its definition (not by ``seal``)."""
    raw = msgpack.packb(body, use_bin_type=True)
    return msgpack.packb([raw, key.sign(DOMAIN + raw)], use_bin_type=True)  # type: ignore[no-any-return]


def refused(o: Opener, wire: bytes, fanout: bool = True) -> EnvelopeRefused:
    with pytest.raises(EnvelopeRefused) as err:
        o.open(wire, fanout=fanout)
    return err.value


def test_an_envelope_built_from_its_definition_opens() -> None:
    wire = by_hand({"v": 1, "host": HOST, "to": DEVICE, "epoch": 3, "seq": 9, "sent_ms": 5,
                    "echo": 41, "msg": {"t": "ack", "upto": 120}})
    env = opener().open(wire, fanout=False)
    assert (env.host, env.to, env.epoch, env.seq, env.sent_ms, env.echo) == (
        HOST, DEVICE, 3, 9, 5, 41)
    assert env.msg == Ack(120)


def test_seal_and_open_round_trip_heartbeat_bye_and_a_command() -> None:
    o = opener()
    assert o.open(hb(seq=1), fanout=True).msg == Heartbeat(7, 1, True)
    bye = seal(Bye(7, "maintenance"), KEY, host=HOST, to="*", epoch=7, seq=2, sent_ms=1)
    assert o.open(bye, fanout=True).msg == Bye(7, "maintenance")
    rec = seal(Recommend("r1", "heater_power", 40.0, 5.0), KEY, host=HOST, to=DEVICE,
               epoch=7, seq=1, sent_ms=1, echo=3)
    env = o.open(rec, fanout=False)
    assert env.msg == Recommend("r1", "heater_power", 40.0, 5.0) and env.echo == 3


def test_any_key_of_the_twin_verifies_and_no_other() -> None:
    other = seal(Heartbeat(7, 1, True), OTHER, host=HOST, to="*", epoch=7, seq=1, sent_ms=1)
    assert refused(opener(), other).reason == "signature"
    assert opener(KEY, OTHER).open(other, fanout=True).seq == 1  # a key rotation: both valid


def test_a_tampered_byte_breaks_the_signature() -> None:
    wire = bytearray(hb())
    wire[20] ^= 0x01  # inside the body
    assert refused(opener(), bytes(wire)).reason in ("signature", "malformed")
    raw, sig = msgpack.unpackb(hb())
    forged = msgpack.packb([raw.replace(b"twin-1", b"twin-2"), sig], use_bin_type=True)
    assert refused(opener(), forged).reason == "signature"


def test_a_signature_made_outside_the_domain_does_not_verify() -> None:
    raw = msgpack.packb({"v": 1, "host": HOST, "to": "*", "epoch": 1, "seq": 1, "sent_ms": 1,
                         "msg": {"t": "heartbeat", "epoch": 1, "seq": 1, "healthy": True}})
    wire = msgpack.packb([raw, KEY.sign(raw)], use_bin_type=True)
    assert refused(opener(), wire).reason == "signature"


@pytest.mark.parametrize(("change", "reason"), [
    ({"host": "twin-2"}, "host"),
    ({"to": "tank-02"}, "recipient"),
    ({"v": 2}, "malformed"),
    ({"epoch": True}, "malformed"),
    ({"seq": -1}, "malformed"),
    ({"extra": 1}, "malformed"),
    ({"msg": {"t": "heartbeat", "epoch": 1, "seq": 1}}, "malformed"),
    ({"msg": {"t": "heartbeat", "epoch": 2, "seq": 1, "healthy": True}}, "mismatch"),
    ({"msg": {"t": "ack", "upto": 1}}, "mismatch"),
])
def test_each_bad_body_is_refused_with_its_reason(change: dict[str, Any], reason: str) -> None:
    body = {"v": 1, "host": HOST, "to": "*", "epoch": 1, "seq": 1, "sent_ms": 1,
            "msg": {"t": "heartbeat", "epoch": 1, "seq": 1, "healthy": True}, **change}
    assert refused(opener(), by_hand(body)).reason == reason


def test_a_heartbeat_on_the_command_topic_and_a_command_for_another_device() -> None:
    assert refused(opener(), hb(), fanout=False).reason == "recipient"
    cmd = seal(Ack(5), KEY, host=HOST, to="tank-02", epoch=1, seq=1, sent_ms=1)
    assert refused(opener(), cmd, fanout=False).reason == "recipient"
    cmd = seal(Ack(5), KEY, host=HOST, to="*", epoch=1, seq=1, sent_ms=1)
    assert refused(opener(), cmd, fanout=True).reason == "mismatch"


@pytest.mark.parametrize("wire", [
    b"", b"\xc1", msgpack.packb([b"a"]), msgpack.packb([b"a", b"b", b"c"]),
    msgpack.packb({"a": 1}), msgpack.packb([1, 2]), msgpack.packb([b"\x93\x01\x02\x03", b"s" * 64]),
    msgpack.packb([msgpack.packb({"v": 1}), b"short"]), b"\x92" + b"\xc4\x00" * 2,
])
def test_what_is_not_an_envelope_is_malformed(wire: bytes) -> None:
    assert refused(opener(), wire).reason == "malformed"


def test_an_oversize_envelope_is_refused_before_decoding() -> None:
    err = refused(opener(), b"\x00" * (WIRE_MAX + 1))
    assert err.reason == "malformed" and "bytes" in err.detail


def test_replays_are_refused_per_stream_and_a_new_epoch_starts_over() -> None:
    o = opener()
    o.open(hb(seq=5), fanout=True)
    assert refused(o, hb(seq=5)).reason == "replayed"  # the same again
    assert refused(o, hb(seq=4)).reason == "replayed"  # an older one
    assert refused(o, hb(epoch=6, seq=99)).reason == "replayed"  # an older epoch
    assert o.open(hb(seq=6), fanout=True).seq == 6
    assert o.open(hb(epoch=8, seq=1), fanout=True).epoch == 8  # a twin restart
    # the command stream is its own: seq 1 there is new
    cmd = seal(Ack(5), KEY, host=HOST, to=DEVICE, epoch=8, seq=1, sent_ms=1)
    assert o.open(cmd, fanout=False).msg == Ack(5)


def test_a_refused_envelope_does_not_move_the_stream() -> None:
    o = opener()
    bad = seal(Heartbeat(7, 9, True), OTHER, host=HOST, to="*", epoch=7, seq=9, sent_ms=1)
    assert refused(o, bad).reason == "signature"
    assert o.open(hb(seq=2), fanout=True).seq == 2  # seq 9 was never let through
