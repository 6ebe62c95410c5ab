"""A scripted twin host and a FleetLink harness for the fleet link's tests.

:class:`ScriptedTwin` is the twin side as a test drives it: a ``twin-host`` MQTT client
(:class:`sim.broker.probe.Probe`) that publishes STATE, signed heartbeats on the fan-out
topic (``agent.protocol.fleet.envelope.seal``) and NCMD commands, and records what the
agent publishes. :class:`Harness` runs a real :class:`agent.io.fleet.link.FleetLink`
against the broker on an asyncio loop and records its callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.io.fleet.link import FleetLink, FleetLinkSettings
from agent.model.endpoint import Endpoint
from agent.model.messages import Ack, Bye, Heartbeat, Message, TwinMessage
from agent.protocol import sparkplug as sp
from agent.protocol.fleet import names
from agent.protocol.fleet.envelope import FANOUT, public_bytes, seal
from sim.broker import Broker
from sim.broker.probe import Probe, Received

DEVICE = "sim-tank-01"
GROUP = "plant"
HOST = "twin"
NDATA = sp.topic(GROUP, sp.Kind.NDATA, DEVICE)
NBIRTH = sp.topic(GROUP, sp.Kind.NBIRTH, DEVICE)
NDEATH = sp.topic(GROUP, sp.Kind.NDEATH, DEVICE)
NCMD = sp.topic(GROUP, sp.Kind.NCMD, DEVICE)
STATE = sp.state_topic(HOST)
HB = names.heartbeat_topic(HOST)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ScriptedTwin:
    """The twin host, scripted by the test (a blocking Probe; call from a thread)."""

    def __init__(self, broker: Broker, key: Ed25519PrivateKey | None = None,
                 client_id: str = "twin-1") -> None:
        self.key = key or Ed25519PrivateKey.generate()
        self.probe = Probe(broker.port, broker.pki.client_context("twin-host"), client_id)
        for topic in (NBIRTH, NDATA, NDEATH):
            self.probe.subscribe(topic, qos=1)
        self.epoch = 1
        self.hb_seq = 0
        self.cmd_seq = 0

    @property
    def public(self) -> tuple[bytes, ...]:
        return public_bytes([self.key])

    def state(self, online: bool, timestamp_ms: int) -> None:
        self.probe.publish(STATE, sp.encode_state(sp.State(online, timestamp_ms)), qos=1,
                           retain=True)

    def heartbeat_wire(self, *, healthy: bool = True, epoch: int | None = None,
                       key: Ed25519PrivateKey | None = None, seq: int | None = None) -> bytes:
        epoch = self.epoch if epoch is None else epoch
        if seq is None:
            self.hb_seq += 1
            seq = self.hb_seq
        return seal(Heartbeat(epoch, seq, healthy, now_ms()), key or self.key, host=HOST,
                    to=FANOUT, epoch=epoch, seq=seq, sent_ms=now_ms())

    def heartbeat(self, **kw: Any) -> bytes:
        wire = self.heartbeat_wire(**kw)
        self.probe.publish(HB, wire, qos=0)
        return wire

    def bye(self) -> None:
        self.hb_seq += 1
        self.probe.publish(HB, seal(Bye(self.epoch, "test"), self.key, host=HOST, to=FANOUT,
                                    epoch=self.epoch, seq=self.hb_seq, sent_ms=now_ms()))

    def command(self, msg: TwinMessage, *, echo: int | None = None,
                key: Ed25519PrivateKey | None = None) -> None:
        self.cmd_seq += 1
        wire = seal(msg, key or self.key, host=HOST, to=DEVICE, epoch=self.epoch,
                    seq=self.cmd_seq, sent_ms=now_ms(), echo=echo)
        self.ncmd(sp.Metric(name=names.M_CMD, alias=None, datatype=sp.DataType.Bytes,
                            value=wire, timestamp_ms=now_ms()))

    def ack(self, upto: int, echo: int) -> None:
        self.command(Ack(upto), echo=echo)

    def ncmd(self, *metrics: sp.Metric) -> None:
        self.probe.publish(NCMD, sp.encode_payload(sp.Payload(now_ms(), None, metrics)), qos=0)

    def rebirth(self) -> None:
        self.ncmd(sp.Metric(name=sp.REBIRTH, alias=None, datatype=sp.DataType.Boolean,
                            value=True, timestamp_ms=now_ms()))

    def births(self) -> list[Received]:
        return self.probe.messages(NBIRTH)

    def close(self) -> None:
        self.probe.close()


@dataclass
class Harness:
    """A FleetLink on the running loop; its callbacks recorded."""

    link: FleetLink
    messages: list[tuple[Message, float]] = field(default_factory=list)
    connections: list[tuple[bool, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m, _ in self.messages if isinstance(m, kind)]

    async def until(self, cond: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s} s; link events "
                                     f"{self.connections}, counters {self.link.counters}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.link.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


def settings(broker: Broker, twin_keys: tuple[bytes, ...], *, servers: tuple[Endpoint, ...]
             | None = None, **kw: Any) -> FleetLinkSettings:
    files = broker.pki.client(DEVICE)
    defaults: dict[str, Any] = {"backoff_min_s": 0.05, "backoff_max_s": 0.2,
                                "idle_timeout_s": 5.0, "echo_timeout_s": 30.0}
    defaults.update(kw)
    return FleetLinkSettings(
        servers=servers or (Endpoint("127.0.0.1", broker.port, "127.0.0.1"),),
        group=GROUP, host_id=HOST, device_id=DEVICE, twin_keys=twin_keys,
        ca_file=files.ca, cert_file=files.cert, key_file=files.key, **defaults)


def start(s: FleetLinkSettings, state_dir: Path) -> Harness:
    """A running link (call on the loop)."""
    h: Harness

    def on_message(msg: Message, t: float) -> None:
        h.messages.append((msg, t))

    def on_connection(up: bool, reason: str, t: float) -> None:
        h.connections.append((up, reason))

    h = Harness(FleetLink(s, on_message, on_connection, state_dir=state_dir))
    h.task = asyncio.ensure_future(h.link.run())
    return h


async def in_thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)
