"""The agent configuration (``--config``): who the agent is, where its twin is, its mode.

The hardware profile says what the plant is; this file says how this agent runs beside it.
It is TOML, strict like a profile (unknown keys are errors, every problem names the file,
the key path and the reason)::

    device_id = "tank-01"          # this agent's identity (the CN of its certificate)
    mode = "shadow"                # shadow (default) | active

    [twin]                         # optional: without it the twin is never seen (safe state)
    host = "twin.example.net"
    port = 17443
    server_name = "twin.example.net"   # checked against the twin's certificate
    ca = "pki/ca.pem"              # paths are relative to this file
    cert = "pki/device.pem"
    key = "pki/device.key"
    max_frame = 65536              # bytes; larger frames end the connection
    connect_timeout_s = 3.0
    backoff_min_s = 0.2            # reconnect delay doubles from here, with jitter ...
    backoff_max_s = 5.0            # ... up to here
    idle_timeout_s = 2.0           # no frame at all this long: the connection is dead

Without ``--config`` the agent runs with ``AgentConfig.default()``: shadow mode, no twin,
which keeps the plant in its safe state (the twin is never ALIVE).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, Problem
from agent.profile.fields import Fields, Problems, is_identifier
from agent.safety import Mode

__all__ = ["AgentConfig", "TwinConfig", "load_config", "parse_config"]

_TOP_KEYS = ("device_id", "mode", "twin")
_TWIN_KEYS = (
    "host", "port", "server_name", "ca", "cert", "key", "max_frame", "connect_timeout_s",
    "backoff_min_s", "backoff_max_s", "idle_timeout_s",
)


@dataclass(frozen=True)
class TwinConfig:
    host: str
    port: int
    server_name: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    max_frame: int
    connect_timeout_s: float
    backoff_min_s: float
    backoff_max_s: float
    idle_timeout_s: float


@dataclass(frozen=True)
class AgentConfig:
    source: str
    device_id: str
    mode: Mode
    twin: TwinConfig | None

    @classmethod
    def default(cls) -> AgentConfig:
        """Shadow mode, no twin: the agent holds the plant in its safe state."""
        return cls(source="(defaults)", device_id="twinguard", mode=Mode.SHADOW, twin=None)


def parse_config(data: Mapping[str, Any], source: str, base: Path) -> AgentConfig:
    """Parse a loaded TOML document; relative paths resolve against ``base``.

    Raises ``ConfigError`` listing every problem found.
    """
    out = Problems(source)
    top = Fields(out, "", data, _TOP_KEYS)
    device_id = top.text("device_id", "twinguard")
    if top.ok("device_id") and not is_identifier(device_id.replace("-", "_")):
        top.fail("device_id", "letters, digits, '-' and '_' only (at most 64)")
    mode = top.enum("mode", Mode, Mode.SHADOW)
    twin = _twin(out, data["twin"], base) if "twin" in data else None
    if out.items:
        raise ConfigError(out.items)
    return AgentConfig(source=source, device_id=device_id, mode=mode, twin=twin)


def _twin(out: Problems, data: object, base: Path) -> TwinConfig:
    f = Fields(out, "twin", data, _TWIN_KEYS)

    def path(key: str) -> Path:
        p = Path(f.text(key))
        return p if p.is_absolute() else base / p

    backoff_min = f.number("backoff_min_s", 0.2, gt=0)
    backoff_max = f.number("backoff_max_s", 5.0, gt=0)
    if f.ok("backoff_min_s", "backoff_max_s") and backoff_max < backoff_min:
        f.fail("backoff_max_s", f"must be at least backoff_min_s ({backoff_min:g})")
    host = f.text("host")
    return TwinConfig(
        host=host,
        port=f.integer("port", 1, 65535),
        server_name=f.text("server_name", host or "localhost"),
        ca_file=path("ca"),
        cert_file=path("cert"),
        key_file=path("key"),
        max_frame=f.integer("max_frame", 1024, 16 * 1024 * 1024, 65536),
        connect_timeout_s=f.number("connect_timeout_s", 3.0, gt=0),
        backoff_min_s=backoff_min,
        backoff_max_s=backoff_max,
        idle_timeout_s=f.number("idle_timeout_s", 2.0, gt=0),
    )


def load_config(path: str | Path | None) -> AgentConfig:
    """Read and parse the configuration file; None gives ``AgentConfig.default()``.

    Raises ``ConfigError`` for a missing or unreadable file, a TOML syntax error or any
    schema problem.
    """
    if path is None:
        return AgentConfig.default()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([Problem(str(p), "(file)", exc.strerror or str(exc))]) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([Problem(str(p), "(syntax)", str(exc))]) from exc
    return parse_config(data, str(p), p.parent.resolve())
