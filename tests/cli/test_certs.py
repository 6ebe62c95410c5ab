"""Mutual TLS and device credentials: certs CLI, CRL, expiry; clients without a valid
certificate are refused by the (sim) twin, a revoked twin is refused by the agent."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from agent.cli.main import main as cli
from agent.io.pki import PkiPaths, Role, check_cert, init_pki, issue_cert, issue_expired_cert
from agent.io.twin.link import TwinLinkSettings, make_client_context
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki"), device_id="tank-01")


def settings(p: PkiPaths, port: int, *, cert: Path | None = None, key: Path | None = None,
             crl: Path | None = None) -> TwinLinkSettings:
    return TwinLinkSettings(host="127.0.0.1", port=port, ca_file=p.ca_cert,
                            cert_file=cert or p.device_cert, key_file=key or p.device_key,
                            server_name="localhost", device_id="tank-01", crl_file=crl)


async def handshake(ctx: ssl.SSLContext, port: int) -> str:
    """Connect, complete TLS, and read: 'ok' if the twin's hello arrives, else the error."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 5)
        data = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return f"refused: {exc!r}"
    return "ok" if data else "refused: closed"


def run_against_twin(p: PkiPaths, make: object) -> tuple[str, int]:
    async def go() -> tuple[str, int]:
        twin = SimTwin.from_pki(p)
        await twin.start()
        try:
            result = await handshake(make(twin.port), twin.port)  # type: ignore[operator]
            await asyncio.sleep(0.05)
            return result, twin.tls_failures
        finally:
            await twin.stop()
    return asyncio.run(go())


def test_cli_certs_init_and_check(tmp_path: Path) -> None:
    assert cli(["certs", "init", str(tmp_path / "p"), "--device-id", "tank-01"]) == 0
    p = PkiPaths.in_dir(tmp_path / "p")
    assert all(f.exists() for f in p.all())
    assert (p.device_key.stat().st_mode & 0o777) == 0o600
    assert cli(["certs", "check", str(p.device_cert), "--ca", str(p.ca_cert)]) == 0
    assert cli(["certs", "init", str(tmp_path / "p")]) == 1  # never overwrites


def test_valid_client_is_accepted(pki: PkiPaths) -> None:
    result, failures = run_against_twin(pki, lambda port: make_client_context(
        settings(pki, port)))
    assert result == "ok" and failures == 0


def test_client_without_certificate_is_refused(pki: PkiPaths) -> None:
    def ctx(port: int) -> ssl.SSLContext:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(cafile=str(pki.ca_cert))
        return c
    result, failures = run_against_twin(pki, ctx)
    assert result.startswith("refused") and failures == 1


def test_client_from_another_ca_is_refused(pki: PkiPaths, tmp_path: Path) -> None:
    other = init_pki(tmp_path / "other", device_id="tank-01")
    result, failures = run_against_twin(pki, lambda port: make_client_context(
        settings(pki, port, cert=other.device_cert, key=other.device_key)))
    assert result.startswith("refused") and failures == 1


def test_expired_client_is_refused_and_check_says_expired(pki: PkiPaths, tmp_path: Path) -> None:
    cert, key = tmp_path / "old.crt", tmp_path / "old.key"
    issue_expired_cert(pki, cert, key, role=Role.CLIENT)
    assert any("expired" in p for p in check_cert(cert, pki.ca_cert))
    result, failures = run_against_twin(pki, lambda port: make_client_context(
        settings(pki, port, cert=cert, key=key)))
    assert result.startswith("refused") and failures == 1


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused_by_the_twin(pki: PkiPaths) -> None:
    def ctx(port: int) -> ssl.SSLContext:
        c = make_client_context(settings(pki, port))
        c.minimum_version = ssl.TLSVersion.TLSv1
        c.maximum_version = ssl.TLSVersion.TLSv1_1
        c.set_ciphers("DEFAULT:@SECLEVEL=0")
        return c
    result, _ = run_against_twin(pki, ctx)
    assert result.startswith("refused")


def test_revoked_twin_certificate_is_refused_by_the_agent(tmp_path: Path) -> None:
    p = init_pki(tmp_path / "p", device_id="tank-01")
    crl = tmp_path / "p" / "crl.pem"
    # a CRL of the right CA that revokes another certificate: the genuine twin still passes
    spare_crt, spare_key = tmp_path / "spare.crt", tmp_path / "spare.key"
    issue_cert(p.ca_cert, p.ca_key, spare_crt, spare_key, common_name="spare", role=Role.CLIENT)
    assert cli(["certs", "revoke", str(tmp_path / "p"), str(spare_crt)]) == 0
    result, _ = run_against_twin(p, lambda port: make_client_context(
        settings(p, port, crl=crl)))
    assert result == "ok"
    assert cli(["certs", "revoke", str(tmp_path / "p"), str(p.twin_cert)]) == 0
    assert check_cert(p.twin_cert, p.ca_cert, crl) == ["revoked"]
    result, _ = run_against_twin(p, lambda port: make_client_context(
        settings(p, port, crl=crl)))
    assert result.startswith("refused") and "revoked" in result
