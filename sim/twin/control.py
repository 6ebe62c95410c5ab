"""Control channel of the simulated twin: a Unix socket, one JSON request per line.

Each request line is a JSON object with a ``"cmd"``; each gets exactly one JSON line back:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A bad request (not JSON, an
unknown command, a missing or wrong argument) gets an error reply; the connection stays
open and the twin goes on. The socket file is made 0600: file permissions are the access
control. Commands are listed in ``COMMANDS`` and in sim/twin/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.twin.server import SimTwin

if TYPE_CHECKING:  # the MQTT twin needs paho-mqtt (the fleet extra)
    from sim.twin.mqtt import MqttTwin

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024


def num(req: dict[str, Any], key: str) -> float:
    """``req[key]`` as a number; ValueError (an error reply) if it is not one."""
    value = req.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} must be a number")
    return float(value)


def _stop(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.stop_heartbeats()
    return {}


def _resume(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.resume()
    return {}


def _delay(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.set_delay(num(req, "ms"))
    return {}


def _jitter(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.set_jitter(num(req, "ms"))
    return {}


def _pause(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.pause(num(req, "s"))
    return {}


def _restart(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": twin.restart()}


def _replay(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    count = req.get("count", 3)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError("'count' must be an integer")
    return {"replayed": twin.replay(count)}


def _garbage(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    kind = req.get("kind")
    if not isinstance(kind, str):
        raise ValueError("'kind' must be a string")
    twin.garbage(kind)
    return {}


def _healthy(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    value = req.get("value", True)
    if not isinstance(value, bool):
        raise ValueError("'value' must be true or false")
    twin.set_healthy(value)
    return {}


def _unhealthy(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.set_healthy(False)
    return {}


def _bye(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    reason = req.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("'reason' must be a string")
    return {"epoch": twin.bye(reason or None)}


def _half_open(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    return {"connections": twin.half_open()}


def _stats(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    last = req.get("last", 100)
    if isinstance(last, bool) or not isinstance(last, int):
        raise ValueError("'last' must be an integer")
    return twin.stats(last)


def _ping(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": twin.epoch, "port": twin.port}


def _vanish(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    return {"connections": twin.vanish(num(req, "s"))}


def _ack(twin: SimTwin | MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    every = req.get("every", 1)
    on = req.get("on", True)
    if isinstance(every, bool) or not isinstance(every, int) or not isinstance(on, bool):
        raise ValueError("'every' must be an integer and 'on' true or false")
    twin.set_ack(every, on)
    return {}


def _recommend(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    output = req.get("output")
    rid = req.get("id")
    if not isinstance(output, str) or (rid is not None and not isinstance(rid, str)):
        raise ValueError("'output' (and 'id' if given) must be strings")
    return twin.recommend(output, num(req, "value"), num(req, "valid_s"), rid)


def _burst(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    count, output, heartbeat = req.get("count"), req.get("output"), req.get("heartbeat", False)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError("'count' must be an integer")
    if not isinstance(output, str) or not isinstance(heartbeat, bool):
        raise ValueError("'output' must be a string and 'heartbeat' true or false")
    valid_s = num(req, "valid_s") if "valid_s" in req else 5.0
    return twin.burst(count, output, num(req, "value"), valid_s, heartbeat=heartbeat)


def _script(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    items = req.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("'items' must be a list of objects")
    return {"scheduled": twin.script(items)}


def _model(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    twin.model(num(req, "setpoint"), float(req.get("kp", 5.0)),
               float(req.get("period_s", 0.5)))
    return {}


def _telemetry(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.telemetry(bool(req.get("seqs", False)), bool(req.get("events", False)),
                          bool(req.get("policy", False)))


def _push(twin: SimTwin, req: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "push", "path": BUNDLE_FILE}`` or ``{"cmd": "push", "hex": "..."}``."""
    return twin.push(bundle_bytes(req))


def bundle_bytes(req: dict[str, Any]) -> bytes:
    """The bundle a ``push`` request names: ``path`` (a file) or ``hex`` (its bytes)."""
    path, text = req.get("path"), req.get("hex")
    if isinstance(path, str) and path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    elif isinstance(text, str):
        data = bytes.fromhex(text)
    else:
        raise ValueError("'path' (a bundle file) or 'hex' (its bytes) is required")
    if not data:
        raise ValueError("an empty bundle cannot be pushed")
    return data


# the commands both twins (TLS and MQTT, sim.twin.mqtt_control) serve the same way
SHARED: dict[str, Callable[[SimTwin | MqttTwin, dict[str, Any]], dict[str, Any]]] = {
    "stats": _stats,
    "stop": _stop,
    "resume": _resume,
    "delay": _delay,
    "pause": _pause,
    "restart": _restart,
    "replay": _replay,
    "healthy": _healthy,
    "unhealthy": _unhealthy,
    "bye": _bye,
    "ack": _ack,
}

COMMANDS: dict[str, Callable[[SimTwin, dict[str, Any]], dict[str, Any]]] = {
    "ping": _ping,
    "stats": _stats,
    "stop": _stop,
    "resume": _resume,
    "delay": _delay,
    "jitter": _jitter,
    "pause": _pause,
    "restart": _restart,
    "replay": _replay,
    "garbage": _garbage,
    "healthy": _healthy,
    "unhealthy": _unhealthy,
    "bye": _bye,
    "half_open": _half_open,
    "vanish": _vanish,
    "ack": _ack,
    "recommend": _recommend,
    "burst": _burst,
    "script": _script,
    "model": _model,
    "telemetry": _telemetry,
    "push": _push,
}


def handle(twin: Any, line: bytes, commands: Mapping[str, Callable[[Any, dict[str, Any]],
                                                                 dict[str, Any]]] = COMMANDS
           ) -> dict[str, Any]:
    """The reply to one request line (never raises for a bad request); ``commands``: the
    table of the twin it controls (``COMMANDS`` for :class:`SimTwin`)."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    cmd = req.get("cmd")
    fn = commands.get(cmd) if isinstance(cmd, str) else None
    if fn is None:
        return {"ok": False, "error": f"unknown cmd {cmd!r}; one of {', '.join(commands)}"}
    try:
        reply = fn(twin, req)
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    log.info("sim twin control: %s", cmd)
    return {"ok": True, **reply}


class ControlServer:
    """Serves ``handle`` on a Unix socket at ``path`` (an existing socket file is replaced)
    with the command table ``commands`` (default: the TLS twin's)."""

    def __init__(self, twin: Any, path: Path,
                 commands: Mapping[str, Callable[[Any, dict[str, Any]], dict[str, Any]]]
                 = COMMANDS) -> None:
        self.twin = twin
        self.commands = commands
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.is_socket():
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # line over MAX_LINE
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(json.dumps(handle(self.twin, line, self.commands)).encode() + b"\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.info("sim twin control client gone: %s", exc)
        finally:
            writer.close()


async def request(path: Path, req: dict[str, Any]) -> dict[str, Any]:
    """Client helper: send one request, return the reply (for tests and benchmarks)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        reply: dict[str, Any] = json.loads(await reader.readline())
        return reply
    finally:
        writer.close()
