"""Signed envelopes: how a twin message crosses a broker that is not trusted (FLEET.md §7.1).

The broker may drop, delay, duplicate, reorder or replay anything. So every twin -> agent
message that can change control or delete data travels signed and bound::

    wire   = msgpack [body, sig]                   (a 2-array: bin, bin)
    sig    = Ed25519(DOMAIN + body)                 (64 bytes, by one of the twin's keys)
    body   = msgpack {v: 1, host, to, epoch, seq, sent_ms, echo?, msg}
      host    the twin (Sparkplug host id) that signed it
      to      the device id it is for, or "*" on the fan-out heartbeat topic
      epoch   the twin's session; seq strictly increases per (host, to) within an epoch
      echo    (per-device commands) the highest agent status seq the twin has seen: a
              broker that delays the stream is caught by its age (the echo rule, §7.3)
      msg     one twin protocol message as PROTOCOL.md's wire map (``{"t": ..., ...}``),
              decoded as strictly as on the TLS link (``agent.protocol.twin.schema``)

:class:`Opener` checks all of it and keeps, per stream, the newest (epoch, seq) it let
through: anything older or equal is ``replayed``; a newer epoch starts the stream again.
Each refusal raises :class:`EnvelopeRefused` with a ``reason`` from :data:`REASONS`, which
the caller counts; nothing refused ever reaches the heartbeat monitor or the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.model.errors import ProtocolError
from agent.model.messages import Bye, Heartbeat, TwinMessage
from agent.protocol.twin.schema import decode_twin, to_wire

DOMAIN = b"twinguard-fleet/1\x00"  # signatures over envelopes are never valid elsewhere
VERSION = 1
FANOUT = "*"
WIRE_MAX = 64 * 1024
U64_MAX = 2**64 - 1
REASONS = ("malformed", "signature", "host", "recipient", "replayed", "mismatch")
_BODY_KEYS = frozenset({"v", "host", "to", "epoch", "seq", "sent_ms", "echo", "msg"})


class EnvelopeRefused(ValueError):
    """An envelope that must be ignored; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Envelope:
    """A verified envelope: who signed it for whom, where in its stream, and the message."""

    host: str
    to: str
    epoch: int
    seq: int
    sent_ms: int
    echo: int | None
    msg: TwinMessage


def seal(msg: TwinMessage, key: Ed25519PrivateKey, *, host: str, to: str, epoch: int,
         seq: int, sent_ms: int, echo: int | None = None) -> bytes:
    """The wire bytes of ``msg`` signed by ``key`` (the twin side; the sim twin uses it)."""
    body: dict[str, Any] = {"v": VERSION, "host": host, "to": to, "epoch": epoch, "seq": seq,
                            "sent_ms": sent_ms, "msg": to_wire(msg)}
    if echo is not None:
        body["echo"] = echo
    raw = msgpack.packb(body, use_bin_type=True)
    wire: bytes = msgpack.packb([raw, key.sign(DOMAIN + raw)], use_bin_type=True)
    return wire


