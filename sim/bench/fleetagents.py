"""The fleet benchmark's simulated agents: light MQTT 5 subscribers, many per process.

One worker process (:func:`worker`, started by ``sim.bench.fleet`` with multiprocessing's
``spawn``) holds ``count`` TLS connections to the broker and drives them all from one
``selectors`` loop, speaking just enough MQTT 5 to subscribe and listen
(:mod:`sim.bench.mqttlite`: CONNECT with clean start, SUBSCRIBE, PUBLISH read, PINGREQ
every ``KEEPALIVE_S / 2``). paho-mqtt on the same loop was measured first: at 1000 agents x
10 Hz its ~0.4 ms of Python per message put two worker processes seconds behind (p50
latency 4.4 s, half the heartbeats expired in the broker), which measured the clients, not
the broker. A real agent handles 10 heartbeats a second, where that cost does not matter.

Each simulated agent connects (client id ``<prefix>-NNNN``), subscribes to the heartbeat
fan-out (QoS 0) and to ``spBv1.0/STATE/<host>`` (QoS 0 here: the retained online arrives
without a PUBACK to send), and stamps CLOCK_MONOTONIC when a read returns (every packet of
that read arrived together), then reads the envelope: the first ``verify`` agents of a
worker check it fully (:class:`agent.protocol.fleet.envelope.Opener`: Ed25519 signature,
host, recipient, replay; a refusal is counted by reason and not recorded), the others only
decode it (:func:`~agent.protocol.fleet.envelope.unpack`, for its seq): an Ed25519 check
costs ~150 µs, and 1000 agents x 10 Hz of them would be 1.5 cores of the two. All agents
present one shared device certificate (CN :data:`AGENT_CN`): they only read the fan-out,
which every device may read, and one TLS context is cheaper than a thousand.

The pipe to the parent, in order::

    worker -> parent   ("started",)     (imported: the connect time excludes Python's start)
    parent -> worker   "connect"
    worker -> parent   ("ready", t_all_subscribed, subscribed, [errors])
    parent -> worker   "stop"
    worker -> parent   ("done", [(seqs, times) per agent], state_seen, refused, disconnects,
                        reads_behind)

``reads_behind`` counts heartbeat reads after which the socket's kernel receive queue held
bytes (``FIONREAD``; mosquitto writes one TLS record per PUBLISH and each read returns one):
at 10 Hz nothing waits unless the worker fell behind (it did not get the CPU to read in
time), so a latency that comes with many is the simulated agents' own, not the broker's.

(a worker whose clients cannot all connect still answers "ready", with the errors).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import resource
import selectors
import socket
import ssl
import struct
import termios
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from agent.protocol.fleet.envelope import EnvelopeRefused, Opener, unpack
from sim.bench.mqttlite import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBLISH,
    SUBACK,
    MqttError,
    Packet,
    Reader,
    connect_packet,
    publish_parts,
    suback_codes,
    subscribe_packet,
)

log = logging.getLogger(__name__)

AGENT_CN = "fleet-bench-agent"
KEEPALIVE_S = 60
SUBSCRIBE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 20.0
READ_BUFFER = 16384  # one heartbeat PUBLISH is ~220 bytes; TLS records are <= 16 KiB


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker connects: ``count`` agents numbered from ``first`` to the broker on
    127.0.0.1:``port`` with the TLS files given; the twin ``host_id`` and its public keys."""

    port: int
    ca: str
    cert: str
    key: str
    host_id: str
    hb_topic: str
    state_topic: str
    first: int
    count: int
    verify: int
    twin_keys: tuple[bytes, ...]
    prefix: str = "fleet-bench"


@dataclass
class SimAgent:
    """One simulated agent's connection and what it received."""

    index: int
    sock: ssl.SSLSocket
    opener: Opener | None
    hb_topic: str
    reader: Reader = field(default_factory=Reader)
    seqs: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    refused: Counter[str] = field(default_factory=Counter)
    subscribed: bool = False
    state_seen: bool = False
    reads_behind: int = 0  # reads after which the kernel held more: we were behind
    disconnected: bool = False
    error: str = ""

    def readable(self, buf: memoryview) -> bool:
        """Read what the socket has (and what TLS still holds) through ``buf`` (the
        worker's one read buffer); False once the connection is closed."""
        while True:
            try:
                n = self.sock.recv_into(buf)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return True
            except OSError as exc:
                self.error = f"agent {self.index}: {exc}"
                return False
            t = time.monotonic()
            if not n:
                return False
            data = bytes(buf[:n])
            heard = len(self.seqs)
            try:
                one = self.reader.single_publish(data)
                if one is not None and one[0] == self.hb_topic:
                    self._heartbeat(one[1], t)  # the hot path: one heartbeat, one read
                else:
                    for packet in self.reader.feed(data):
                        self._packet(packet, t)
            except (MqttError, ValueError, IndexError) as exc:
                self.error = f"agent {self.index}: {exc}"
                return False
            if self.disconnected:
                return False
            if n < len(buf) and not self.sock.pending():
                if len(self.seqs) > heard and _kernel_queued(self.sock):
                    self.reads_behind += 1  # a heartbeat read with more already waiting
                return True

    def _packet(self, packet: Packet, t: float) -> None:
        if packet.kind == PUBLISH:
            topic, payload = publish_parts(packet)
            if topic == self.hb_topic:
                self._heartbeat(payload, t)
            else:
                with contextlib.suppress(ValueError):
                    state = json.loads(payload)
                    self.state_seen = isinstance(state, dict) and state.get("online") is True
        elif packet.kind == CONNACK and packet.body[1] >= 0x80:
            self.error = f"agent {self.index}: CONNACK reason code {packet.body[1]:#x}"
            self.disconnected = True
        elif packet.kind == SUBACK:
            self.subscribed = all(c < 0x80 for c in suback_codes(packet.body))
        elif packet.kind == DISCONNECT:
            self.disconnected = True

    def _heartbeat(self, payload: bytes, t: float) -> None:
        try:
            if self.opener is not None:
                seq = self.opener.open(payload, fanout=True).seq
            else:
                seq = unpack(payload)[2]["seq"]
        except EnvelopeRefused as exc:
            self.refused[exc.reason] += 1
            return
        self.seqs.append(seq)
        self.times.append(t)


