"""The floor program: the agent's I/O pattern and nothing else (measured by ``sim.bench.floor``).

    python -m sim.bench.floorprog PLAN            (PLAN: a file holding FloorPlan.to_json())

One asyncio loop with two tasks; no threads, no logging, no retries, no bookkeeping:

* **ticks**, every ``1 / rate_hz`` s on an absolute schedule (a tick that ends after the
  next was due skips ahead, no burst of catch-up ticks, as the agent's loop does): for each
  read of the plan one Modbus TCP request (``agent.protocol.modbus``: ``pdu`` builds it,
  ``adu.tcp_frame`` frames it, ``adu.scan_tcp`` checks the reply against it), its reply
  awaited; then one fc 16 write of the PLC watchdog's heartbeat register (1, 2, 3 ... as
  the agent writes it), its echo awaited. Each reply is waited for at most ``timeout_s``.
* **twin**: one TLS connection to the twin with the agent's own client context and hello
  (``agent.io.twin.settings``), then every frame read is decoded (4-byte header + msgpack,
  ``FrameDecoder``) and counted, nothing checked beyond that and nothing sent.

Prints ``ready`` on stdout once the twin's hello was read and the first tick completed; on
SIGTERM prints one JSON line ``{"ticks", "overruns", "frames", "heartbeats"}`` and exits 0.
Anything else ends it with one line on stderr and exit 1: a reply that does not answer its
request, an exception reply, a reply later than ``timeout_s``, a peer that refuses the
connection or closes it, a malformed twin frame, a plan that is not one.

It imports only what that needs (asyncio, ssl, msgpack and the agent's codecs, not the
agent's Modbus client, pymodbus or the sims): the process's RSS is part of the floor.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.io.twin.settings import TwinLinkSettings, make_client_context
from agent.model.errors import ProtocolError
from agent.protocol.modbus import adu, pdu
from agent.protocol.twin.frames import FrameDecoder, encode
from agent.protocol.twin.schema import to_wire

READY_TIMEOUT_S = 10.0
READ_CHUNK = 65536


class FloorFailed(RuntimeError):
    """The floor cannot go on: a peer misbehaved or went away (the message says which)."""


@dataclass(frozen=True)
class FloorPlan:
    """What the floor talks to and what it sends.

    ``reads``: ``(unit, fc, address, count)`` per request each tick; ``heartbeat``:
    ``(unit, address)`` of the PLC watchdog's heartbeat register; the twin fields are the
    agent's ``[twin]`` settings and the heartbeat timing its hello announces.
    """

    rate_hz: float
    plc_host: str
    plc_port: int
    timeout_s: float
    reads: tuple[tuple[int, int, int, int], ...]
    heartbeat: tuple[int, int]
    twin_host: str
    twin_port: int
    server_name: str
    ca_file: str
    cert_file: str
    key_file: str
    device_id: str
    heartbeat_timeout_s: float
    heartbeat_late_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FloorPlan:
        """The plan in ``text``; ValueError (naming what is wrong) if it is not one."""
        try:
            raw = json.loads(text)
            plan = cls(**{**raw, "reads": tuple(tuple(r) for r in raw["reads"]),
                          "heartbeat": tuple(raw["heartbeat"])})
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a floor plan: {exc}") from exc
        if not plan.rate_hz > 0 or not plan.timeout_s > 0 or not plan.reads:
            raise ValueError("a floor plan needs rate_hz > 0, timeout_s > 0 and one read")
        return plan

    def twin_settings(self) -> TwinLinkSettings:
        return TwinLinkSettings(
            self.twin_host, self.twin_port, Path(self.ca_file), Path(self.cert_file),
            Path(self.key_file), self.server_name, self.device_id,
            heartbeat_timeout_s=self.heartbeat_timeout_s, heartbeat_late_s=self.heartbeat_late_s)


@dataclass
class Counts:
    """What the floor did: complete ticks, overruns, twin frames and heartbeats read."""

    ticks: int = 0
    overruns: int = 0
    frames: int = 0
    heartbeats: int = 0


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class PlcPipe(asyncio.Protocol):
    """One TCP connection to the PLC: bytes in ``buf``, one request in flight at a time."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.buf = bytearray()
        self.lost: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._tid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._waiter is not None:
            _wake(self._waiter)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = str(exc) if exc else "the PLC closed the connection"
        if self._waiter is not None:
            _wake(self._waiter)

    async def exchange(self, req: pdu.Request) -> pdu.Reply:
        """Send ``req``, return its checked reply; FloorFailed for anything else."""
        assert self._transport is not None
        self._tid = self._tid % adu.MAX_TID + 1
        self._transport.write(adu.tcp_frame(req, self._tid))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                while isinstance(got := adu.scan_tcp(self.buf, req, self._tid), adu.NeedMore):
                    if self.lost is not None:
                        raise FloorFailed(f"PLC connection lost: {self.lost}")
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
        except TimeoutError:
            raise FloorFailed(f"no reply to {req.describe()} within {self.timeout_s} s") \
                from None
        if not isinstance(got, adu.Answer):
            raise FloorFailed(f"bad reply to {req.describe()}: {got}")
        del self.buf[: got.used]
        if isinstance(got.reply, pdu.ExceptionReply):
            raise FloorFailed(f"exception {got.reply.code} to {req.describe()}")
        return got.reply