def _u64(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise EnvelopeRefused("malformed", f"{key}: expected an unsigned integer")
    return value


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise EnvelopeRefused("malformed", f"{key}: expected a text of 1..128 characters")
    return value


def unpack(wire: bytes) -> tuple[bytes, bytes, Mapping[str, Any]]:
    """(body bytes, signature, body map) of an envelope, not yet verified; EnvelopeRefused
    ("malformed") for anything that is not one."""
    if len(wire) > WIRE_MAX:
        raise EnvelopeRefused("malformed", f"{len(wire)} bytes, more than {WIRE_MAX}")
    try:
        outer = msgpack.unpackb(wire, raw=False, strict_map_key=True)
        if (not isinstance(outer, list) or len(outer) != 2
                or not all(isinstance(x, bytes) for x in outer)):
            raise EnvelopeRefused("malformed", "not a [body, signature] pair of bytes")
        raw, sig = outer
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except EnvelopeRefused:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise EnvelopeRefused("malformed", f"not msgpack ({exc})") from None
    if not isinstance(body, dict):
        raise EnvelopeRefused("malformed", "the body is not a map")
    if len(sig) != 64:
        raise EnvelopeRefused("malformed", f"signature of {len(sig)} bytes, expected 64")
    return raw, sig, body


@dataclass
class Opener:
    """Verifies envelopes for one agent: signed by one of ``keys`` (raw 32-byte Ed25519
    public keys), by ``host``, for ``device_id`` (or the fan-out), newer than the last one
    let through on the same stream. Not thread-safe (one event loop)."""

    host: str
    device_id: str
    keys: tuple[bytes, ...]
    _verifiers: tuple[Ed25519PublicKey, ...] = field(init=False, repr=False)
    _last: dict[str, tuple[int, int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("an Opener needs at least one twin key")
        self._verifiers = tuple(Ed25519PublicKey.from_public_bytes(k) for k in self.keys)

    def open(self, wire: bytes, *, fanout: bool) -> Envelope:
        """The verified envelope, or EnvelopeRefused. ``fanout``: it came on the fan-out
        heartbeat topic (``to`` must be ``"*"`` and ``msg`` a heartbeat or a bye), else on
        this device's own command topic (``to`` must be this device)."""
        raw, sig, body = unpack(wire)
        if not any(self._valid(v, sig, raw) for v in self._verifiers):
            raise EnvelopeRefused("signature", "not signed by a key of the twin")
        unknown = set(body) - _BODY_KEYS
        if unknown:
            raise EnvelopeRefused("malformed", f"unknown field {sorted(map(str, unknown))[0]}")
        if body.get("v") != VERSION:
            raise EnvelopeRefused("malformed", f"v: {body.get('v')!r}, expected {VERSION}")
        host, to = _text(body, "host"), _text(body, "to")
        epoch, seq, sent_ms = _u64(body, "epoch"), _u64(body, "seq"), _u64(body, "sent_ms")
        echo = _u64(body, "echo") if "echo" in body else None
        if host != self.host:
            raise EnvelopeRefused("host", f"signed by host {host!r}, expected {self.host!r}")
        if to != (FANOUT if fanout else self.device_id):
            raise EnvelopeRefused("recipient", f"for {to!r}")
        frame = body.get("msg")
        if not isinstance(frame, dict):
            raise EnvelopeRefused("malformed", "msg: expected a map")
        try:
            msg = decode_twin(frame)
        except ProtocolError as exc:
            raise EnvelopeRefused("malformed", f"msg: {exc}") from None
        if fanout != isinstance(msg, Heartbeat | Bye):
            raise EnvelopeRefused("mismatch", f"a {type(msg).__name__} on the "
                                  f"{'fan-out' if fanout else 'command'} topic")
        if isinstance(msg, Heartbeat | Bye) and msg.epoch != epoch:
            raise EnvelopeRefused("mismatch", f"message epoch {msg.epoch}, envelope {epoch}")
        last = self._last.get(to)
        if last is not None and (epoch, seq) <= last:
            raise EnvelopeRefused("replayed", f"epoch {epoch} seq {seq}, already at "
                                  f"epoch {last[0]} seq {last[1]}")
        self._last[to] = (epoch, seq)
        return Envelope(host, to, epoch, seq, sent_ms, echo, msg)

    @staticmethod
    def _valid(verifier: Ed25519PublicKey, sig: bytes, raw: bytes) -> bool:
        try:
            verifier.verify(sig, DOMAIN + raw)
        except InvalidSignature:
            return False
        return True


def public_bytes(keys: Iterable[Ed25519PrivateKey]) -> tuple[bytes, ...]:
    """The raw public keys of ``keys`` (tests and the sim twin)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return tuple(k.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw) for k in keys)
