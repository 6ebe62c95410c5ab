"""Certificates for a fleet broker and its clients, made with the project's demo PKI
(:mod:`agent.io.pki`: ECDSA P-256, SHA-256)::

    dir/
      ca.crt  ca.key                the CA (an existing one is adopted: point ``dir`` at
                                    a ``sim.stack`` PKI and its device cert is trusted)
      broker.crt  broker.key        server cert, CN localhost, SAN localhost + 127.0.0.1
      clients/<cn>.crt  <cn>.key    client certs (EKU clientAuth), CN = the MQTT user
                                    name: ``twin-host``, a device id, a bridge's name

Client certificates are made on first use and reused after (``client(cn)``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from agent.io.pki import Role, issue_cert, make_ca
from sim.broker.conf import TlsFiles

BROKER_NAME = "localhost"


class FleetPki:
    """The CA, the broker's server certificate and client certificates in ``directory``
    (created, 0700, with whatever is missing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / "clients").mkdir(mode=0o700, exist_ok=True)
        if not self.ca_cert.exists():
            make_ca(self.ca_cert, self.ca_key)
        self.broker_cert = directory / "broker.crt"
        self.broker_key = directory / "broker.key"
        if not self.broker_cert.exists():
            issue_cert(self.ca_cert, self.ca_key, self.broker_cert, self.broker_key,
                       common_name=BROKER_NAME, role=Role.SERVER,
                       dns_names=["localhost"], ip_addresses=["127.0.0.1"])

    def server_tls(self) -> TlsFiles:
        """What a broker's listener presents (and the CA it verifies clients with)."""
        return TlsFiles(self.ca_cert, self.broker_cert, self.broker_key)

    def client(self, common_name: str) -> TlsFiles:
        """The client certificate for ``common_name`` (made now if missing). ValueError
        for a name that cannot be a file name or an MQTT user name."""
        if not common_name or any(c in common_name for c in "/+# \t\n") or \
                common_name.startswith("."):
            raise ValueError(f"{common_name!r} cannot be a client certificate's CN")
        cert = self.directory / "clients" / f"{common_name}.crt"
        key = self.directory / "clients" / f"{common_name}.key"
        if not cert.exists():
            issue_cert(self.ca_cert, self.ca_key, cert, key, common_name=common_name,
                       role=Role.CLIENT, overwrite=True)
        return TlsFiles(self.ca_cert, cert, key)

    def client_context(self, common_name: str | None) -> ssl.SSLContext:
        """A TLS 1.2+ client context that verifies the broker against the CA (host name
        127.0.0.1 / localhost) and presents ``common_name``'s certificate (none for None)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if common_name is not None:
            files = self.client(common_name)
            ctx.load_cert_chain(str(files.cert), str(files.key))
        return ctx
