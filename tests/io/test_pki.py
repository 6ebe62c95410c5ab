"""The demo PKI: files, permissions, certificate contents, no silent overwrite."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.io.pki import PkiPaths, Role, init_pki, issue_cert

pytestmark = pytest.mark.timeout(20)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki") / "demo", device_id="tank-07")


def test_writes_six_files_keys_private(pki: PkiPaths) -> None:
    for p in pki.all():
        assert p.is_file(), p
    for key in (pki.ca_key, pki.device_key, pki.twin_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(pki.ca_cert.parent.stat().st_mode) == 0o700


def test_device_cert_is_a_client_cert_named_for_the_device(pki: PkiPaths) -> None:
    ca, dev = _cert(pki.ca_cert), _cert(pki.device_cert)
    assert _cn(dev) == "tank-07"
    eku = dev.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    dev.verify_directly_issued_by(ca)
    assert isinstance(dev.public_key(), ec.EllipticCurvePublicKey)
    assert dev.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_twin_cert_is_a_server_cert_for_localhost(pki: PkiPaths) -> None:
    ca, twin = _cert(pki.ca_cert), _cert(pki.twin_cert)
    eku = twin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = twin.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    twin.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert twin.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_ssl_loads_the_chain(pki: PkiPaths) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.twin_cert), str(pki.twin_key))
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_never_overwrites_unless_asked(tmp_path: Path) -> None:
    paths = init_pki(tmp_path, device_id="a")
    before = {p: p.read_bytes() for p in paths.all()}
    with pytest.raises(FileExistsError, match=r"ca\.crt"):
        init_pki(tmp_path, device_id="b")
    assert {p: p.read_bytes() for p in paths.all()} == before
    init_pki(tmp_path, device_id="b", overwrite=True)
    assert _cn(_cert(paths.device_cert)) == "b"
    assert paths.ca_key.read_bytes() != before[paths.ca_key]
    assert stat.S_IMODE(paths.device_key.stat().st_mode) == 0o600


def test_one_existing_file_blocks_everything(tmp_path: Path) -> None:
    (tmp_path / "twin.key").write_text("precious")
    with pytest.raises(FileExistsError, match=r"twin\.key"):
        init_pki(tmp_path, device_id="a")
    assert not (tmp_path / "ca.crt").exists()  # refused before writing anything
    assert (tmp_path / "twin.key").read_text() == "precious"


def test_expired_cert_helper(pki: PkiPaths, tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    issue_cert(
        pki.ca_cert,
        pki.ca_key,
        tmp_path / "old.crt",
        tmp_path / "old.key",
        common_name="tank-07",
        role=Role.CLIENT,
        not_before=past,
        days=1,
    )
    old = _cert(tmp_path / "old.crt")
    assert old.not_valid_after_utc < dt.datetime.now(dt.UTC)
    old.verify_directly_issued_by(_cert(pki.ca_cert))


def test_empty_device_id_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device_id"):
        init_pki(tmp_path, device_id="")


@pytest.mark.parametrize(
    ("twin_name", "dns", "ips"),
    [
        ("twin.plant.example", {"twin.plant.example", "localhost"}, {"127.0.0.1"}),
        ("10.0.0.5", {"localhost"}, {"10.0.0.5", "127.0.0.1"}),
    ],
)
def test_twin_name_goes_into_the_san(
    tmp_path: Path, twin_name: str, dns: set[str], ips: set[str]
) -> None:
    paths = init_pki(tmp_path, device_id="a", twin_name=twin_name)
    san = _cert(paths.twin_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(san.value.get_values_for_type(x509.DNSName)) == dns
    assert {str(a) for a in san.value.get_values_for_type(x509.IPAddress)} == ips
