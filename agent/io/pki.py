"""A small demo PKI for the twin link (``cryptography``, ECDSA P-256, SHA-256).

``init_pki(dir, device_id=...)`` writes::

    dir/ (0700)
      ca.crt      ca.key (0600)      self-signed CA, CA:TRUE pathlen 0, keyCertSign
      device.crt  device.key (0600)  CN=<device id>, EKU clientAuth   (the agent)
      twin.crt    twin.key (0600)    CN=<twin name>, EKU serverAuth,
                                     SAN DNS:<twin name>, DNS:localhost, IP:127.0.0.1
                                     (an IP address as twin name goes in as IP SAN)

Existing files are never overwritten unless ``overwrite=True`` (FileExistsError naming
the first one found, also in its ``filename``, before anything is written). Private keys are
PKCS#8 PEM, not encrypted (the demo PKI protects them with file permissions only); they are
created with mode 0600 from the start, never chmod-ed afterwards.

``describe_cert`` says whom a certificate names, its issuer and validity, ``check_cert`` what
is wrong with it. ``issue_cert`` and ``make_ca`` exist for tests and the ``twinguard certs``
CLI:
an expired certificate is ``issue_expired_cert(paths, ...)`` (``issue_cert`` with a
``not_before`` in the past), a certificate from another CA is ``init_pki(other_dir, ...)``.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

DEFAULT_DAYS = 825  # the longest validity browsers accepted for leaf certs; fine for a demo


class Role(enum.Enum):
    """What a leaf certificate is for (its extended key usage)."""

    CLIENT = "client"  # the agent (device)
    SERVER = "server"  # the twin


@dataclass(frozen=True)
class PkiPaths:
    ca_cert: Path
    ca_key: Path
    device_cert: Path
    device_key: Path
    twin_cert: Path
    twin_key: Path

    @classmethod
    def in_dir(cls, directory: Path | str) -> PkiPaths:
        """The standard file names inside ``directory`` (nothing is checked or created)."""
        d = Path(directory)
        return cls(
            ca_cert=d / "ca.crt",
            ca_key=d / "ca.key",
            device_cert=d / "device.crt",
            device_key=d / "device.key",
            twin_cert=d / "twin.crt",
            twin_key=d / "twin.key",
        )

    def all(self) -> tuple[Path, ...]:
        return (
            self.ca_cert,
            self.ca_key,
            self.device_cert,
            self.device_key,
            self.twin_cert,
            self.twin_key,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p.exists():
            error = FileExistsError(f"{p} exists; refusing to overwrite (pass overwrite=True)")
            error.filename = str(p)  # for a caller that names its own way to overwrite
            raise error


def _write(path: Path, data: bytes, *, private: bool, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    mode = 0o600 if private else 0o644
    if private and overwrite and path.exists():
        path.unlink()  # re-create so the 0600 mode applies even if the old file was wider
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, overwrite: bool) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, private=True, overwrite=overwrite)


def _write_cert(path: Path, cert: x509.Certificate, overwrite: bool) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), private=False, overwrite=overwrite)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinguard demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(
    cert_out: Path,
    key_out: Path,
    *,
    name: str = "twinguard demo CA",
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> None:
    """Write a new self-signed ECDSA P-256 CA. FileExistsError unless ``overwrite``."""
    _refuse_existing((cert_out, key_out), overwrite)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_out, key, overwrite)
    _write_cert(cert_out, cert, overwrite)


def issue_cert(
    ca_cert: Path,
    ca_key: Path,
    cert_out: Path,
    key_out: Path,
    *,
    common_name: str,
    role: Role,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    not_before: dt.datetime | None = None,
    overwrite: bool = False,
) -> None:
    """Write a new ECDSA P-256 leaf cert + key signed by the CA in ``ca_cert``/``ca_key``.

    Valid from ``not_before`` (default: 5 minutes ago) for ``days`` days; a ``not_before``
    far enough in the past makes an expired certificate. FileExistsError unless
    ``overwrite``; ValueError if the CA key is not an EC key or an IP address is invalid.
    """
    _refuse_existing((cert_out, key_out), overwrite)
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key}: not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before if not_before is not None else _now() - dt.timedelta(minutes=5)
    eku = (
        ExtendedKeyUsageOID.CLIENT_AUTH if role is Role.CLIENT else ExtendedKeyUsageOID.SERVER_AUTH
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=role is Role.SERVER,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    _write_key(key_out, key, overwrite)
    _write_cert(cert_out, cert, overwrite)


def init_pki(
    directory: Path | str,
    *,
    device_id: str,
    twin_name: str = "localhost",
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> PkiPaths:
    """Create a CA, a device (client) and a twin (server) certificate in ``directory``.

    See the module docstring for the layout. FileExistsError (before writing anything)
    if any of the six files exists and ``overwrite`` is False; ValueError if
    ``device_id`` or ``twin_name`` is empty.
    """
    if not device_id or not twin_name:
        raise ValueError("device_id and twin_name must not be empty")
    d = Path(directory)
    paths = PkiPaths.in_dir(d)
    _refuse_existing(paths.all(), overwrite)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_ca(paths.ca_cert, paths.ca_key, days=days, overwrite=overwrite)
    issue_cert(
        paths.ca_cert,
        paths.ca_key,
        paths.device_cert,
        paths.device_key,
        common_name=device_id,
        role=Role.CLIENT,
        days=days,
        overwrite=overwrite,
    )
    try:
        ipaddress.ip_address(twin_name)
        dns, ips = ["localhost"], sorted({twin_name, "127.0.0.1"})
    except ValueError:
        dns, ips = sorted({twin_name, "localhost"}), ["127.0.0.1"]
    issue_cert(
        paths.ca_cert,
        paths.ca_key,
        paths.twin_cert,
        paths.twin_key,
        common_name=twin_name,
        role=Role.SERVER,
        dns_names=dns,
        ip_addresses=ips,
        days=days,
        overwrite=overwrite,
    )
    log.info("demo PKI written to %s (device %s, twin %s)", d, device_id, twin_name)
    return paths


def issue_expired_cert(
    paths: PkiPaths,
    cert_out: Path,
    key_out: Path,
    *,
    role: Role = Role.CLIENT,
    common_name: str = "expired",
    expired_days_ago: int = 1,
) -> None:
    """For tests: a cert from ``paths``' CA whose validity ended ``expired_days_ago`` ago.

    A server cert gets the same SAN as the demo twin (localhost, 127.0.0.1), so the
    expiry is the only thing wrong with it. FileExistsError if an output exists.
    """
    start = _now() - dt.timedelta(days=expired_days_ago + 1)
    server = role is Role.SERVER
    issue_cert(
        paths.ca_cert,
        paths.ca_key,
        cert_out,
        key_out,
        common_name=common_name,
        role=role,
        dns_names=["localhost"] if server else [],
        ip_addresses=["127.0.0.1"] if server else [],
        days=1,
        not_before=start,
    )


# --- revocation and expiry (twinguard certs; the twin link's optional CRL) ------------------


def make_crl(
    ca_cert: Path,
    ca_key: Path,
    revoked: Sequence[Path],
    crl_out: Path,
    *,
    days: int = 30,
) -> int:
    """Write a PEM CRL signed by the CA listing the serials of the ``revoked`` certificates
    (plus those already in ``crl_out`` if it exists); returns how many it lists.

    ValueError if a certificate was not issued by this CA or the CA key is not EC.
    """
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key}: not an EC private key")
    serials: set[int] = set()
    if crl_out.exists():
        serials |= {r.serial_number for r in x509.load_pem_x509_crl(crl_out.read_bytes())}
    for path in revoked:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if cert.issuer != ca.subject:
            raise ValueError(f"{path}: not issued by {ca_cert}")
        serials.add(cert.serial_number)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial in sorted(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    crl = builder.sign(signer, hashes.SHA256())
    data = crl.public_bytes(serialization.Encoding.PEM)
    tmp = crl_out.with_name(crl_out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, crl_out)
    return len(serials)


@dataclass(frozen=True)
class CertInfo:
    """Who a certificate names, who signed it and when it is valid (UTC)."""

    subject: str  # the subject's CN, or the whole subject if it has none
    issuer: str  # the issuer's CN, likewise
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int


def _common_name(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def describe_cert(path: Path) -> CertInfo:
    """The :class:`CertInfo` of the PEM certificate at ``path``; OSError / ValueError if it
    cannot be read or parsed."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return CertInfo(_common_name(cert.subject), _common_name(cert.issuer),
                    cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number)


def check_cert(
    cert_path: Path,
    ca_cert: Path,
    crl_path: Path | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Problems with a certificate: not yet valid, expired, not signed by the CA, revoked
    by the CRL (whose own signature is checked). An empty list means fine.

    OSError / ValueError if a file cannot be read or parsed.
    """
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    at = now or _now()
    problems: list[str] = []
    if at < cert.not_valid_before_utc:
        problems.append(f"not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
    if at > cert.not_valid_after_utc:
        problems.append(f"expired {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        problems.append(f"not issued by {ca_cert}")
    if crl_path is not None:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
        if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
            problems.append(f"{crl_path}: CRL not signed by {ca_cert}")
        elif crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            problems.append("revoked")
    return problems
