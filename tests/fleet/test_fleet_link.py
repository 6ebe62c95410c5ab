"""FleetLink against a real mosquitto and a scripted twin host (``fleet_kit``): the
Sparkplug edge-node rules keyed by their tck-ids (FLEET.md §1.5, §7.4, §7.9) and the
fail-safe rules of §7.3 (nothing but a verified heartbeat makes the twin ALIVE). Everything
asserted is what the broker delivered to the twin or what the link reported to its
callbacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fleet_kit import (
    NBIRTH,
    NDATA,
    NDEATH,
    ScriptedTwin,
    in_thread,
    now_ms,
    settings,
    start,
)

from agent.model.endpoint import Endpoint
from agent.model.messages import Ack, Heartbeat, Recommend, Status, Telemetry, TwinHello
from agent.protocol import sparkplug as sp
from agent.protocol.fleet import names
from sim.broker import Broker
from sim.broker.pki import FleetPki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def twin(broker: Broker):
    t = ScriptedTwin(broker)
    yield t
    t.close()


async def born(h, twin: ScriptedTwin, since: float = 0.0, *,
               state_ms: int | None = None) -> sp.Payload:
    """STATE online (at ``state_ms``, default now), then the NBIRTH it gates (decoded)."""
    await h.until(lambda: h.link.counters.connects >= 1, "CONNACK")
    await in_thread(twin.state, True, now_ms() if state_ms is None else state_ms)
    got = await in_thread(twin.probe.wait_message, NBIRTH, since=since)
    return sp.decode_payload(got.payload)


async def up(h, twin: ScriptedTwin, *, state_ms: int | None = None) -> None:
    """Born, then a verified heartbeat: the session is up."""
    await born(h, twin, state_ms=state_ms)
    await in_thread(twin.heartbeat)
    await h.until(lambda: h.link.connected, "session up")


def status(seq: int) -> Status:
    return Status("RUNNING", "shadow", seq, now_ms(), authority="local")


def test_nbirth_waits_for_state_online_and_the_session_for_a_verified_heartbeat(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait and …-birth-sequence-wait:
    no NBIRTH before STATE online (heartbeats or not); the session (TwinHello, then the
    heartbeat) opens only on a verified heartbeat after it."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        await h.until(lambda: h.link.counters.connects == 1, "CONNACK")
        await in_thread(twin.heartbeat)
        await asyncio.sleep(0.3)
        assert twin.births() == [] and h.connections == [] and h.messages == []
        assert h.link.counters.refused["before_birth"] == 1
        await born(h, twin)
        await asyncio.sleep(0.2)
        assert h.connections == []  # STATE online never opens the session
        await in_thread(twin.heartbeat)
        await h.until(lambda: h.connections, "session up")
        assert h.connections[0][0] is True
        assert [type(m) for m, _ in h.messages] == [TwinHello, Heartbeat]
        hello = h.messages[0][0]
        assert (hello.twin_id, hello.epoch) == ("twin", 1)
        assert h.link.session is not None and h.link.session.epoch == 1
        await h.stop()

    asyncio.run(scenario())


def test_connect_is_clean_start_and_the_will_is_ndeath_qos1_not_retained(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-message-flow-edge-node-birth-publish-connect (clean start, MQTT 5),
    …-birth-publish-will-message, …-will-message-qos (1), …-will-message-retain (false),
    tck-id-payloads-ndeath-bdseq (the Will's bdSeq is the NBIRTH's): the connection is
    cut without a DISCONNECT and the broker publishes the Will."""

    async def scenario() -> None:
        offset = broker.log_size()
        h = start(settings(broker, twin.public, keepalive_s=7), tmp_path)
        birth = await born(h, twin)
        line = broker.wait_log(r"New client connected from .* as sim-tank-01 \(([^)]*)\)", 5,
                               offset=offset)
        assert line.group(1).split(", ")[:3] == ["p5", "c1", "k7"]
        bd = sp.bd_seq_of(birth)
        sock = h.link._client._client.socket()  # cut it as a crash would: no DISCONNECT
        sock.shutdown(2)
        will = await in_thread(twin.probe.wait_message, NDEATH)
        assert (will.qos, will.retain) == (1, False)
        death = sp.decode_payload(will.payload)
        assert sp.bd_seq_of(death) == bd and death.seq is None
        assert [m.name for m in death.metrics] == [sp.BDSEQ]
        await h.stop()

    asyncio.run(scenario())


