"""The simulated PLC's control channel: a Unix socket, one JSON request per line, one JSON
reply per line. The full request list is in ``sim/plc/README.md``.

Every reply has ``"ok"``; a bad request gets ``{"ok": false, "error": "..."}``, is counted in
``SimPlc.errors`` and logged, and the connection goes on. ``ControlClient`` is the small
synchronous client used by tests, benchmarks and the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from sim.plc.faults import FaultKind, PlcFaultKind
from sim.plc.plc import SimPlc

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024


class ControlError(RuntimeError):
    """The simulated PLC refused a control request (``ok`` false); the message says why."""


def _num(req: dict[str, Any], key: str, default: float | None = None) -> float | None:
    v = req.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key!r} must be a number, got {v!r}")
    return float(v)


def dispatch(plc: SimPlc, req: Any) -> dict[str, Any]:
    """Run one request against ``plc``; raises ValueError/KeyError for a bad request."""
    if not isinstance(req, dict):
        raise ValueError("a request is a JSON object")
    cmd = req.get("cmd")
    if cmd == "ping":
        return {"ok": True}
    if cmd == "state":
        return {"ok": True, "state": plc.state()}
    if cmd == "writes":
        since = int(_num(req, "since", 0) or 0)
        recs = plc.writes(since)
        return {"ok": True, "writes": [r.to_json() for r in recs], "next": since + len(recs)}
    if cmd == "clear":
        signal = req.get("signal")
        if signal is not None:
            plc.profile.signal(str(signal))
        plc.clear(signal)
        return {"ok": True}
    if cmd == "set_output":
        value = _num(req, "value")
        if value is None:
            raise ValueError("set_output needs 'value'")
        rec = plc.set_output(str(req.get("name")), value)
        return {"ok": True, "write": rec.to_json()}
    if cmd == "set_setpoint":
        value = _num(req, "value")
        if value is None:
            raise ValueError("set_setpoint needs 'value'")
        return {"ok": True, "setpoint": plc.set_setpoint(value)}
    if cmd == "switches":
        since = int(_num(req, "since", 0) or 0)
        switches = plc.program_switches(since)
        return {"ok": True, "switches": [s.to_json() for s in switches],
                "next": since + len(switches)}  # fmt: skip
    if cmd == "trace":
        trace = plc.program_trace(_num(req, "since_t", 0.0) or 0.0)
        return {"ok": True, "trace": [e.to_json() for e in trace]}
    if cmd == "fault":
        kind = str(req.get("kind"))
        if kind == PlcFaultKind.SLOW.value:
            plc.set_slow(_num(req, "delay_ms", 500.0) or 0.0)
            return {"ok": True}
        if kind == PlcFaultKind.STOP.value:
            plc.set_stopped(True)
            return {"ok": True}
        if kind == PlcFaultKind.MALFORMED.value:
            plc.set_malformed(True)
            return {"ok": True}
        if kind == PlcFaultKind.DROP.value:
            return {"ok": True, "dropped": plc.drop_connections()}
        signal = req.get("signal")
        if signal is None:
            raise ValueError(f"fault kind {kind!r} needs 'signal'")
        fault = plc.set_signal_fault(str(signal), FaultKind(kind), _num(req, "value"))
        return {"ok": True, "value": fault.value}
    raise ValueError(f"unknown cmd {cmd!r}")


async def _serve_client(
    plc: SimPlc, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            try:
                reply = dispatch(plc, json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                plc.errors += 1
                log.warning("bad control request %r: %s", line[:200], exc)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
        plc.errors += 1
        log.warning("control connection closed: %s", exc)
    except ValueError as exc:  # readline: line longer than the limit
        plc.errors += 1
        log.warning("control request too long: %s", exc)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve_control(plc: SimPlc, path: str | Path) -> asyncio.Server:
    """Listen on Unix socket ``path`` (replacing a stale socket file), mode 0600."""
    p = str(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)  # a stale socket of an earlier run

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_client(plc, reader, writer)

    server = await asyncio.start_unix_server(handle, path=p, limit=MAX_LINE)
    os.chmod(p, 0o600)
    return server


class ControlClient:
    """Synchronous client: one short connection per request. Raises ControlError when the
    PLC refuses, OSError when it cannot be reached."""

    def __init__(self, path: str | Path, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout_s)
            s.connect(self.path)
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("control channel closed before the reply")
                buf += chunk
        reply: dict[str, Any] = json.loads(buf)
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        return reply

    def ping(self) -> None:
        self.request({"cmd": "ping"})

    def fault(
        self,
        kind: str,
        signal: str | None = None,
        value: float | None = None,
        delay_ms: float | None = None,
    ) -> dict[str, Any]:
        """Signal fault (``signal`` + kind) or PLC-wide fault (slow/stop/malformed/drop)."""
        req: dict[str, Any] = {"cmd": "fault", "kind": kind}
        if signal is not None:
            req["signal"] = signal
        if value is not None:
            req["value"] = value
        if delay_ms is not None:
            req["delay_ms"] = delay_ms
        return self.request(req)

    def clear(self, signal: str | None = None) -> None:
        req: dict[str, Any] = {"cmd": "clear"}
        if signal is not None:
            req["signal"] = signal
        self.request(req)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.request({"cmd": "state"})["state"]
        return state

    def writes(self, since: int = 0) -> list[dict[str, Any]]:
        writes: list[dict[str, Any]] = self.request({"cmd": "writes", "since": since})["writes"]
        return writes

    def set_output(self, name: str, value: float) -> dict[str, Any]:
        return self.request({"cmd": "set_output", "name": name, "value": value})

    def set_setpoint(self, value: float) -> float:
        """The PLC program's new local setpoint (the operator HMI); ControlError without a
        program."""
        return float(self.request({"cmd": "set_setpoint", "value": value})["setpoint"])

    def switches(self, since: int = 0) -> list[dict[str, Any]]:
        """The PLC program's mode switches with ``seq >= since`` (``ModeSwitch`` records)."""
        out: list[dict[str, Any]] = self.request({"cmd": "switches", "since": since})["switches"]
        return out

    def trace(self, since_t: float = 0.0) -> list[dict[str, Any]]:
        """What the plant got per program task cycle from ``since_t`` (``TraceEntry``)."""
        out: list[dict[str, Any]] = self.request({"cmd": "trace", "since_t": since_t})["trace"]
        return out
