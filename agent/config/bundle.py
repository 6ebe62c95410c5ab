"""Signed configuration bundles: format, canonical encoding, signing, verification.

A bundle is one msgpack map (the file written by ``twinguard config sign`` and the bytes
carried by the twin's ``config_push`` message)::

    {"format":     "twinguard-bundle/1",
     "device_id":  str,        the one agent it is for
     "version":    int,        1..2**63-1; must exceed the last version the agent applied
     "issued_at":  int,        Unix seconds (wall clock of the signer)
     "expires_at": int,        Unix seconds; > issued_at
     "config":     str,        the full agent configuration, TOML text
     "signatures": [{"key_id": str, "sig": bin(64)}, ...]}

Every signature is Ed25519 over the same canonical bytes (``Bundle.payload``)::

    b"twinguard-bundle/1\\n" + msgpack([device_id, version, issued_at, expires_at, config])

msgpack of strings and integers is deterministic (smallest encoding), so the payload is the
same on every machine; the signatures are not part of what is signed, which lets people sign
one after the other (``add_signature``).

Decoding is strict: anything else (other keys, wrong types, ext types, a bundle above
``max_bytes``) raises ``BundleError`` (a ``ValueError``) whose ``too_large`` flag tells the
size refusal apart. Pure apart from the Ed25519 primitives of ``cryptography``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from agent.model.errors import BundleError

if TYPE_CHECKING:  # cryptography is imported when a signature is made or checked (its
    # own OpenSSL costs ~7 MB of RSS that an agent which never gets a push need not carry)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "BUNDLE_MAX", "FORMAT", "Bundle", "BundleError", "Signature", "add_signature", "decode",
    "verify_signature",
]

FORMAT = "twinguard-bundle/1"
BUNDLE_MAX = 32 * 1024  # bytes; fits a default 64 KiB twin frame with room to spare
SIG_LEN = 64
KEY_ID_MAX = 64
SIGNATURES_MAX = 16
VERSION_MAX = 2**63 - 1
_KEYS = ("format", "device_id", "version", "issued_at", "expires_at", "config", "signatures")


@dataclass(frozen=True)
class Signature:
    key_id: str
    sig: bytes  # 64-byte Ed25519 signature over Bundle.payload()


@dataclass(frozen=True)
class Bundle:
    device_id: str
    version: int
    issued_at: int
    expires_at: int
    config: str
    signatures: tuple[Signature, ...] = ()

    def payload(self) -> bytes:
        """The canonical bytes every signature covers (see the module docstring)."""
        body = msgpack.packb([self.device_id, self.version, self.issued_at, self.expires_at,
                              self.config], use_bin_type=True)
        return FORMAT.encode() + b"\n" + bytes(body)

    def encode(self) -> bytes:
        """The bundle file / wire bytes."""
        data = msgpack.packb({
            "format": FORMAT, "device_id": self.device_id, "version": self.version,
            "issued_at": self.issued_at, "expires_at": self.expires_at, "config": self.config,
            "signatures": [{"key_id": s.key_id, "sig": s.sig} for s in self.signatures],
        }, use_bin_type=True)
        return bytes(data)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(s.key_id for s in self.signatures)


def add_signature(bundle: Bundle, key_id: str, key: Ed25519PrivateKey) -> Bundle:
    """``bundle`` with one more signature by ``key`` (named ``key_id``)."""
    if not key_id or len(key_id) > KEY_ID_MAX:
        raise ValueError(f"key id must be 1..{KEY_ID_MAX} characters")
    sig = Signature(key_id, key.sign(bundle.payload()))
    return dataclasses.replace(bundle, signatures=(*bundle.signatures, sig))


def verify_signature(bundle: Bundle, signature: Signature, public_key: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``bundle`` by ``public_key``
    (raw 32 bytes). A malformed key or signature is simply not valid."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - see the imports
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature.sig, bundle.payload())
    except (InvalidSignature, ValueError):
        return False
    return True


def _ext(code: int, data: bytes) -> Any:
    raise BundleError(f"msgpack ext type {code} is not allowed in a bundle")


def _int(data: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BundleError(f"{key}: expected an integer in {lo}..{hi}, got {value!r}"[:200])
    return value


def _text(data: Mapping[str, Any], key: str, hi: int) -> str:
    value = data[key]
    if not isinstance(value, str) or not 1 <= len(value) <= hi:
        raise BundleError(f"{key}: expected a non-empty string of at most {hi} characters")
    return value


def _signatures(value: object) -> tuple[Signature, ...]:
    if not isinstance(value, list) or len(value) > SIGNATURES_MAX:
        raise BundleError(f"signatures: expected an array of at most {SIGNATURES_MAX}")
    out: list[Signature] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"key_id", "sig"}:
            raise BundleError(f"signatures[{i}]: expected a map with key_id and sig")
        key_id = _text(entry, "key_id", KEY_ID_MAX)
        sig = entry["sig"]
        if not isinstance(sig, bytes) or len(sig) != SIG_LEN:
            raise BundleError(f"signatures[{i}].sig: expected {SIG_LEN} bytes")
        out.append(Signature(key_id, sig))
    return tuple(out)


def decode(data: bytes, max_bytes: int = BUNDLE_MAX) -> Bundle:
    """Parse bundle bytes strictly; ``BundleError`` (``too_large`` set for the cap)."""
    if len(data) > max_bytes:
        raise BundleError(f"bundle is {len(data)} bytes, the limit is {max_bytes}",
                          too_large=True)
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext,
                              use_list=True)
    except BundleError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BundleError(f"not a msgpack bundle: {exc}") from exc
    if not isinstance(obj, dict):
        raise BundleError("a bundle is a msgpack map")
    if set(obj) != set(_KEYS):
        missing = sorted(set(_KEYS) - set(obj))
        extra = sorted(str(k) for k in set(obj) - set(_KEYS))
        raise BundleError(f"bundle keys: missing {missing}, unknown {extra}")
    if obj["format"] != FORMAT:
        raise BundleError(f"format: expected {FORMAT!r}, got {obj['format']!r}"[:200])
    bundle = Bundle(
        device_id=_text(obj, "device_id", 64),
        version=_int(obj, "version", 1, VERSION_MAX),
        issued_at=_int(obj, "issued_at", 0, VERSION_MAX),
        expires_at=_int(obj, "expires_at", 0, VERSION_MAX),
        config=_text(obj, "config", max_bytes),
        signatures=_signatures(obj["signatures"]),
    )
    if bundle.expires_at <= bundle.issued_at:
        raise BundleError("expires_at must be after issued_at")
    return bundle


def unsigned(device_id: str, version: int, issued_at: int, expires_at: int,
             config: str) -> Bundle:
    """A bundle without signatures (checked like a decoded one; ValueError if invalid)."""
    b = Bundle(device_id, version, issued_at, expires_at, config)
    decode(b.encode(), max_bytes=max(BUNDLE_MAX, len(config) + 4096))
    return b


def signed_by(bundle: Bundle, keys: Iterable[tuple[str, Ed25519PrivateKey]]) -> Bundle:
    """``bundle`` signed by each ``(key_id, key)`` in turn."""
    for key_id, key in keys:
        bundle = add_signature(bundle, key_id, key)
    return bundle
