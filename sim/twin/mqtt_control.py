"""The MQTT twin's control commands (:class:`sim.twin.mqtt.MqttTwin`): the TLS twin's
protocol (:mod:`sim.twin.control`, one JSON object per line on a Unix socket) with the
commands that make sense through a broker, the shared ones reused as they are. Commands
aimed at agents take an optional ``"device"`` (default: every device online, or for
``telemetry`` the first one seen). Listed in ``MQTT_COMMANDS`` and sim/twin/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.twin import control
from sim.twin.mqtt import MqttTwin


def _device(req: dict[str, Any]) -> str | None:
    device = req.get("device")
    if device is not None and not isinstance(device, str):
        raise ValueError("'device' must be a string")
    return device


def _telemetry(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.telemetry(bool(req.get("seqs", False)), bool(req.get("events", False)),
                          bool(req.get("policy", False)), _device(req))


def _recommend(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    output, rid = req.get("output"), req.get("id")
    if not isinstance(output, str) or (rid is not None and not isinstance(rid, str)):
        raise ValueError("'output' (and 'id' if given) must be strings")
    return twin.recommend(output, control.num(req, "value"), control.num(req, "valid_s"), rid,
                          _device(req))


def _push(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.push(control.bundle_bytes(req), _device(req))


def _rebirth(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.rebirth(_device(req))


def _unsigned(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    kind = req.get("kind", "forged")
    if not isinstance(kind, str):
        raise ValueError("'kind' must be a string")
    twin.unsigned(kind)
    return {}


def _forge_ack(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    upto = req.get("upto")
    if upto is not None and (isinstance(upto, bool) or not isinstance(upto, int) or upto < 0):
        raise ValueError("'upto' must be an integer >= 0")
    return twin.forge_ack(upto, _device(req))


def _state_offline(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.state_offline()


def _forge_state_online(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return twin.forge_state_online()


def _ping(twin: MqttTwin, req: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": twin.epoch, "port": twin.port, "public_key": twin.public_key}


_SHARED = ("stats", "stop", "resume", "delay", "pause", "restart", "replay", "healthy",
           "unhealthy", "bye", "ack")

MQTT_COMMANDS: dict[str, Callable[[MqttTwin, dict[str, Any]], dict[str, Any]]] = {
    **{name: control.SHARED[name] for name in _SHARED},
    "ping": _ping,
    "telemetry": _telemetry,
    "recommend": _recommend,
    "push": _push,
    "rebirth": _rebirth,
    "unsigned": _unsigned,
    "forge_ack": _forge_ack,
    "state_offline": _state_offline,
    "forge_state_online": _forge_state_online,
}
