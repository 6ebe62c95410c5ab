"""Helpers to drive a real ``TwinLink`` against a ``SimTwin`` in one event loop.

Used by the tests and benchmarks: ``Recorder`` collects what the link reports (its two
callbacks), ``wait_until`` polls a condition without fixed sleeps, ``settings_for`` builds
link settings for a twin and a PKI with short test timings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.io.pki import PkiPaths
from agent.io.twin.link import TwinLinkSettings
from agent.model.messages import Heartbeat, TwinMessage


@dataclass
class Recorder:
    """Pass ``on_message`` / ``on_connection`` to a TwinLink; read the lists afterwards."""

    messages: list[tuple[TwinMessage, float]] = field(default_factory=list)
    connection: list[tuple[bool, str, float]] = field(default_factory=list)

    def on_message(self, msg: TwinMessage, t: float) -> None:
        self.messages.append((msg, t))

    def on_connection(self, up: bool, reason: str, t: float) -> None:
        self.connection.append((up, reason, t))

    def heartbeats(self) -> list[Heartbeat]:
        return [m for m, _ in self.messages if isinstance(m, Heartbeat)]

    def ups(self) -> int:
        return sum(1 for up, _, _ in self.connection if up)

    def downs(self) -> list[str]:
        return [reason for up, reason, _ in self.connection if not up]


async def wait_until(cond: Callable[[], bool], within_s: float = 5.0, what: str = "") -> None:
    """Poll ``cond`` every 5 ms; TimeoutError naming ``what`` if still false after within_s."""
    end = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"condition not met within {within_s} s: {what or cond}")
        await asyncio.sleep(0.005)


def settings_for(
    pki: PkiPaths, port: int, *, device_id: str = "dev-1", **overrides: Any
) -> TwinLinkSettings:
    """Link settings for a twin on 127.0.0.1:port with short, test-friendly timings."""
    base = TwinLinkSettings(
        host="127.0.0.1",
        port=port,
        ca_file=pki.ca_cert,
        cert_file=pki.device_cert,
        key_file=pki.device_key,
        server_name="localhost",
        device_id=device_id,
        connect_timeout_s=2.0,
        backoff_min_s=0.02,
        backoff_max_s=0.1,
        idle_timeout_s=0.5,
    )
    return replace(base, **overrides)
