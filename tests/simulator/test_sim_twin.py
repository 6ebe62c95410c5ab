"""The simulated twin: control channel, CLI, and its own strictness towards agents."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.io.pki import PkiPaths, init_pki
from agent.io.twin.link import TwinLink
from agent.model.messages import AgentHello, Heartbeat, Recommend, TwinHello
from agent.protocol.twin.frames import FrameDecoder, encode
from agent.protocol.twin.schema import decode_twin, to_wire
from sim.twin.control import ControlServer, handle, request
from sim.twin.harness import Recorder, settings_for, wait_until
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki"), device_id="dev-1")


def _client_ctx(pki: PkiPaths, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    if with_cert:
        ctx.load_cert_chain(str(pki.device_cert), str(pki.device_key))
    return ctx


def test_control_channel_commands(pki: PkiPaths, tmp_path: Path) -> None:
    sock = tmp_path / "twin.sock"

    async def main() -> list[dict[str, Any]]:
        twin = SimTwin.from_pki(pki, rate_hz=50)
        await twin.start()
        control = ControlServer(twin, sock)
        await control.start()
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        replies = []
        try:
            for req in [
                {"cmd": "ping"},
                {"cmd": "delay", "ms": 30},
                {"cmd": "jitter", "ms": 5},
                {"cmd": "pause", "s": 10},
                {"cmd": "unhealthy"},
                {"cmd": "stop"},
                {"cmd": "restart"},
                {"cmd": "garbage", "kind": "bad_msgpack"},
                {"cmd": "stats", "last": 5},
                {"cmd": "resume"},
                {"cmd": "healthy", "value": True},
                {"cmd": "stats"},
                {"cmd": "warp"},
                {"cmd": "delay", "ms": "lots"},
                {"cmd": "delay", "ms": -1},
                {"cmd": "garbage", "kind": "confetti"},
                {"cmd": "healthy", "value": "yes"},
                ["cmd"],
            ]:
                replies.append(await request(sock, req))  # type: ignore[arg-type]
            # several requests on one connection, including a line that is not JSON
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(b"this is not json\n\n" + json.dumps({"cmd": "ping"}).encode() + b"\n")
            await writer.drain()
            replies.append(json.loads(await reader.readline()))
            replies.append(json.loads(await reader.readline()))
            writer.close()
        finally:
            await control.stop()
            await twin.stop()
        assert not sock.exists()
        return replies

    r = asyncio.run(main())
    assert r[0]["ok"] and r[0]["epoch"] > 0
    assert all(x["ok"] for x in r[1:12])
    assert r[6]["epoch"] > r[0]["epoch"]
    stats = r[8]
    assert (stats["delay_ms"], stats["jitter_ms"], stats["paused"], stats["healthy"]) == (
        30.0,
        5.0,
        True,
        False,
    )
    assert stats["sending"] is False and stats["garbage_sent"] == 1
    assert stats["epoch"] == r[6]["epoch"]
    after = r[11]
    assert after["sending"] and not after["paused"] and after["healthy"]
    for bad, word in zip(
        r[12:18],
        ["unknown cmd", "number", ">= 0", "confetti", "true or false", "object"],
        strict=True,
    ):
        assert bad["ok"] is False and word in bad["error"]
    assert r[18]["ok"] is False and "not JSON" in r[18]["error"]
    assert r[19]["ok"] is True


def test_stop_and_resume_heartbeats(pki: PkiPaths) -> None:
    async def main() -> tuple[int, int, int, int]:
        twin = SimTwin.from_pki(pki, rate_hz=200)
        await twin.start()
        rec = Recorder()
        link = TwinLink(
            settings_for(pki, twin.port, idle_timeout_s=5), rec.on_message, rec.on_connection
        )
        task = asyncio.create_task(link.run())
        try:
            await wait_until(lambda: len(twin.heartbeats) >= 3)
            twin.stop_heartbeats()
            sent = len(twin.heartbeats)
            await asyncio.sleep(0.1)  # 20 intervals at 200 Hz
            sent_while_stopped = len(twin.heartbeats) - sent
            # whatever was sent before the stop arrives, nothing more
            await wait_until(lambda: len(rec.heartbeats()) == sent, what="in-flight heartbeats")
            twin.resume()
            await wait_until(lambda: len(rec.heartbeats()) > sent, what="heartbeats again")
            return sent_while_stopped, twin.connections_total, link.counters.sessions, sent
        finally:
            link.close()
            await task
            await twin.stop()

    sent_while_stopped, conns, sessions, sent = asyncio.run(main())
    assert sent_while_stopped == 0 and sent >= 3
    assert conns == 1 and sessions == 1  # the connection stayed up throughout


def test_heartbeats_are_recorded_with_monotonic_time(pki: PkiPaths) -> None:
    async def main() -> SimTwin:
        twin = SimTwin.from_pki(pki, rate_hz=200)
        await twin.start()
        rec = Recorder()
        link = TwinLink(settings_for(pki, twin.port), rec.on_message, rec.on_connection)
        task = asyncio.create_task(link.run())
        await wait_until(lambda: len(rec.heartbeats()) >= 5)
        link.close()
        await task
        await twin.stop()
        got = {(h.epoch, h.seq) for h in rec.heartbeats()}
        assert got <= {(h.epoch, h.seq) for h in twin.heartbeats}
        return twin

    twin = asyncio.run(main())
    ts = [h.t for h in twin.heartbeats]
    assert ts == sorted(ts)
    s = twin.stats(2)
    assert s["last_heartbeat_t"] == ts[-1] and len(s["heartbeats"]) == 2
    none = twin.stats(0)
    assert none["heartbeats"] == none["statuses"] == none["agent_hellos"] == []
    assert none["heartbeats_sent"] == len(ts)


async def _raw_session(pki: PkiPaths, twin: SimTwin, payload: bytes) -> list[Any]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", twin.port, ssl=_client_ctx(pki), server_hostname="localhost"
    )
    writer.write(payload)
    dec = FrameDecoder()
    got: list[Any] = []
    while data := await asyncio.wait_for(reader.read(65536), 5):
        got += [decode_twin(f) for f in dec.feed(data)]
    writer.close()
    return got


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x00\x00",
        encode({"t": "status", "state": "NORMAL", "mode": "shadow", "seq": 1}),  # before hello
        encode(to_wire(AgentHello("dev-1", "0.1.0", 1, 500, 250)))
        + encode({"t": "status", "seq": "x"}),
    ],
    ids=["zero length", "status before hello", "bad status"],
)
def test_twin_closes_on_a_malformed_agent_message(pki: PkiPaths, payload: bytes) -> None:
    async def main() -> tuple[list[Any], int]:
        twin = SimTwin.from_pki(pki, rate_hz=1)
        await twin.start()
        try:
            got = await _raw_session(pki, twin, payload)
        finally:
            await twin.stop()
        return got, twin.malformed_in

    got, malformed = asyncio.run(main())
    assert malformed == 1
    assert isinstance(got[0], TwinHello)  # it greeted, then closed on the bad input


def test_twin_requires_a_client_certificate(pki: PkiPaths) -> None:
    async def main() -> tuple[bytes, int]:
        twin = SimTwin.from_pki(pki, rate_hz=50)
        await twin.start()
        got = b""
        try:
            reader, _writer = await asyncio.open_connection(
                "127.0.0.1",
                twin.port,
                ssl=_client_ctx(pki, with_cert=False),
                server_hostname="localhost",
            )
            # TLS 1.3: the client's handshake ends before the twin checks its certificate;
            # the refusal then shows as an alert, a reset or EOF on the first read
            while chunk := await asyncio.wait_for(reader.read(100), 5):
                got += chunk
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            await twin.stop()
        return got, twin.tls_failures

    got, failures = asyncio.run(main())
    assert got == b"" and failures == 1  # not even the hello was sent


def test_cli_serves_and_reports_ready(pki: PkiPaths, tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    fresh = tmp_path / "pki"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim.twin.cli",
            "--listen",
            "127.0.0.1:0",
            "--pki",
            str(fresh),
            "--rate",
            "100",
            "--control",
            str(sock),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready twin listen=127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        port = int(fields["listen"].rsplit(":", 1)[1])
        assert fields["control"] == str(sock)
        paths = PkiPaths.in_dir(fresh)  # created by the CLI since the directory was empty

        async def main() -> dict[str, Any]:
            rec = Recorder()
            link = TwinLink(
                settings_for(paths, port, device_id="sim-tank-01"),
                rec.on_message,
                rec.on_connection,
            )
            task = asyncio.create_task(link.run())
            await wait_until(lambda: len(rec.heartbeats()) >= 2)
            link.close()
            await task
            assert all(isinstance(h, Heartbeat) for h in rec.heartbeats())
            return await request(sock, {"cmd": "stats"})

        stats = asyncio.run(main())
        assert stats["ok"] and stats["connections_total"] == 1
        assert stats["agent_hellos"][0][2] == "sim-tank-01"
        assert stats["epoch"] == int(fields["epoch"])
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_burst_sends_count_recommendations_and_a_heartbeat_in_one_write(pki: PkiPaths) -> None:
    async def main() -> tuple[Recorder, dict[str, Any], list[dict[str, Any]], int]:
        twin = SimTwin.from_pki(pki, rate_hz=20)
        await twin.start()
        writes: list[int] = []
        rec = Recorder()
        link = TwinLink(settings_for(pki, twin.port, idle_timeout_s=5), rec.on_message,
                        rec.on_connection)
        task = asyncio.create_task(link.run())
        try:
            await wait_until(lambda: twin.connections == 1 and len(rec.heartbeats()) >= 1)
            conn = next(iter(twin._conns.values()))
            real_write = conn.writer.write

            def counted(data: bytes) -> None:
                writes.append(len(data))
                real_write(data)

            conn.writer.write = counted  # type: ignore[method-assign]
            bad = [handle(twin, json.dumps(r).encode()) for r in (
                {"cmd": "burst", "count": 0, "output": "o", "value": 1},
                {"cmd": "burst", "count": "many", "output": "o", "value": 1},
                {"cmd": "burst", "count": 3, "output": "o"},
                {"cmd": "burst", "count": 3, "output": "o", "value": 1, "heartbeat": 1})]
            sent = handle(twin, json.dumps({"cmd": "burst", "count": 300, "output": "heater_power",
                                            "value": 150, "heartbeat": True}).encode())
            conn.writer.write = real_write  # type: ignore[method-assign]
            await wait_until(lambda: any(isinstance(m, Heartbeat) and m.seq ==
                                         sent["heartbeat_seq"] for m, _ in rec.messages))
            await wait_until(lambda: sum(isinstance(m, Recommend) for m, _ in rec.messages)
                             >= 300)  # (the heartbeat may well come first: liveness first)
            return rec, sent, bad, writes[0] if len(writes) == 1 else -len(writes)
        finally:
            link.close()
            await task
            await twin.stop()

    rec, sent, bad, write = asyncio.run(main())
    assert sent["ok"] and sent["count"] == 300 and write == sent["bytes"], "ONE write"
    recs = [m for m, _ in rec.messages if isinstance(m, Recommend)]
    assert [r.id for r in recs] == [f"b1-{i:06d}" for i in range(300)]
    assert {(r.output, r.value, r.valid_s) for r in recs} == {("heater_power", 150.0, 5.0)}
    assert all(not b["ok"] for b in bad)
    assert ["1..100000" in bad[0]["error"], "integer" in bad[1]["error"],
            "number" in bad[2]["error"], "true or false" in bad[3]["error"]] == [True] * 4
