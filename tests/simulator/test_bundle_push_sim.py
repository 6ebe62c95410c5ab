"""The sim twin pushes a bundle (``--push`` / control ``push``) over real TLS and records the
agent's ``config_result``; the agent's twin link delivers ``config_push`` intact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.io.pki import init_pki
from agent.io.twin.link import TwinLink, TwinLinkSettings
from agent.model.messages import ConfigPush, ConfigResult, TwinMessage
from sim.twin.control import handle
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(20)


def test_push_on_hello_and_by_control(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "pki", device_id="tank-01")
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(b"\x81\xa1x\x01" * 100)  # any bytes: the link does not judge bundles

    async def go() -> tuple[list[bytes], dict[str, object]]:
        twin = SimTwin.from_pki(pki, rate_hz=20)
        twin.push_on_hello = bundle.read_bytes()
        await twin.start()
        got: list[bytes] = []
        link: TwinLink

        def on_message(msg: TwinMessage, t: float) -> None:
            if isinstance(msg, ConfigPush):
                got.append(msg.bundle)
                asyncio.get_running_loop().create_task(link.send(
                    ConfigResult(7, False, "replay", f"push {len(got)}")))

        link = TwinLink(TwinLinkSettings(
            host="127.0.0.1", port=twin.port, ca_file=pki.ca_cert, cert_file=pki.device_cert,
            key_file=pki.device_key, server_name="localhost", device_id="tank-01"),
            on_message, lambda up, reason, t: None)
        task = asyncio.create_task(link.run())
        try:
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
            reply = handle(twin, f'{{"cmd": "push", "path": "{bundle}"}}'.encode())
            assert reply["ok"] and reply["connections"] == 1
            bad = handle(twin, b'{"cmd": "push", "path": "/nonexistent"}')
            assert not bad["ok"] and "cannot read" in bad["error"]
            for _ in range(200):
                if len(twin.config_results) == 2:
                    break
                await asyncio.sleep(0.01)
            return got, twin.stats()
        finally:
            link.close()
            await task
            await twin.stop()

    got, stats = asyncio.run(go())
    assert got == [bundle.read_bytes()] * 2
    results = stats["config_results"]
    assert isinstance(results, list) and [r["detail"] for r in results] == ["push 1", "push 2"]
    assert all(r["reason"] == "replay" and r["version"] == 7 for r in results)
    assert len(stats["pushes"]) == 2  # type: ignore[arg-type]
