"""The sim MQTT twin (``python -m sim mqtt-twin``, sim/twin/mqtt.py) as a process against a
real mosquitto, with a :class:`sim.broker.probe.Probe` standing in for an agent (the
device certificate ``sim-tank-01``): what the twin publishes is checked as an agent would
(``agent.protocol.fleet.envelope.Opener``), what it records through its control channel.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from agent.model.messages import Ack, AgentHello, Bye, Heartbeat, Recommend, Status, Telemetry
from agent.protocol.fleet.envelope import Envelope, EnvelopeRefused, Opener
from agent.protocol.fleet.names import (
    BIRTH_METRICS,
    M_CMD,
    M_HELLO,
    M_RECORD,
    M_RESUME,
    M_SPOOL_PREV,
    M_SPOOL_SEQ,
    M_STATUS,
    config_topic,
    heartbeat_topic,
)
from agent.protocol.sparkplug import (
    AliasTable,
    DataType,
    Kind,
    Metric,
    decode_payload,
    encode_payload,
    nbirth,
    ndata,
    parse_state,
    state_topic,
    topic,
)
from agent.protocol.twin.schema import to_wire
from sim.broker import Broker
from sim.fleet_stack import GROUP, HOST_ID, MqttTwinProcess
from sim.plc.control import ControlError
from sim.stack import wait_for

pytestmark = pytest.mark.timeout(60)

DEV = "sim-tank-01"
HB = heartbeat_topic(HOST_ID)
NCMD = topic(GROUP, Kind.NCMD, DEV)
STATE = state_topic(HOST_ID)
ALIASES = AliasTable.build(BIRTH_METRICS)


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _bytes_metric(name: str, msg: object, t_ms: int, historical: bool = False) -> Metric:
    return Metric(name=name, alias=ALIASES.alias(name), datatype=DataType.Bytes,
                  value=msgpack.packb(to_wire(msg), use_bin_type=True),  # type: ignore[arg-type]
                  timestamp_ms=t_ms, is_historical=historical)


def _u64(name: str, value: int, t_ms: int, historical: bool = False) -> Metric:
    return Metric(name=name, alias=ALIASES.alias(name), datatype=DataType.UInt64, value=value,
                  timestamp_ms=t_ms, is_historical=historical)


class FakeAgent:
    """A Probe speaking the agent's side of WIRE.md by hand: birth, status, records."""

    def __init__(self, probe, key: str, device: str = DEV) -> None:
        self.probe = probe
        self.device = device
        self.ncmd = topic(GROUP, Kind.NCMD, device)
        self.opener = Opener(HOST_ID, device, (base64.b64decode(key),))
        self.seq = 0
        self._cache: dict[str, list[tuple[float, Envelope | str]]] = {}
        for t in (HB, self.ncmd, STATE, config_topic(GROUP, device)):
            assert probe.subscribe(t) == [1]

    def _next(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def birth(self, resume: int | None) -> None:
        now = _ms()
        hello = AgentHello(self.device, "test", 2, 500, 250)
        given = {M_HELLO: _bytes_metric(M_HELLO, hello, now)}
        if resume is not None:
            given[M_RESUME] = _u64(M_RESUME, resume, now)
        metrics = [given.get(name) or Metric(name=name, alias=ALIASES.alias(name),
                                             datatype=DataType.Bytes, value=None,
                                             timestamp_ms=now) for name in BIRTH_METRICS]
        self.seq = 0
        self.probe.publish(topic(GROUP, Kind.NBIRTH, self.device),
                           encode_payload(nbirth(1, metrics, now)), qos=1)

    def data(self, *, status: int | None = None, resume: int | None = None,
             records: tuple[tuple[int, int, bool], ...] = ()) -> None:
        now = _ms()
        metrics: list[Metric] = [] if resume is None else [_u64(M_RESUME, resume, now)]
        if status is not None:
            metrics.append(_bytes_metric(M_STATUS, Status("NORMAL", "shadow", status, now,
                                                          "local"), now))
        for seq, prev, hist in records:
            body = msgpack.packb({"type": "poll", "seq": seq})
            metrics += [_u64(M_SPOOL_SEQ, seq, now, hist), _u64(M_SPOOL_PREV, prev, now, hist),
                        _bytes_metric(M_RECORD, Telemetry(seq, prev, now, hist, body), now, hist)]
        self.probe.publish(topic(GROUP, Kind.NDATA, self.device),
                           encode_payload(ndata(self._next(), metrics, now)), qos=1)

    def _open(self, topic_name: str, fanout: bool) -> list[tuple[float, Envelope | str]]:
        """Every envelope on ``topic_name`` in arrival order, each opened once (the opener
        keeps the newest it let through, as the agent's does): the envelope or the
        reason it was refused."""
        cache = self._cache.setdefault(topic_name, [])
        for m in self.probe.messages(topic_name)[len(cache):]:
            wires = [m.payload] if fanout else [
                x.value for x in decode_payload(m.payload).metrics
                if x.name == M_CMD and isinstance(x.value, bytes)]
            for wire in wires:
                try:
                    cache.append((m.t, self.opener.open(wire, fanout=fanout)))
                except EnvelopeRefused as exc:
                    cache.append((m.t, exc.reason))
            if not wires:
                cache.append((m.t, "no command"))
        return list(cache)

    def commands(self, since: float = 0.0) -> list[tuple[float, Envelope]]:
        """The verified envelopes in NCMD since ``since``."""
        return [(t, e) for t, e in self._open(self.ncmd, False)
                if t >= since and isinstance(e, Envelope)]

    def fanout(self, since: float = 0.0) -> tuple[list[Envelope], dict[str, int]]:
        """The fan-out envelopes since ``since``, verified; the refusals by reason."""
        ok: list[Envelope] = []
        refused: dict[str, int] = {}
        for t, e in self._open(HB, True):
            if t < since:
                continue
            if isinstance(e, Envelope):
                ok.append(e)
            else:
                refused[e] = refused.get(e, 0) + 1
        return ok, refused


@pytest.fixture
def twin(tmp_path: Path, broker: Broker) -> Iterator[MqttTwinProcess]:
    proc = MqttTwinProcess(tmp_path, broker.pki.directory, [("127.0.0.1", broker.port)],
                           rate_hz=20)
    yield proc
    proc.stop()


@pytest.fixture
def agent(broker: Broker, connect: Callable, twin: MqttTwinProcess) -> FakeAgent:
    return FakeAgent(connect(broker, DEV), twin.public_key)


def test_state_online_retained_and_its_will_says_offline_with_the_same_timestamp(
        broker: Broker, connect: Callable, twin: MqttTwinProcess) -> None:
    probe = connect(broker, DEV)
    probe.subscribe(STATE)
    first = probe.wait_message(STATE)
    assert first.retain and first.qos == 1
    online = parse_state(first.payload)
    assert online.online
    os.kill(twin.pid, signal.SIGKILL)  # no clean stop: the broker publishes the Will
    twin.proc.proc.wait(5)
    offline = parse_state(probe.wait_message(STATE, since=first.t + 1e-6).payload)
    assert (offline.online, offline.timestamp_ms) == (False, online.timestamp_ms)


def test_heartbeats_are_signed_fanout_envelopes_with_expiry(agent: FakeAgent,
                                                           twin: MqttTwinProcess) -> None:
    wait_for(lambda: len(agent.probe.messages(HB)) >= 5, 10, "5 heartbeats")
    msgs = agent.probe.messages(HB)
    assert all(m.expiry_s is not None and m.expiry_s <= 1 for m in msgs)
    opened, refused = agent.fanout()
    assert refused == {}
    beats = [e.msg for e in opened]
    assert all(isinstance(b, Heartbeat) and b.healthy for b in beats)
    assert {e.epoch for e in opened} == {twin.epoch}
    seqs = [e.seq for e in opened]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert twin.stats()["heartbeats_sent"] >= len(seqs)


def test_a_device_cannot_publish_a_heartbeat_but_the_twin_can(broker: Broker,
                                                               agent: FakeAgent) -> None:
    assert agent.probe.publish(HB, b"forged", qos=1) == 0x87


def test_telemetry_is_sunk_and_acked_with_the_status_echo(agent: FakeAgent,
                                                         twin: MqttTwinProcess) -> None:
    agent.birth(resume=0)
    agent.data(status=7, records=((1, 0, False), (2, 1, False)))
    agent.data(records=((3, 2, True),))
    tele = wait_for(lambda: (t := twin.telemetry(seqs=True))["frontier"] == 3 and t, 10,
                    "frontier 3")
    assert (tele["received"], tele["historical"], tele["order"]) == (3, 1, [1, 2, 3])
    acks = wait_for(lambda: [e for _, e in agent.commands()
                             if isinstance(e.msg, Ack) and e.msg.upto == 3], 10, "ack upto 3")
    assert acks[-1].echo == 7 and acks[-1].to == DEV
    stats = twin.stats()
    assert stats["statuses"][-1][1:5] == [DEV, "NORMAL", "shadow", 7]
    dev = stats["devices"][DEV]
    assert (dev["births"], dev["records"], dev["status_seq"]) == (1, 3, 7)
    assert dev["hello"]["heartbeat_timeout_ms"] == 500


def test_acks_keep_coming_at_about_1_hz_with_a_fresh_echo(agent: FakeAgent,
                                                          twin: MqttTwinProcess) -> None:
    agent.birth(resume=None)  # as the agent's link: the resume point follows in an NDATA
    agent.data(status=1)
    first = wait_for(lambda: [e for _, e in agent.commands() if e.echo == 1], 10, "echo 1")
    assert isinstance(first[0].msg, Ack) and first[0].msg.upto == 0  # nothing to delete yet
    agent.data(status=2, resume=10)
    got = wait_for(lambda: [e for _, e in agent.commands() if e.echo == 2], 10, "echo 2")
    assert isinstance(got[-1].msg, Ack) and got[-1].msg.upto == 10  # the resume point
    assert twin.telemetry()["resumes"] == 1


def test_ack_off_freezes_upto_but_the_echo_goes_on(agent: FakeAgent,
                                                   twin: MqttTwinProcess) -> None:
    agent.birth(resume=0)
    agent.data(status=1, records=((1, 0, False),))
    wait_for(lambda: any(isinstance(e.msg, Ack) and e.msg.upto == 1
                         for _, e in agent.commands()), 10, "ack upto 1")
    twin.request({"cmd": "ack", "on": False})
    agent.data(status=2, records=((2, 1, False),))
    acks = wait_for(lambda: [e for _, e in agent.commands() if e.echo == 2], 10, "echo 2")
    assert all(isinstance(e.msg, Ack) and e.msg.upto == 1 for e in acks)
    assert twin.telemetry()["frontier"] == 2


def test_stop_resume_unhealthy_and_bye(agent: FakeAgent, twin: MqttTwinProcess) -> None:
    agent.probe.wait_message(HB)
    twin.request({"cmd": "stop"})
    last = twin.stats()["seq"]  # the last one made: none after it may arrive
    t0 = time.monotonic()
    time.sleep(0.5)
    assert max(e.seq for e in agent.fanout()[0]) <= last
    twin.request({"cmd": "unhealthy"})
    twin.request({"cmd": "resume"})
    wait_for(lambda: any(isinstance(e.msg, Heartbeat) and not e.msg.healthy
                         for e in agent.fanout(t0)[0]), 10, "an unhealthy heartbeat")
    old = twin.stats()["epoch"]
    new = twin.request({"cmd": "bye", "reason": "maintenance"})["epoch"]
    assert new > old

    def after_bye() -> bool:
        opened = agent.fanout(t0)[0]
        byes = [i for i, e in enumerate(opened) if isinstance(e.msg, Bye)]
        return bool(byes) and any(e.epoch == new for e in opened[byes[0]:])

    wait_for(after_bye, 10, "a bye, then heartbeats of the next epoch")


def test_replayed_and_unsigned_heartbeats_are_refused_by_an_agent(
        agent: FakeAgent, twin: MqttTwinProcess) -> None:
    wait_for(lambda: len(agent.probe.messages(HB)) >= 3, 10, "heartbeats")
    agent.fanout()  # the opener has seen them: a replay is older than what it let through
    t0 = time.monotonic()
    assert twin.request({"cmd": "replay", "count": 2})["replayed"] == 2
    for kind in ("forged", "zero_sig", "garbage"):
        twin.request({"cmd": "unsigned", "kind": kind})
    want = {"replayed": 2, "signature": 2, "malformed": 1}
    wait_for(lambda: agent.fanout(t0)[1] == want, 10, f"refusals {want}")
    with pytest.raises(ControlError, match="unknown kind"):
        twin.request({"cmd": "unsigned", "kind": "nonsense"})


def test_delay_holds_heartbeats_and_acks_alike(agent: FakeAgent,
                                               twin: MqttTwinProcess) -> None:
    agent.birth(resume=0)
    agent.data(status=1)
    wait_for(agent.commands, 10, "a first ack")
    twin.request({"cmd": "delay", "ms": 600})
    time.sleep(0.7)  # what was sent before the delay has arrived
    t0 = time.monotonic()
    wait_for(lambda: len(agent.probe.messages(HB)) and agent.probe.messages(HB)[-1].t > t0
             and agent.commands(t0), 10, "delayed heartbeats and an ack")
    # arrival (wall clock, as the probe is on this host) at least 600 ms after signing;
    # a lower bound only: load can add to it, never take away
    lag_ms = [m.t - time.monotonic() + time.time() for m in agent.probe.messages(HB)
              if m.t > t0]
    opened = agent.fanout(t0)[0]
    assert opened and len(lag_ms) == len(opened)
    assert all(lag * 1000 - e.sent_ms >= 590 for lag, e in zip(lag_ms, opened, strict=True))
    for t, e in agent.commands(t0):
        assert (t - time.monotonic() + time.time()) * 1000 - e.sent_ms >= 590


def test_state_offline_and_forged_state_online(agent: FakeAgent,
                                               twin: MqttTwinProcess) -> None:
    online = parse_state(agent.probe.wait_message(STATE).payload)
    t0 = time.monotonic()
    twin.request({"cmd": "state_offline"})
    off = parse_state(agent.probe.wait_message(STATE, since=t0).payload)
    assert (off.online, off.timestamp_ms) == (False, online.timestamp_ms)
    t1 = time.monotonic()
    stamp = twin.request({"cmd": "forge_state_online"})["timestamp"]
    forged = parse_state(agent.probe.wait_message(STATE, since=t1).payload)
    assert forged.online and forged.timestamp_ms == stamp >= online.timestamp_ms
    stats = twin.stats()
    assert stats["sending"] is False
    time.sleep(0.5)
    assert max((e.seq for e in agent.fanout()[0]), default=0) <= stats["seq"]


def test_recommend_push_and_rebirth(broker: Broker, connect: Callable, agent: FakeAgent,
                                    twin: MqttTwinProcess) -> None:
    with pytest.raises(ControlError, match="no device"):
        twin.request({"cmd": "recommend", "output": "heater_power", "value": 40,
                      "valid_s": 5, "device": DEV})
    agent.birth(resume=0)
    wait_for(lambda: DEV in twin.stats()["devices"], 10, "the birth")
    sent = twin.request({"cmd": "recommend", "output": "heater_power", "value": 40,
                         "valid_s": 5, "id": "r-1"})
    assert sent["devices"] == [DEV]
    recs = wait_for(lambda: [e for _, e in agent.commands() if isinstance(e.msg, Recommend)],
                    10, "the recommendation")
    assert recs[0].msg == Recommend("r-1", "heater_power", 40.0, 5.0)
    twin.request({"cmd": "rebirth"})
    wait_for(lambda: any(m.name == "Node Control/Rebirth" and m.value is True
                         for r in agent.probe.messages(NCMD)
                         for m in decode_payload(r.payload).metrics), 10, "a rebirth")
    twin.request({"cmd": "push", "hex": b"bundle-bytes".hex(), "device": DEV})
    late = connect(broker, DEV, "late-subscriber")
    late.subscribe(config_topic(GROUP, DEV))
    got = late.wait_message(config_topic(GROUP, DEV))
    assert got.retain and got.payload == b"bundle-bytes"


def test_the_twin_serves_two_brokers_at_once(tmp_path: Path, broker: Broker,
                                             mosquitto_binary, connect: Callable) -> None:
    with Broker(tmp_path / "b2", pki=broker.pki, binary=mosquitto_binary) as second:
        twin = MqttTwinProcess(tmp_path, broker.pki.directory,
                               [("127.0.0.1", broker.port), ("127.0.0.1", second.port)])
        try:
            for b in (broker, second):
                probe = connect(b, DEV)
                probe.subscribe(HB)
                probe.wait_message(HB)
            second.kill()
            wait_for(lambda: twin.stats()["connections"] == 1, 10, "one server left")
            t0 = time.monotonic()
            probe = connect(broker, DEV, "after")
            probe.subscribe(HB)
            probe.wait_message(HB, since=t0)
        finally:
            twin.stop()


def test_one_twin_serves_many_agents_each_with_its_own_sink_and_acks(
        broker: Broker, connect: Callable, twin: MqttTwinProcess) -> None:
    names = [f"sim-tank-{i:02d}" for i in range(1, 6)]
    agents = [FakeAgent(connect(broker, n), twin.public_key, n) for n in names]
    for a in agents:  # asks for everyone's commands: the ACL delivers only its own
        a.probe.subscribe(f"spBv1.0/{GROUP}/NCMD/+")
    for i, a in enumerate(agents):
        a.birth(resume=100 * i)
        a.data(status=i + 1, records=tuple((100 * i + k, 100 * i + k - 1, False)
                                           for k in range(1, i + 2)))
    for i, a in enumerate(agents):
        want = 100 * i + i + 1
        acks = wait_for(lambda a=a, want=want: [e for _, e in a.commands()
                                                if isinstance(e.msg, Ack)
                                                and e.msg.upto == want], 10, f"ack {want}")
        assert acks[-1].echo == i + 1
        tele = twin.telemetry(device=a.device)
        assert (tele["frontier"], tele["received"]) == (want, i + 1)
        assert {m.topic for m in a.probe.messages()} <= {HB, STATE, a.ncmd}
    assert sorted(twin.stats()["devices"]) == names


def test_a_forged_ack_is_signed_by_another_key(agent: FakeAgent,
                                               twin: MqttTwinProcess) -> None:
    agent.birth(resume=0)
    agent.data(records=((1, 0, False), (2, 1, False)))
    wait_for(lambda: twin.telemetry()["received"] == 2, 10, "two records")
    assert twin.request({"cmd": "forge_ack"})["forged"] == [{"device": DEV, "upto": 2}]
    wait_for(lambda: "signature" in [e for _, e in agent._open(agent.ncmd, False)], 10,
             "a command the agent refuses: signature")
