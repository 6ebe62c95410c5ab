"""The client side of the status socket: what ``twinguard status`` and ``twinguard ack`` send.

The wire (one JSON line each way, one request per connection) is drawn in
:mod:`agent.io.status_socket`, whose server runs inside the agent; this module is what a
process outside it uses: plain blocking sockets, nothing else (so the commands that ask the
agent stay light).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.model.errors import AgentNotRunning, ProtocolError
from agent.model.status import StatusSnapshot, snapshot_from_dict

SOCKET_NAME = "twinguard.sock"
CLIENT_TIMEOUT_S = 5.0
DRILL_TIMEOUT_S = 60.0  # a rehearsal runs in slices on the agent's loop
MAX_REPLY_BYTES = 4 << 20


def socket_path(state_dir: Path) -> Path:
    """Where the agent with state directory ``state_dir`` listens."""
    return state_dir / SOCKET_NAME


def request(path: Path, payload: Mapping[str, Any],
            timeout_s: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the agent's reply object.

    Raises :class:`AgentNotRunning`, ``PermissionError`` (no access to the socket or its
    directory), ``TimeoutError``, or ``ProtocolError`` (the agent answered with an error,
    or with something that is not one JSON object).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            why = "no socket" if isinstance(exc, FileNotFoundError) else "nothing listens"
            raise AgentNotRunning(f"the agent is not running ({why} at {path})") from exc
        # the agent may answer without reading (busy): its reply is waiting below
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps(dict(payload)).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes")
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ProtocolError(f"reply is not JSON: {exc}") from exc
    if not isinstance(reply, dict):
        raise ProtocolError("reply is not a JSON object")
    if "error" in reply:
        raise ProtocolError(f"the agent says: {reply['error']}")
    return reply


def fetch_status(path: Path) -> tuple[dict[str, Any], StatusSnapshot]:
    """The raw reply and the parsed snapshot; raises as :func:`request`."""
    raw = request(path, {"cmd": "status"})
    return raw, snapshot_from_dict(raw)


def request_drill(path: Path, scenario: str, target: str | None = None) -> dict[str, Any]:
    """The report of a fault drill the agent rehearsed (``DrillReport.to_dict()``); raises
    as :func:`request` (``ProtocolError`` with the agent's reason for a refused drill). The
    agent records the drill with this process's pid and uid."""
    return request(path, {"cmd": "drill", "scenario": scenario, "target": target},
                   DRILL_TIMEOUT_S)


def send_ack(path: Path) -> tuple[bool, str]:
    """``(accepted, reason)``; raises as :func:`request`. The agent records the ack as from
    the console, with this process's pid and uid (the socket's peer credentials)."""
    reply = request(path, {"cmd": "ack"})
    accepted, reason = reply.get("accepted"), reply.get("reason")
    if not isinstance(accepted, bool) or not isinstance(reason, str):
        raise ProtocolError("ack reply needs 'accepted' (bool) and 'reason' (str)")
    return accepted, reason
