"""Spool + Forwarder as the sender adapter would drive them, on a real file, with an outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.core.forwarder import Forwarder
from agent.io.spool.store import Spool
from agent.model.spool import Overflow, RecordKind


@pytest.mark.timeout(30)
def test_backlog_after_an_outage_is_resent_as_history_while_live_flows(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool.open(
            tmp_path / "s.db", max_bytes=1 << 30, max_records=1_000_000, overflow=Overflow.STOP
        )
        floor = await asyncio.to_thread(spool.append, [], 0.0)  # stores the SEQ_FLOOR event
        assert floor.durable
        fw = Forwarder(
            history_rate=500.0,
            history_burst=50,
            window=200,
            max_batch=40,
            acked=spool.next_seq - 2,
        )
        fw.commit(spool.next_seq - 1)
        twin: dict[int, tuple[bytes, bool]] = {}
        now = 0.0

        async def poll(i: int) -> None:  # one poll's telemetry, appended off the loop
            payloads = [b"p%d.%d" % (i, k) for k in range(10)]
            r = await asyncio.to_thread(spool.append, payloads, 1000.0 + i)
            assert r.durable and r.last_seq is not None
            fw.commit(r.last_seq)

        async def send_all() -> None:
            while (s := fw.next_send(now)) is not None:
                recs = await asyncio.to_thread(spool.pending, s.first - 1, s.count, s.last)
                for rec in recs:
                    twin.setdefault(rec.seq, (rec.payload, s.historical))
            prefix = fw.acked
            while prefix + 1 in twin:
                prefix += 1
            fw.ack(prefix)
            await asyncio.to_thread(spool.ack, prefix)

        fw.connect(now)
        for i in range(20):  # online
            await poll(i)
            await send_all()
            now += 0.05
        outage_first = spool.next_seq
        fw.disconnect()
        for i in range(20, 120):  # offline: 1000 records pile up
            await poll(i)
            now += 0.05
        outage_last = spool.next_seq - 1
        fw.connect(now)
        for i in range(120, 200):  # back: live flows at once, history at <= 500/s
            await poll(i)
            await send_all()
            now += 0.05
            live_now = spool.next_seq - 10
            assert live_now in twin and not twin[live_now][1], "live data waited"
        for _ in range(100):
            if fw.acked == spool.next_seq - 1:
                break
            now += 0.5
            await send_all()
        assert fw.acked == spool.next_seq - 1
        assert spool.backlog().count == 0  # everything acked and deleted
        data = [
            twin[s][0]
            for s in sorted(twin)
            if twin[s][0].startswith(b"p")  # skip the spool's own event records
        ]
        assert data == [b"p%d.%d" % (i, k) for i in range(200) for k in range(10)]
        historical = {s for s, (_, h) in twin.items() if h}
        assert set(range(outage_first, outage_last + 1)) <= historical
        assert all(s <= outage_last for s in historical)
        assert not [r for r in spool.pending(0, 10) if r.kind is RecordKind.DATA]
        spool.close()

    asyncio.run(scenario())
