"""Test helpers for configuration bundles: keys, a trusted base configuration, signing."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config.bundle import Bundle, signed_by

DEVICE = "tank-01"
ROLES = {"op1": "operator", "eng1": "engineer", "saf1": "safety", "ap1": "approver",
         "ap2": "approver"}


@dataclass
class Kit:
    keys: dict[str, Ed25519PrivateKey]

    @classmethod
    def new(cls) -> Kit:
        return cls({kid: Ed25519PrivateKey.generate() for kid in ROLES})

    def pub(self, kid: str) -> str:
        raw = self.keys[kid].public_key().public_bytes_raw()
        return base64.b64encode(raw).decode()

    def trust_toml(self) -> str:
        return "".join(f'\n[[trust]]\nid = "{k}"\nrole = "{r}"\npublic_key = "{self.pub(k)}"\n'
                       for k, r in ROLES.items())

    def config(self, extra: str = "", *, mode: str = "shadow", device: str = DEVICE) -> str:
        """A configuration text: ``extra`` TOML goes before the trust store."""
        return f'device_id = "{device}"\nmode = "{mode}"\n{extra}\n{self.trust_toml()}'

    def bundle(self, text: str, version: int, signers: tuple[str, ...], *,
               device: str = DEVICE, issued: int | None = None,
               lifetime: int = 3600) -> bytes:
        now = int(time.time()) if issued is None else issued
        b = Bundle(device, version, now, now + lifetime, text)
        return signed_by(b, [(k, self.keys[k]) for k in signers]).encode()
