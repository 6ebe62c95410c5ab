"""A twin written from ``agent/protocol/twin/PROTOCOL.md`` alone (stdlib ssl + asyncio + msgpack).

Nothing of ``agent/protocol/twin/``, ``agent/io/twin/`` or ``sim/twin/`` is imported or was
read to write it: it exists to check that the protocol document is enough to keep an agent
alive (and that its silence drives the safe state).

    python tests/e2e/independent_twin.py --listen 127.0.0.1:0 --pki DIR [--rate 10]
                                     [--silence-after S] [--device-id ID]

* TLS server (TLS 1.2+), mutual authentication: ``DIR/twin.crt`` + ``twin.key`` as its
  certificate, client certificates required and verified against ``DIR/ca.crt`` (§1).
* On every connection it sends its ``hello`` (§3.1), then heartbeats at ``--rate`` Hz
  (shared ``epoch`` = wall-clock ms at start, ``seq`` from 1 across connections, §4).
* It decodes what the agent sends strictly (§2, §3.2, §3.3, and the agent → twin messages
  of §7, which a version 1 twin must accept, §3.4: it checks and then ignores them; it never
  acks telemetry, which §7.2 allows); a protocol error is reported and closes that
  connection. The agent's ``hello`` must carry its heartbeat timing
  (``heartbeat_timeout_ms`` >= 1, 1 <= ``heartbeat_late_ms`` <= the timeout); a heartbeat
  period not below ``heartbeat_late_ms`` is logged as a warning (§5: the agent would never
  trust this twin).
* ``--silence-after S``: S seconds after the agent first reports ``normal`` the twin stops
  sending heartbeats for good and keeps its connections open (and keeps reading).

stdout, one line each, flushed: first ``ready PORT``, then one JSON object per event, every
one with ``ev`` and ``t`` (``time.monotonic()`` of this process, CLOCK_MONOTONIC, comparable
with other processes on one Linux machine)::

    {"ev": "conn", "t", "conn", "peer_cn"}           TLS handshake done
    {"ev": "hello", "t", "conn", "device_id", "agent_version", "protocol",
     "heartbeat_timeout_ms", "heartbeat_late_ms"}
    {"ev": "status", "t", "conn", "state", "mode", "seq", "authority"}
    {"ev": "silent", "t", "last_heartbeat_t", "last_seq"}   heartbeats stopped
    {"ev": "error", "t", "conn", "error"}             protocol error; connection closed
    {"ev": "closed", "t", "conn"}                     connection ended

Logs go to stderr. SIGTERM / SIGINT stop it (exit 0); bad arguments: exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

log = logging.getLogger("independent_twin")

PROTOCOL = 1
MAX_FRAME = 65_536  # §2 default
TEXT_MAX = 128  # §3 "text"
UINT64_MAX = 2**64 - 1
STATES = {"starting", "normal", "degraded", "failsafe", "recovering"}  # §3.2 status.state
MODES = {"shadow", "active"}
AUTHORITIES = {"local", "returning", "remote"}  # §3.2 status.authority (§5.1)
BODY_MAX = 61_440  # §7.2 telemetry.body, §7.3 bundle
RECOMMEND_REASONS = {"ok", "stale_session", "unknown_output", "out_of_limits", "not_a_number",
                     "expired", "too_long"}  # §7.1
CONFIG_REASONS = {  # §7.3
    "accepted", "confirmed", "reverted", "too_large", "malformed", "unsigned", "unknown_key",
    "bad_signature", "wrong_device", "not_yet_valid", "expired", "replay", "rollback",
    "bad_toml", "invalid_config", "role_not_allowed", "approvers_required",
    "safety_change_while_active", "store_failed"}

# §3.2: message type -> field -> (type, required)
AGENT_TO_TWIN: dict[str, dict[str, tuple[str, bool]]] = {
    "hello": {"device_id": ("text", True), "agent_version": ("text", True),
              "protocol": ("uint64", True), "heartbeat_timeout_ms": ("uint64>=1", True),
              "heartbeat_late_ms": ("uint64>=1", True)},
    "status": {"state": ("text", True), "mode": ("text", True), "seq": ("uint64", True),
               "sent_ms": ("uint64", False), "authority": ("text", False)},
    # §7: a version 1 twin must accept these too (§3.4)
    "recommend_result": {"id": ("text64", True), "accepted": ("bool", True),
                         "reason": ("text", True), "detail": ("text", False)},
    "resume": {"after": ("uint64", True)},
    "telemetry": {"seq": ("uint64", True), "prev": ("uint64", True), "t_ms": ("uint64", True),
                  "historical": ("bool", True), "body": ("bin", True)},
    "config_result": {"version": ("uint64", True), "accepted": ("bool", True),
                      "reason": ("text", True), "detail": ("text", False)},
}


class ProtocolViolation(ValueError):
    """The agent sent something PROTOCOL.md does not allow; the connection is closed."""


def emit(ev: str, **fields: Any) -> None:
    """One JSON event line on stdout (the test's view of this twin)."""
    print(json.dumps({"ev": ev, "t": time.monotonic(), **fields}), flush=True)


# --- framing and msgpack (§2) -----------------------------------------------------------

def encode(msg: dict[str, Any]) -> bytes:
    """``N: uint32 big-endian`` + one msgpack map of N bytes."""
    body: bytes = msgpack.packb(msg, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolViolation(f"msgpack ext type {code} is not allowed")


def _check_subset(obj: Any) -> None:
    """Only nil/bool/int/float/str/bin/array/map (the Timestamp ext bypasses ext_hook)."""
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return
    if isinstance(obj, list):
        for item in obj:
            _check_subset(item)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_subset(k)
            _check_subset(v)
        return
    raise ProtocolViolation(f"msgpack type {type(obj).__name__} is not allowed")


def decode_body(body: bytes) -> dict[str, Any]:
    """One msgpack map, str keys, non-empty str ``t``; ProtocolViolation otherwise."""
    try:
        obj = msgpack.unpackb(
            body, raw=False, strict_map_key=False, ext_hook=_no_ext, use_list=True,
            max_str_len=MAX_FRAME, max_bin_len=MAX_FRAME, max_array_len=MAX_FRAME,
            max_map_len=MAX_FRAME, max_ext_len=0,
        )
    except ProtocolViolation:
        raise
    except Exception as exc:  # ExtraData, UnpackValueError, UnicodeDecodeError, ...
        raise ProtocolViolation(f"bad msgpack body: {exc!r}") from exc
    _check_subset(obj)
    if not isinstance(obj, dict):
        raise ProtocolViolation(f"top level is {type(obj).__name__}, not a map")
    if not all(isinstance(k, str) for k in obj):
        raise ProtocolViolation("non-str top-level key")
    t = obj.get("t")
    if not isinstance(t, str) or not t:
        raise ProtocolViolation("missing or empty 't'")
    return obj


def _check_value(name: str, kind: str, v: Any) -> None:
    if kind in ("uint64", "uint64>=1"):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= UINT64_MAX:
            raise ProtocolViolation(f"{name}: not a uint64: {v!r}")
        if kind == "uint64>=1" and v < 1:
            raise ProtocolViolation(f"{name}: must be >= 1, got {v}")
    elif kind in ("text", "text64"):
        most = 64 if kind == "text64" else TEXT_MAX
        if not isinstance(v, str) or not 1 <= len(v) <= most or not v.isprintable():
            raise ProtocolViolation(f"{name}: not text (1..{most} printable): {v!r}")
    elif kind == "bool":
        if not isinstance(v, bool):
            raise ProtocolViolation(f"{name}: not a bool: {v!r}")
    elif kind == "bin":
        if not isinstance(v, bytes) or not 1 <= len(v) <= BODY_MAX:
            raise ProtocolViolation(f"{name}: not bin of 1..{BODY_MAX} bytes")
    else:  # pragma: no cover - a bug in AGENT_TO_TWIN
        raise AssertionError(kind)


def validate(msg: dict[str, Any]) -> None:
    """Strict §3 check of one agent message; ProtocolViolation on anything off."""
    t = msg["t"]
    schema = AGENT_TO_TWIN.get(t)
    if schema is None:
        raise ProtocolViolation(f"unknown message type {t!r}")
    unknown = set(msg) - {"t"} - set(schema)
    if unknown:
        raise ProtocolViolation(f"{t}: unknown fields {sorted(unknown)}")
    for name, (kind, required) in schema.items():
        if name not in msg:
            if required:
                raise ProtocolViolation(f"{t}: missing field {name!r}")
            continue
        _check_value(f"{t}.{name}", kind, msg[name])
    if t == "hello" and msg["heartbeat_late_ms"] > msg["heartbeat_timeout_ms"]:
        raise ProtocolViolation(f"hello.heartbeat_late_ms {msg['heartbeat_late_ms']} above "
                                f"heartbeat_timeout_ms {msg['heartbeat_timeout_ms']}")
    if t == "status" and msg["state"] not in STATES:
        raise ProtocolViolation(f"status.state {msg['state']!r} not one of {sorted(STATES)}")
    if t == "status" and msg["mode"] not in MODES:
        raise ProtocolViolation(f"status.mode {msg['mode']!r} not one of {sorted(MODES)}")
    if t == "status" and msg.get("authority", "local") not in AUTHORITIES:
        raise ProtocolViolation(f"status.authority {msg['authority']!r} not one of "
                                f"{sorted(AUTHORITIES)}")
    if t == "recommend_result" and msg["reason"] not in RECOMMEND_REASONS:
        raise ProtocolViolation(f"recommend_result.reason {msg['reason']!r} unknown")
    if t == "config_result" and msg["reason"] not in CONFIG_REASONS:
        raise ProtocolViolation(f"config_result.reason {msg['reason']!r} unknown")


# --- the twin ---------------------------------------------------------------------------

@dataclass
class Twin:
    rate_hz: float
    silence_after: float | None
    device_id: str | None
    epoch: int = field(default_factory=lambda: int(time.time() * 1000))
    seq: int = 0
    silent: bool = False
    last_hb_t: float | None = None
    writers: dict[int, asyncio.StreamWriter] = field(default_factory=dict)
    n_conn: int = 0
    silence_task: asyncio.Task[None] | None = None

    async def heartbeats(self) -> None:
        """Send a heartbeat to every open connection at a steady rate until silent (§5)."""
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while not self.silent:
            if self.writers:
                self.seq += 1
                frame = encode({"t": "heartbeat", "epoch": self.epoch, "seq": self.seq,
                                "healthy": True, "sent_ms": int(time.time() * 1000)})
                for w in list(self.writers.values()):
                    w.write(frame)
                self.last_hb_t = time.monotonic()
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    async def go_silent(self, after: float) -> None:
        await asyncio.sleep(after)
        self.silent = True
        emit("silent", last_heartbeat_t=self.last_hb_t, last_seq=self.seq)
        log.info("silent from now on (last heartbeat seq %d)", self.seq)

    def on_message(self, conn: int, msg: dict[str, Any], seen_hello: bool) -> None:
        if msg["t"] == "hello":
            if seen_hello:
                raise ProtocolViolation("second hello")
            if msg["protocol"] != PROTOCOL:
                raise ProtocolViolation(f"protocol {msg['protocol']} != {PROTOCOL}")
            emit("hello", conn=conn, device_id=msg["device_id"],
                 agent_version=msg["agent_version"], protocol=msg["protocol"],
                 heartbeat_timeout_ms=msg["heartbeat_timeout_ms"],
                 heartbeat_late_ms=msg["heartbeat_late_ms"])
            if 1000.0 / self.rate_hz >= msg["heartbeat_late_ms"]:
                log.warning("heartbeat period %.0f ms is not below the agent's "
                            "heartbeat_late_ms %d: the agent will never trust this twin",
                            1000.0 / self.rate_hz, msg["heartbeat_late_ms"])
            return
        if not seen_hello:
            raise ProtocolViolation(f"{msg['t']!r} before hello")
        if msg["t"] != "status":
            return  # §7 messages: checked by validate(), not used by this twin
        emit("status", conn=conn, state=msg["state"], mode=msg["mode"], seq=msg["seq"],
             authority=msg.get("authority"))
        if (msg["state"] == "normal" and self.silence_after is not None
                and self.silence_task is None):
            self.silence_task = asyncio.create_task(self.go_silent(self.silence_after))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.n_conn += 1
        conn = self.n_conn
        cert = writer.get_extra_info("peercert") or {}
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"),
                  None)
        emit("conn", conn=conn, peer_cn=cn)
        writer.write(encode({"t": "hello", "protocol": PROTOCOL,
                             "twin_id": "independent-twin", "epoch": self.epoch}))
        self.writers[conn] = writer
        seen_hello = False
        try:
            while True:
                header = await reader.readexactly(4)
                (n,) = struct.unpack(">I", header)
                if not 1 <= n <= MAX_FRAME:
                    raise ProtocolViolation(f"frame length {n} outside 1..{MAX_FRAME}")
                msg = decode_body(await reader.readexactly(n))
                validate(msg)
                if msg["t"] == "hello" and self.device_id and msg["device_id"] != self.device_id:
                    raise ProtocolViolation(f"device_id {msg['device_id']!r} unexpected")
                if msg["t"] == "hello" and cn is not None and msg["device_id"] != cn:
                    raise ProtocolViolation(f"device_id {msg['device_id']!r} != cert CN {cn!r}")
                self.on_message(conn, msg, seen_hello)
                seen_hello = True
        except ProtocolViolation as exc:
            log.warning("connection %d: protocol error: %s", conn, exc)
            emit("error", conn=conn, error=str(exc))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            log.info("connection %d ended: %r", conn, exc)
        finally:
            self.writers.pop(conn, None)
            writer.close()
            emit("closed", conn=conn)


def server_context(pki: Path) -> ssl.SSLContext:
    """TLS 1.2+ server, client certificate required and verified against the pinned CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki / "twin.crt", pki / "twin.key")
    ctx.load_verify_locations(cafile=pki / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def main_async(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    twin = Twin(rate_hz=args.rate, silence_after=args.silence_after, device_id=args.device_id)
    server = await asyncio.start_server(twin.serve, host, int(port), ssl=server_context(args.pki))
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hb = asyncio.create_task(twin.heartbeats())
    await stop.wait()
    hb.cancel()
    server.close()
    for w in list(twin.writers.values()):
        w.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: a free one)")
    p.add_argument("--pki", type=Path, required=True, help="directory of ca.crt, twin.crt/.key")
    p.add_argument("--rate", type=float, default=10.0, help="heartbeats per second")
    p.add_argument("--silence-after", type=float, default=None,
                   help="stop heartbeats S seconds after the agent first reports normal")
    p.add_argument("--device-id", default=None, help="refuse agents saying another id")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s twin %(levelname)s %(message)s")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
