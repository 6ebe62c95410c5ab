"""Telemetry pump: real spool file, real TLS link, the sim twin's sink; outages and acks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config.agentconfig import SpoolConfig, TelemetryConfig
from agent.io.pki import PkiPaths, init_pki
from agent.io.twin.link import TwinLink
from agent.model.messages import Ack, TwinMessage
from agent.protocol.telemetry import pack, unpack
from agent.runtime.telemetry_pump import SPOOL_FILE, TelemetryPump
from sim.twin.harness import settings_for, wait_until
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(40)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki"), device_id="dev-1")


def numbered(twin: SimTwin) -> dict[int, int]:
    """seq -> the producer's record number, for the records the twin received."""
    return {e["seq"]: e["i"] for e in twin.sink.events if "i" in e}


async def _run(pki: PkiPaths, tmp: Path, *, outage_s: float, ack_on: bool = True,
               history_rate: float = 2000.0) -> tuple[SimTwin, TelemetryPump, int]:
    twin = SimTwin.from_pki(pki, rate_hz=20.0)
    twin.set_ack(5, ack_on)
    await twin.start()
    link: TwinLink | None = None

    async def send(msg: object) -> bool:
        assert link is not None
        return await link.send(msg)  # type: ignore[arg-type]

    pump = await TelemetryPump.open(tmp, SpoolConfig(), TelemetryConfig(
        history_rate=history_rate, window=400), send)
    loop = asyncio.get_running_loop()

    def on_message(msg: TwinMessage, t: float) -> None:
        if isinstance(msg, Ack):
            pump.on_ack(msg.upto)

    link = TwinLink(settings_for(pki, twin.port, idle_timeout_s=1.0), on_message,
                    lambda up, _r, t: pump.on_connection(up, t))
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(pump.run())]
    n = 0

    async def produce(seconds: float) -> None:
        nonlocal n
        end = loop.time() + seconds
        while loop.time() < end:
            assert pump.submit(pack({"type": "event", "event": "test", "i": n}))
            n += 1
            await asyncio.sleep(0.005)

    try:
        await wait_until(lambda: link.connected, 5, "link up")
        await produce(0.5)
        # some records reached the twin before it goes (they are resent if never acked)
        await wait_until(lambda: bool(numbered(twin)), 5, "records at the twin")
        twin.vanish(outage_s)  # the twin disappears; the agent keeps recording
        await produce(outage_s)
        await wait_until(lambda: link.connected, 10, "link back")
        await produce(0.5)
        await asyncio.to_thread(pump.writer.flush, 5.0)
        last = pump.spool.next_seq - 1
        if ack_on:
            await wait_until(lambda: twin.sink.frontier == last and pump.fw.acked == last, 15,
                             "everything acknowledged")
            await wait_until(lambda: pump.spool.backlog().count == 0, 5, "acked records deleted")
        else:
            await wait_until(lambda: twin.sink.frontier == last, 15, "everything received")
    finally:
        link.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pump.close()
        await twin.stop()
    return twin, pump, n


def test_outage_backlog_delivered_in_order_after_reconnect(pki: PkiPaths,
                                                          tmp_path: Path) -> None:
    twin, pump, n = asyncio.run(_run(pki, tmp_path, outage_s=2.0))
    got = numbered(twin)
    assert sorted(got.values()) == list(range(n)), "every record arrived"
    assert [got[s] for s in sorted(got)] == list(range(n)), "seq order is record order"
    assert twin.sink.historical > 50, "the outage's records were sent as history"
    assert not twin.sink.ahead, "no record waits ahead of the frontier"
    assert pump.stats.resumes >= 2 and pump.stats.bad_acks == 0


def test_without_acks_everything_is_kept_and_resent_after_restart(pki: PkiPaths,
                                                                  tmp_path: Path) -> None:
    twin, _pump, n = asyncio.run(_run(pki, tmp_path, outage_s=0.5, ack_on=False))
    assert len(numbered(twin)) == n
    assert twin.sink.duplicates > 0, "unacked records were resent after the reconnect"
    # nothing was acked: the spool file still holds every record for the next start
    async def reopen() -> int:
        async def nosend(msg: object) -> bool:
            return False

        p = await TelemetryPump.open(tmp_path, SpoolConfig(), TelemetryConfig(), nosend)
        count = p.spool.backlog().count
        first = p.fw.acked
        await p.close()
        assert first < min(numbered(twin))
        return count

    assert asyncio.run(reopen()) >= n
    assert (tmp_path / SPOOL_FILE).exists()


def test_body_round_trip_and_oversize() -> None:
    body = pack({"type": "poll", "x": [1.5, None, True]})
    assert unpack(body) == {"type": "poll", "x": [1.5, None, True]}
    big = pack({"type": "poll", "blob": "x" * 70_000, "t_ms": 5})
    assert unpack(big)["event"] == "oversize" and unpack(big)["t_ms"] == 5
    with pytest.raises(ValueError):
        unpack(b"\x93\x01\x02\x03")