async def tick(plc: PlcPipe, plan: FloorPlan, counts: Counts,
               first: asyncio.Future[None]) -> None:
    """The Modbus half, until cancelled (see the module docstring)."""
    loop = asyncio.get_running_loop()
    reads = [pdu.read(fc, unit, address, count) for unit, fc, address, count in plan.reads]
    unit, address = plan.heartbeat
    period = 1.0 / plan.rate_hz
    value = 0
    next_t = loop.time()
    while True:
        for req in reads:
            await plc.exchange(req)
        value = value % 0xFFFF + 1
        await plc.exchange(pdu.write_registers(unit, address, (value,)))
        counts.ticks += 1
        _wake(first)
        next_t += period
        end = loop.time()
        if end > next_t:
            counts.overruns += 1
            next_t = end
        await asyncio.sleep(next_t - end)


async def listen(reader: asyncio.StreamReader, counts: Counts,
                 hello: asyncio.Future[None]) -> None:
    """The twin half: read and decode every frame, until cancelled or the twin closes."""
    decoder = FrameDecoder()
    while data := await reader.read(READ_CHUNK):
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            raise FloorFailed(f"malformed twin frame: {exc}") from None
        for frame in frames:
            counts.frames += 1
            if frame["t"] == "heartbeat":
                counts.heartbeats += 1
            elif frame["t"] == "hello":
                _wake(hello)
    raise FloorFailed("the twin closed the connection")


async def run(plan: FloorPlan) -> Counts:
    """Connect, say ``ready``, run both halves until SIGTERM; the counts then."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, _wake, stop)
    settings = plan.twin_settings()
    where = f"the twin at {plan.twin_host}:{plan.twin_port}"
    try:
        reader, writer = await asyncio.open_connection(
            plan.twin_host, plan.twin_port, ssl=make_client_context(settings),
            server_hostname=plan.server_name, ssl_handshake_timeout=settings.connect_timeout_s)
        writer.write(encode(to_wire(settings.hello())))
        where = f"the PLC at {plan.plc_host}:{plan.plc_port}"
        _, plc = await loop.create_connection(lambda: PlcPipe(plan.timeout_s), plan.plc_host,
                                              plan.plc_port)
    except OSError as exc:  # ssl.SSLError and TimeoutError are OSErrors
        raise FloorFailed(f"cannot connect to {where}: {exc}") from None
    counts = Counts()
    hello: asyncio.Future[None] = loop.create_future()
    first: asyncio.Future[None] = loop.create_future()
    tasks: set[asyncio.Future[Any]] = {loop.create_task(listen(reader, counts, hello)),
                                       loop.create_task(tick(plc, plan, counts, first))}
    try:
        up: asyncio.Future[Any] = asyncio.gather(hello, first)
        done, _ = await asyncio.wait({up, *tasks}, timeout=READY_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if up not in done:
            for task in done:
                task.result()  # raises what ended it
            raise FloorFailed(f"no twin hello and first tick within {READY_TIMEOUT_S} s")
        print("ready", flush=True)
        done, _ = await asyncio.wait({stop, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        return counts
    finally:
        for task in tasks:
            task.cancel()
        writer.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sim.bench.floorprog PLAN", file=sys.stderr)
        return 2
    try:
        counts = asyncio.run(run(FloorPlan.from_json(Path(argv[0]).read_text())))
    except (FloorFailed, ValueError, OSError) as exc:
        print(f"floor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(counts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
