"""Bundle format: canonical payload, signatures, strict decoding."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.bundle import BUNDLE_MAX, FORMAT, Bundle, add_signature, decode, verify_signature
from agent.model.errors import BundleError

pytestmark = pytest.mark.timeout(30)

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes_raw()


def sample(**kw: object) -> Bundle:
    b = Bundle("tank-01", 5, 1000, 2000, 'device_id = "tank-01"\n')
    return add_signature(b, "alice", KEY)


def test_round_trip_and_verify() -> None:
    b = sample()
    again = decode(b.encode())
    assert again == b
    assert verify_signature(again, again.signatures[0], PUB)


def test_payload_is_canonical_and_excludes_signatures() -> None:
    b = sample()
    assert b.payload().startswith(FORMAT.encode() + b"\n")
    assert Bundle(b.device_id, b.version, b.issued_at, b.expires_at, b.config).payload() \
        == b.payload()


@pytest.mark.parametrize("field", ["device_id", "version", "issued_at", "expires_at", "config"])
def test_any_signed_field_changed_breaks_the_signature(field: str) -> None:
    b = sample()
    value = getattr(b, field)
    changed = Bundle(**{**b.__dict__, field: value + (1 if isinstance(value, int) else "x")})
    assert not verify_signature(changed, changed.signatures[0], PUB)


def test_wrong_key_and_garbage_key_do_not_verify() -> None:
    b = sample()
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not verify_signature(b, b.signatures[0], other)
    assert not verify_signature(b, b.signatures[0], b"short")


def test_size_cap_checked_before_decoding() -> None:
    with pytest.raises(BundleError) as info:
        decode(b"\x00" * (BUNDLE_MAX + 1))
    assert info.value.too_large


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("signatures"),
    lambda d: d.update(extra=1),
    lambda d: d.update(format="twinguard-bundle/0"),
    lambda d: d.update(version=True),
    lambda d: d.update(version=0),
    lambda d: d.update(config=""),
    lambda d: d.update(expires_at=10),
    lambda d: d.update(signatures=[{"key_id": "a", "sig": b"x"}]),
    lambda d: d.update(signatures="nope"),
])
def test_strict_decoding(mutate: object) -> None:
    d = msgpack.unpackb(sample().encode(), raw=False)
    mutate(d)  # type: ignore[operator]
    with pytest.raises(BundleError):
        decode(msgpack.packb(d, use_bin_type=True))


def test_ext_types_refused() -> None:
    with pytest.raises(BundleError):
        decode(msgpack.packb(msgpack.ExtType(5, b"x")))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        decode(data)