def test_bdseq_increments_per_connect_wraps_and_persists_across_restart(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-payloads-nbirth-bdseq-inc: one more per CONNECT, 255 -> 0, from
    state_dir/fleet.bdseq (written before the CONNECT) across a restart of the link; a
    deliberate close publishes NDEATH with the session's bdSeq first."""
    (tmp_path / "fleet.bdseq").write_text("254\n")

    async def scenario() -> None:
        seen = []
        for _ in range(3):  # three links one after the other: agent restarts
            h = start(settings(broker, twin.public), tmp_path)
            t0 = asyncio.get_running_loop().time()
            birth = await born(h, twin, since=_mono() if seen else 0.0)
            seen.append(sp.bd_seq_of(birth))
            assert (tmp_path / "fleet.bdseq").read_text().strip() == str(seen[-1])
            mark = _mono()
            await h.stop()
            death = await in_thread(twin.probe.wait_message, NDEATH, since=mark)
            assert sp.bd_seq_of(sp.decode_payload(death.payload)) == seen[-1]
            assert asyncio.get_running_loop().time() - t0 < 30
        assert seen == [255, 0, 1]

    asyncio.run(scenario())


def _mono() -> float:
    import time

    return time.monotonic()


def test_seq_wraps_aliases_are_unique_and_names_only_in_the_birth(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-payloads-nbirth-seq (0), tck-id-payloads-sequence-num-incrementing (1..255,
    0, ...), tck-id-payloads-alias-uniqueness, …-alias-birth-requirement,
    …-alias-data-cmd-requirement (NDATA by alias only), tck-id-payloads-nbirth-rebirth-req
    (Rebirth false, no alias), tck-id-topics-ndata-qos (0)."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        birth = await born(h, twin)
        await in_thread(twin.heartbeat)
        await h.until(lambda: h.link.connected, "session up")
        assert birth.seq == 0
        rebirth = birth.metric(sp.REBIRTH)
        assert rebirth.alias is None and rebirth.value is False
        own = [m for m in birth.metrics if m.name not in (sp.BDSEQ, sp.REBIRTH)]
        assert [m.name for m in own] == list(names.BIRTH_METRICS)
        aliases = [m.alias for m in own]
        assert None not in aliases and len(set(aliases)) == len(aliases)
        for i in range(1, 301):
            assert await h.link.send(status(i))
        await in_thread(lambda: twin.probe._wait(lambda: len(twin.probe.messages(NDATA)) >= 300,
                                                 10, "300 NDATA"))
        got = twin.probe.messages(NDATA)
        payloads = [sp.decode_payload(m.payload) for m in got]
        assert [p.seq for p in payloads] == [i % 256 for i in range(1, 301)]
        assert {m.qos for m in got} == {0}
        assert all(m.name is None and m.alias in aliases for p in payloads for m in p.metrics)
        await h.stop()

    asyncio.run(scenario())


def test_rebirth_without_reconnect_same_bdseq_coalesced_within_a_second(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """tck-id-operational-behavior-edge-node-rebirth (NCMD Node Control/Rebirth = true):
    a new NBIRTH with seq 0 and the same bdSeq on the same connection; a second request
    within 1 s is coalesced into it."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        await up(h, twin)
        first = sp.decode_payload(twin.births()[0].payload)
        await asyncio.sleep(1.1)  # past the coalescing window of the first birth
        await in_thread(twin.rebirth)
        await in_thread(twin.rebirth)
        await h.until(lambda: len(twin.births()) >= 2, "rebirth")
        await asyncio.sleep(0.3)
        births = [sp.decode_payload(m.payload) for m in twin.births()]
        assert len(births) == 2
        assert sp.bd_seq_of(births[1]) == sp.bd_seq_of(first) and births[1].seq == 0
        assert h.link.counters.connects == 1 and h.link.connected
        assert h.link.counters.refused["rebirths_coalesced"] == 1
        assert await h.link.send(status(1))
        data = await in_thread(twin.probe.wait_message, NDATA)
        assert sp.decode_payload(data.payload).seq == 1  # counting from the rebirth's 0
        await h.stop()

    asyncio.run(scenario())


def test_a_stale_offline_state_is_ignored(broker: Broker, twin: ScriptedTwin,
                                          tmp_path: Path) -> None:
    """tck-id-operational-behavior-edge-node-termination-host-offline-timestamp: an
    offline STATE older than the prior online one changes nothing (counted)."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        t = now_ms()
        await up(h, twin, state_ms=t)
        await in_thread(twin.state, False, t - 1)
        await h.until(lambda: h.link.counters.refused["state_stale"] == 1, "stale STATE")
        assert h.link.connected and h.link.counters.connects == 1
        assert twin.probe.messages(NDEATH) == []
        await h.stop()

    asyncio.run(scenario())


def test_a_valid_offline_state_is_ndeath_disconnect_and_the_next_server(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path, mosquitto_binary) -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-offline,
    …-termination-host-offline (disconnect), …-host-offline-reconnect and
    …-multiple-servers-walk: a loss at once (session down), NDEATH published, and the
    link connects to the next server in its list."""
    with Broker(tmp_path / "b2", pki=FleetPki(broker.workdir / "pki"),
                binary=mosquitto_binary, name="broker-2") as second:
        other = ScriptedTwin(second, key=twin.key, client_id="twin-2")
        servers = (Endpoint("127.0.0.1", broker.port, "127.0.0.1"),
                   Endpoint("127.0.0.1", second.port, "127.0.0.1"))

        async def scenario() -> None:
            h = start(settings(broker, twin.public, servers=servers), tmp_path)
            t = now_ms()
            await up(h, twin, state_ms=t)
            await in_thread(other.state, True, t + 10)  # the twin is online on the second
            await in_thread(twin.state, False, t)  # >= the prior online's: valid
            await h.until(lambda: not h.link.connected, "loss")
            assert h.connections[-1] == (False, "twin host offline (STATE)")
            death = await in_thread(twin.probe.wait_message, NDEATH)
            assert death.qos == 1
            await in_thread(other.probe.wait_message, NBIRTH)  # walked to the next server
            assert h.link.counters.endpoint == str(servers[1])
            assert h.link.counters.switches == 1
            await h.stop()

        try:
            asyncio.run(scenario())
        finally:
            other.close()


def test_forged_state_online_and_bad_heartbeats_never_open_a_session(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """§7.3: STATE online with no verified heartbeat never makes the twin ALIVE; a
    heartbeat signed by another key, an unsigned one and a replayed one are ignored and
    counted by reason; with nothing verified, the connection is idle and redialled."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public, idle_timeout_s=1.0), tmp_path)
        await born(h, twin)
        await in_thread(twin.heartbeat, key=Ed25519PrivateKey.generate())
        await in_thread(twin.probe.publish, "twinguard/v1/twin/hb", b"\x92\xc4\x01x\xc4\x01y")
        await h.until(lambda: h.link.counters.refused["signature"] == 1
                      and h.link.counters.refused["malformed"] == 1, "refusals")
        assert not h.link.connected and h.connections == [] and h.messages == []
        await h.until(lambda: h.link.counters.connects >= 2, "idle redial", 5)
        assert h.connections == [] and h.link.counters.disconnects >= 1
        # a genuine heartbeat opens the session; the same bytes again are a replay
        await in_thread(twin.probe.wait_message, NBIRTH, since=_mono() - 0.5)
        wire = await in_thread(twin.heartbeat)
        await h.until(lambda: h.link.connected, "session up")
        await in_thread(twin.probe.publish, "twinguard/v1/twin/hb", wire)
        await h.until(lambda: h.link.counters.refused["replayed"] == 1, "replay refused")
        assert len(h.of(Heartbeat)) == 1
        await h.stop()

    asyncio.run(scenario())


def test_the_echo_rule_a_twin_that_does_not_hear_us_is_a_loss(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """§7.3 delaying broker: acks echo the highest status seq the twin saw; while they
    echo a recent status the session stays; once none echoes a status sent within
    echo_timeout_s, the session is lost ("the twin does not hear us") and NDEATH goes out."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public, echo_timeout_s=1.5), tmp_path)
        await up(h, twin)
        for seq in range(1, 5):  # acked: the session holds
            assert await h.link.send(status(seq))
            await in_thread(twin.ack, 0, seq)
            await asyncio.sleep(0.25)
        assert h.link.connected and len(h.of(Ack)) == 4
        assert await h.link.send(status(5))
        await in_thread(twin.ack, 0, 4)  # an old echo: the twin does not see seq 5
        await h.until(lambda: not h.link.connected, "echo loss", 5)
        assert "does not hear us" in h.connections[-1][1]
        await in_thread(twin.probe.wait_message, NDEATH)
        await h.stop()

    asyncio.run(scenario())


def test_unsigned_or_forged_commands_are_refused_signed_ones_delivered(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """§7.5/§7.6: a generic host writing a metric (unsigned) and an ack signed by another
    key are refused and counted (a forged ack deletes nothing: the pump never hears it);
    a signed recommend and ack are delivered with the session as their origin."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        await up(h, twin)
        await in_thread(twin.ncmd, sp.Metric(name="signals/level", alias=None,
                                             datatype=sp.DataType.Double, value=1.0,
                                             timestamp_ms=now_ms()))
        await in_thread(twin.command, Ack(99), echo=0, key=Ed25519PrivateKey.generate())
        await h.until(lambda: h.link.counters.refused["unsigned"] == 1
                      and h.link.counters.refused["signature"] == 1, "refusals")
        assert h.of(Ack) == []
        await in_thread(twin.command, Recommend("r1", "heater_power", 10.0, 5.0))
        await in_thread(twin.command, Ack(7), echo=0)
        await h.until(lambda: h.of(Ack), "signed ack")
        assert h.of(Ack) == [Ack(7)] and [r.id for r in h.of(Recommend)] == ["r1"]
        await h.stop()

    asyncio.run(scenario())


def test_telemetry_is_ndata_with_spool_seq_and_is_historical(
        broker: Broker, twin: ScriptedTwin, tmp_path: Path) -> None:
    """WIRE.md: per record spool seq, prev and the record, stamped with its t_ms and
    is_historical as the record says; nothing is sent while no session is up."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        rec = [Telemetry(s, s - 1, 1_700_000_000_000 + s, s < 3, b"x" * 10) for s in (1, 2, 3)]
        assert not await h.link.send_many(rec)  # no session: dropped, counted
        assert h.link.counters.dropped == 3
        await up(h, twin)
        assert await h.link.send_many(rec)
        got = sp.decode_payload((await in_thread(twin.probe.wait_message, NDATA)).payload)
        seq_alias = next(m.alias for m in sp.decode_payload(twin.births()[0].payload).metrics
                         if m.name == names.M_SPOOL_SEQ)
        seqs = [(m.value, m.is_historical, m.timestamp_ms) for m in got.metrics
                if m.alias == seq_alias]
        assert seqs == [(1, True, rec[0].t_ms), (2, True, rec[1].t_ms), (3, False, rec[2].t_ms)]
        await h.stop()

    asyncio.run(scenario())


def test_a_broker_that_dies_is_a_loss_at_once(broker: Broker, twin: ScriptedTwin,
                                              tmp_path: Path) -> None:
    """§7.3: the MQTT connection dropping ends the session at once (no waiting for any
    timeout); the link keeps dialling."""

    async def scenario() -> None:
        h = start(settings(broker, twin.public), tmp_path)
        await up(h, twin)
        broker.kill()
        await h.until(lambda: not h.link.connected, "loss", 3)
        assert h.connections[-1][0] is False
        await h.until(lambda: h.link.counters.failures >= 1, "redial attempts", 5)
        await h.stop()

    asyncio.run(scenario())