def _kernel_queued(sock: socket.socket) -> int:
    """Bytes waiting in the socket's kernel receive queue (0 if that cannot be read)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Fleet:
    """A worker's agents and their selector loop."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=spec.ca)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(spec.cert, spec.key)
        self.sel = selectors.DefaultSelector()
        self.buf = memoryview(bytearray(READ_BUFFER))
        self.agents: list[SimAgent] = []
        self.errors: list[str] = []
        self._ping_at = time.monotonic() + KEEPALIVE_S / 2

    def _connect(self, index: int) -> SimAgent:
        raw = socket.create_connection(("127.0.0.1", self.spec.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock = self.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise
        sock.sendall(connect_packet(f"{self.spec.prefix}-{index:04d}", KEEPALIVE_S)
                     + subscribe_packet(1, [(self.spec.hb_topic, 0), (self.spec.state_topic, 0)]))
        sock.setblocking(False)
        opener = Opener(self.spec.host_id, AGENT_CN, self.spec.twin_keys) \
            if index - self.spec.first < self.spec.verify else None
        return SimAgent(index, sock, opener, self.spec.hb_topic)

    def connect_all(self) -> None:
        """Connect and subscribe every agent (CONNECT and SUBSCRIBE written; the acks are
        read by :meth:`serve`)."""
        for index in range(self.spec.first, self.spec.first + self.spec.count):
            try:
                agent = self._connect(index)
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(f"agent {index}: {exc}")
                continue
            self.sel.register(agent.sock, selectors.EVENT_READ, agent)
            self.agents.append(agent)
            self.serve(0.0)  # read what already came (acks), so no buffer fills meanwhile

    def _drop(self, agent: SimAgent) -> None:
        agent.disconnected = True
        if agent.error:
            self.errors.append(agent.error)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(agent.sock)
        with contextlib.suppress(OSError):
            agent.sock.close()

    def serve(self, timeout_s: float) -> None:
        """One round of the loop: read every readable client (waiting up to ``timeout_s``),
        and every ``KEEPALIVE_S / 2`` a PINGREQ on each connection."""
        for key, _ in self.sel.select(timeout_s):
            agent: SimAgent = key.data
            if not agent.readable(self.buf):
                self._drop(agent)
        now = time.monotonic()
        if now >= self._ping_at:
            self._ping_at = now + KEEPALIVE_S / 2
            for agent in self.agents:
                if not agent.disconnected:
                    with contextlib.suppress(OSError):
                        agent.sock.send(PINGREQ_PACKET)

    def all_subscribed(self) -> bool:
        return all(a.subscribed or a.disconnected for a in self.agents)

    def close(self) -> None:
        for agent in self.agents:
            if not agent.disconnected:
                with contextlib.suppress(OSError):
                    agent.sock.setblocking(True)
                    agent.sock.settimeout(1.0)
                    agent.sock.sendall(DISCONNECT_PACKET)
                self._drop(agent)
        self.sel.close()


def _wait(conn: Connection, fleet: Fleet | None, expect: str) -> None:
    """Serve the fleet until the parent sends ``expect`` (EOFError if the parent is gone)."""
    while True:
        if conn.poll(0.05 if fleet is None else 0.0):
            got = conn.recv()
            if got == expect:
                return
            raise RuntimeError(f"unexpected {got!r} from the benchmark, expected {expect!r}")
        if fleet is not None:
            fleet.serve(0.05)


def worker(spec: WorkerSpec, conn: Connection) -> None:
    """The worker process's body: the pipe protocol of the module docstring."""
    _raise_nofile()
    conn.send(("started",))
    _wait(conn, None, "connect")
    fleet = Fleet(spec)
    try:
        fleet.connect_all()
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        while not fleet.all_subscribed() and time.monotonic() < deadline:
            fleet.serve(0.05)
        t_ready = time.monotonic()
        missing = [a.index for a in fleet.agents if not a.subscribed]
        if missing:
            fleet.errors.append(f"{len(missing)} agents not subscribed (first {missing[0]})")
        conn.send(("ready", t_ready, sum(a.subscribed for a in fleet.agents), fleet.errors))
        _wait(conn, fleet, "stop")
        refused: Counter[str] = Counter()
        for a in fleet.agents:
            refused.update(a.refused)
        got = [(a.seqs.tobytes(), a.times.tobytes()) for a in fleet.agents]
        missing_agents = spec.count - len(fleet.agents)
        got += [(b"", b"")] * missing_agents  # an agent that never connected heard nothing
        conn.send(("done", got, sum(a.state_seen for a in fleet.agents), dict(refused),
                   sum(a.disconnected for a in fleet.agents),
                   sum(a.reads_behind for a in fleet.agents)))
    finally:
        fleet.close()
        conn.close()
