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
    ca = "pki/ca.crt"              # paths are relative to this file; the names are
    cert = "pki/device.crt"        # those `twinguard certs init pki` writes (PEM files)
    key = "pki/device.key"
    crl = "pki/crl.pem"            # optional (`twinguard certs revoke pki CERT` writes it):
                                   # the twin's certificate must not be revoked
    max_frame = 65536              # bytes; larger frames end the connection
    connect_timeout_s = 3.0
    backoff_min_s = 0.2            # reconnect delay doubles from here, with jitter ...
    backoff_max_s = 5.0            # ... up to here
    idle_timeout_s = 2.0           # no frame at all this long: the connection is dead
    backups = ["twin-b.example.net:17443"]  # optional: walked in order after host:port
                                   # on a loss (or {host, port, server_name} tables)
    transport = "tls"              # tls (default) | mqtt: the twin through a broker,
                                   # [fleet] says where (host/port/backups are not used)

    [fleet]                        # only with [twin] transport = "mqtt" (FLEET.md §7)
    servers = ["mqtts://broker-a.example.net:8883"]  # walked in order, one at a time
    group = "plant"                # the Sparkplug group id
    host_id = "twin"               # the twin's Primary Host id (its STATE gates NBIRTH)
    twin_keys = ["base64 of a raw 32-byte Ed25519 public key"]  # role: safety; who
                                   # may sign heartbeats and commands (makes the twin ALIVE)
    keepalive_s = 10               # MQTT keepalive (broker housekeeping only)
    echo_timeout_s = 3.0           # no ack echoing a status this recent: the twin is lost

    [telemetry]                    # role: operator
    enabled = true
    every_n_polls = 1              # one telemetry record per this many polls
    history_rate = 500             # records/s at most when sending a backlog
    window = 2000                  # unacknowledged historical records in flight at most

    [telemetry.policy]             # role: operator; data minimisation (policyconfig.py)
    device = "id"                  # id | pseudonym (with pseudonym_key = "FILE")
    [telemetry.policy.signals]     # signal or group = "send" | "drop" |
    temp_c = "drop"                # { action = "aggregate", window_s = N } |
                                   # { action = "quantize", step = X }

    [spool]                        # role: operator
    max_bytes = 67108864           # the spool file never grows past this (64 MiB)
    max_records = 1000000
    overflow = "drop_oldest"       # drop_oldest (records the gap) | stop (records the stop)

    [recommendations]              # role: engineer
    max_validity_s = 60.0          # a recommendation valid longer than this is rejected

    [confirm]                      # role: safety
    window_s = 30.0                # a pushed config must see the twin ALIVE within this

    [overrides.timing]             # poll_period_s: engineer; the timeouts: safety
    [overrides.outputs.NAME]       # minimum/maximum/max_rate: engineer; safe_value: safety
    [overrides.trips.NAME]         # limit: safety
    [overrides.groups.NAME]        # discrepancy/max_age_s/max_rate/stuck_after_s: safety

    [[trust]]                      # role: safety; who may sign configuration bundles
    id = "alice"
    role = "engineer"              # operator | engineer | safety | approver
    public_key = "base64 of the raw 32-byte Ed25519 public key"

``overrides`` tighten or retune the hardware profile from a signed configuration; they are
kept here as parsed data and applied (and cross-checked against the profile) by the
configuration layer, never silently: unknown names are errors.

Without ``--config`` the agent runs with ``AgentConfig.default()``: shadow mode, no twin,
which keeps the plant in its safe state (the twin is never ALIVE).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.fields import Fields, Problems, describe, is_identifier
from agent.config.policyconfig import parse_policy
from agent.model.endpoint import Endpoint, parse_host_port
from agent.model.errors import ConfigError, Problem
from agent.model.mode import Mode
from agent.model.policy import TelemetryPolicy
from agent.model.spool import Overflow

__all__ = [
    "AgentConfig", "FleetConfig", "Overflow", "Overrides", "Role", "SpoolConfig",
    "TelemetryConfig", "Transport", "TrustedKey", "TwinConfig", "load_config", "parse_config",
]

_TOP_KEYS = ("device_id", "mode", "twin", "fleet", "telemetry", "spool", "recommendations",
             "confirm", "overrides", "trust")
_TELEMETRY_KEYS = ("enabled", "every_n_polls", "history_rate", "window", "policy")
_SPOOL_KEYS = ("max_bytes", "max_records", "overflow")
_RECOMMENDATION_KEYS = ("max_validity_s",)
_CONFIRM_KEYS = ("window_s",)
_OVERRIDE_KEYS = ("timing", "outputs", "trips", "groups")
_TIMING_OVERRIDES = ("poll_period_s", "heartbeat_timeout_s", "heartbeat_late_s",
                     "watchdog_deadline_s")
_OUTPUT_OVERRIDES = ("minimum", "maximum", "max_rate", "safe_value")
_TRIP_OVERRIDES = ("limit",)
_GROUP_OVERRIDES = ("discrepancy", "max_age_s", "max_rate", "stuck_after_s")
_TRUST_KEYS = ("id", "role", "public_key")


class Role(enum.Enum):
    """Who signed a configuration bundle; what each may change is ``agent.config.roles``' table."""

    OPERATOR = "operator"
    ENGINEER = "engineer"
    SAFETY = "safety"
    APPROVER = "approver"

_TWIN_KEYS = (
    "host", "port", "server_name", "ca", "cert", "key", "max_frame", "connect_timeout_s",
    "backoff_min_s", "backoff_max_s", "idle_timeout_s", "crl", "backups", "transport",
)
_BACKUP_KEYS = ("host", "port", "server_name")
_FLEET_KEYS = ("servers", "group", "host_id", "twin_keys", "keepalive_s", "echo_timeout_s")


class Transport(enum.Enum):
    """How the agent reaches its twin: its own TLS protocol, or MQTT 5 through a broker."""

    TLS = "tls"
    MQTT = "mqtt"


@dataclass(frozen=True)
class FleetConfig:
    """``[fleet]``: the broker servers (walked in order) and the twin behind them."""

    servers: tuple[Endpoint, ...]
    group: str
    host_id: str
    twin_keys: tuple[bytes, ...]  # raw 32-byte Ed25519 public keys
    keepalive_s: int = 10
    echo_timeout_s: float = 3.0


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
    crl_file: Path | None = None
    backups: tuple[Endpoint, ...] = ()  # walked in order after host:port on a loss
    transport: Transport = Transport.TLS
    fleet: FleetConfig | None = None  # [fleet]; set exactly when transport is mqtt

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """host:port first, then the backups."""
        return (Endpoint(self.host, self.port, self.server_name), *self.backups)


@dataclass(frozen=True)
class TelemetryConfig:
    enabled: bool = True
    every_n_polls: int = 1
    history_rate: float = 500.0
    window: int = 2000
    policy: TelemetryPolicy = field(default_factory=TelemetryPolicy)


@dataclass(frozen=True)
class SpoolConfig:
    max_bytes: int = 64 * 1024 * 1024
    max_records: int = 1_000_000
    overflow: Overflow = Overflow.DROP_OLDEST


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    role: Role
    public_key: bytes  # raw 32-byte Ed25519 public key


@dataclass(frozen=True)
class Overrides:
    """Parsed ``[overrides.*]``: name -> {key: value}; applied by the configuration layer."""

    timing: Mapping[str, float] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    trips: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    groups: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    source: str
    device_id: str
    mode: Mode
    twin: TwinConfig | None
    telemetry: TelemetryConfig = TelemetryConfig()
    spool: SpoolConfig = SpoolConfig()
    max_validity_s: float = 60.0
    confirm_window_s: float = 30.0
    overrides: Overrides = Overrides()
    trust: tuple[TrustedKey, ...] = ()

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
    fleet = _fleet(out, data["fleet"]) if "fleet" in data else None
    if twin is not None and twin.transport is Transport.MQTT:
        if fleet is None:
            out.add("fleet", 'missing: [twin] transport = "mqtt" needs a [fleet] table')
        twin = dataclasses.replace(twin, fleet=fleet)
    elif "fleet" in data:
        out.add("fleet", 'only with [twin] transport = "mqtt"')
    tel = Fields(out, "telemetry", data.get("telemetry", {}), _TELEMETRY_KEYS)
    telemetry = TelemetryConfig(
        enabled=tel.flag("enabled", True),
        every_n_polls=tel.integer("every_n_polls", 1, 10_000, 1),
        history_rate=tel.number("history_rate", 500.0, gt=0),
        window=tel.integer("window", 1, 1_000_000, 2000),
        policy=parse_policy(out, tel.data.get("policy", {}), base),
    )
    sp = Fields(out, "spool", data.get("spool", {}), _SPOOL_KEYS)
    spool = SpoolConfig(
        max_bytes=sp.integer("max_bytes", 64 * 1024, 2**40, 64 * 1024 * 1024),
        max_records=sp.integer("max_records", 100, 2**40, 1_000_000),
        overflow=sp.enum("overflow", Overflow, Overflow.DROP_OLDEST),
    )
    rec = Fields(out, "recommendations", data.get("recommendations", {}), _RECOMMENDATION_KEYS)
    max_validity = rec.number("max_validity_s", 60.0, gt=0)
    conf = Fields(out, "confirm", data.get("confirm", {}), _CONFIRM_KEYS)
    confirm_window = conf.number("window_s", 30.0, gt=0)
    overrides = _overrides(out, data.get("overrides", {}))
    trust = _trust(out, data.get("trust", []))
    if out.items:
        raise ConfigError(out.items)
    return AgentConfig(
        source=source, device_id=device_id, mode=mode, twin=twin, telemetry=telemetry,
        spool=spool, max_validity_s=max_validity, confirm_window_s=confirm_window,
        overrides=overrides, trust=trust,
    )


def _numbers(out: Problems, path: str, data: object, allowed: tuple[str, ...]) -> dict[str, float]:
    f = Fields(out, path, data, allowed)
    return {key: f.number(key) for key in allowed if f.has(key)}


def _named(out: Problems, path: str, data: object,
           allowed: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``[path.NAME]`` tables of numbers; the names are checked against the profile later."""
    if not isinstance(data, Mapping):
        out.add(path, "expected a table of tables")
        return {}
    return {str(name): _numbers(out, f"{path}.{name}", table, allowed)
            for name, table in data.items()}


def _overrides(out: Problems, data: object) -> Overrides:
    f = Fields(out, "overrides", data, _OVERRIDE_KEYS)
    return Overrides(
        timing=_numbers(out, "overrides.timing", f.data.get("timing", {}), _TIMING_OVERRIDES),
        outputs=_named(out, "overrides.outputs", f.data.get("outputs", {}), _OUTPUT_OVERRIDES),
        trips=_named(out, "overrides.trips", f.data.get("trips", {}), _TRIP_OVERRIDES),
        groups=_named(out, "overrides.groups", f.data.get("groups", {}), _GROUP_OVERRIDES),
    )


def _trust(out: Problems, data: object) -> tuple[TrustedKey, ...]:
    if not isinstance(data, list):
        out.add("trust", "expected an array of tables ([[trust]])")
        return ()
    keys: list[TrustedKey] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        f = Fields(out, f"trust[{i}]", entry, _TRUST_KEYS)
        key_id = f.text("id")
        role = f.enum("role", Role)
        text = f.text("public_key")
        raw = b""
        if f.ok("public_key"):
            try:
                raw = base64.b64decode(text, validate=True)
            except binascii.Error:
                f.fail("public_key", "not valid base64")
            else:
                if len(raw) != 32:
                    f.fail("public_key", f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        if f.ok("id") and key_id in seen:
            f.fail("id", f"duplicate key id {key_id!r}")
        seen.add(key_id)
        keys.append(TrustedKey(key_id, role, raw))
    return tuple(keys)


def _twin(out: Problems, data: object, base: Path) -> TwinConfig:
    f = Fields(out, "twin", data, _TWIN_KEYS)

    def path(key: str) -> Path:
        p = Path(f.text(key))
        return p if p.is_absolute() else base / p

    backoff_min = f.number("backoff_min_s", 0.2, gt=0)
    backoff_max = f.number("backoff_max_s", 5.0, gt=0)
    if f.ok("backoff_min_s", "backoff_max_s") and backoff_max < backoff_min:
        f.fail("backoff_max_s", f"must be at least backoff_min_s ({backoff_min:g})")
    transport = f.enum("transport", Transport, Transport.TLS)
    if transport is Transport.MQTT:  # the servers are in [fleet]
        for key in ("host", "port", "server_name", "backups"):
            f.forbid(key, 'not used with transport = "mqtt": [fleet] servers says where')
        return TwinConfig(
            host="", port=0, server_name="", ca_file=path("ca"), cert_file=path("cert"),
            key_file=path("key"), max_frame=f.integer("max_frame", 1024, 16 * 1024 * 1024, 65536),
            connect_timeout_s=f.number("connect_timeout_s", 3.0, gt=0),
            backoff_min_s=backoff_min, backoff_max_s=backoff_max,
            idle_timeout_s=f.number("idle_timeout_s", 2.0, gt=0),
            crl_file=path("crl") if f.has("crl") else None, transport=transport)
    host = f.text("host")
    port = f.integer("port", 1, 65535)
    server_name = f.text("server_name", host or "localhost")
    return TwinConfig(
        host=host,
        port=port,
        server_name=server_name,
        ca_file=path("ca"),
        cert_file=path("cert"),
        key_file=path("key"),
        max_frame=f.integer("max_frame", 1024, 16 * 1024 * 1024, 65536),
        connect_timeout_s=f.number("connect_timeout_s", 3.0, gt=0),
        backoff_min_s=backoff_min,
        backoff_max_s=backoff_max,
        idle_timeout_s=f.number("idle_timeout_s", 2.0, gt=0),
        crl_file=path("crl") if f.has("crl") else None,
        backups=_backups(out, f, (host, port)),
    )


def _backups(out: Problems, f: Fields, first: tuple[str, int]) -> tuple[Endpoint, ...]:
    """``[twin] backups``: ``"host:port"`` strings (the host is also the name its
    certificate must carry) or tables ``{host, port, server_name}``; none twice, none the
    first endpoint again."""
    if not f.has("backups"):
        return ()
    raw = f.data["backups"]
    if not isinstance(raw, list):
        f.fail("backups", "must be a list of \"host:port\" strings or {host, port} tables")
        return ()
    found: list[Endpoint] = []
    seen = {first}
    for i, item in enumerate(raw):
        at = f"backups[{i}]"
        if isinstance(item, str):
            try:
                host, port = parse_host_port(item)
            except ValueError as exc:
                f.fail(at, str(exc))
                continue
            endpoint = Endpoint(host, port, host)
        elif isinstance(item, dict):
            g = Fields(out, f"twin.{at}", item, _BACKUP_KEYS)
            host, port = g.text("host"), g.integer("port", 1, 65535)
            name = g.text("server_name", host or "localhost")
            if g.bad:
                continue
            endpoint = Endpoint(host, port, name)
        else:
            f.fail(at, "must be a \"host:port\" string or a {host, port} table")
            continue
        if (endpoint.host, endpoint.port) in seen:
            f.fail(at, f"{endpoint} is already an endpoint of [twin]")
            continue
        seen.add((endpoint.host, endpoint.port))
        found.append(endpoint)
    return tuple(found)


def _id(f: Fields, key: str) -> str:
    """A Sparkplug id (group, host): one MQTT topic level."""
    value = f.text(key)
    if f.ok(key) and (any(c in value for c in "/+#\x00") or len(value) > 256):
        f.fail(key, "must be one topic level: no '/', '+', '#' or NUL, at most 256 characters")
    return value


def _server(text: str) -> Endpoint:
    """``mqtts://host:port`` -> Endpoint (the host is the name its certificate must carry);
    ValueError naming what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "mqtts":
        raise ValueError(f"{text!r}: expected mqtts://host:port (TLS only)")
    host, port = parse_host_port(rest)
    return Endpoint(host, port, host)


def _strings(f: Fields, key: str, what: str) -> list[tuple[str, str]]:
    """A required, non-empty array of strings: (its key path, the string) each; every
    entry that is not a string is a problem at its own index."""
    raw = f.data.get(key)
    if raw is None:
        f.fail(key, "missing required key")
        return []
    if not isinstance(raw, list) or not raw:
        f.fail(key, f"expected a non-empty array of {what}")
        return []
    found = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            found.append((f"{key}[{i}]", item))
        else:
            f.fail(f"{key}[{i}]", f"expected a string, got {describe(item)}")
    return found


def _twin_key(text: str) -> bytes:
    """A raw Ed25519 public key from its base64; ValueError if it is not one."""
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise ValueError("expected the base64 of a raw 32-byte Ed25519 public key")
    return key


def _fleet(out: Problems, data: object) -> FleetConfig:
    f = Fields(out, "fleet", data, _FLEET_KEYS)
    servers: list[Endpoint] = []
    for at, text in _strings(f, "servers", '"mqtts://host:port" strings'):
        try:
            endpoint = _server(text)
        except ValueError as exc:
            f.fail(at, str(exc))
            continue
        if endpoint in servers:
            f.fail(at, f"{endpoint} is listed twice")
        else:
            servers.append(endpoint)
    keys: list[bytes] = []
    for at, text in _strings(f, "twin_keys", "base64 Ed25519 public keys"):
        try:
            keys.append(_twin_key(text))
        except ValueError as exc:
            f.fail(at, str(exc))
    return FleetConfig(
        servers=tuple(servers), group=_id(f, "group"), host_id=_id(f, "host_id"),
        twin_keys=tuple(keys), keepalive_s=f.integer("keepalive_s", 1, 65535, 10),
        echo_timeout_s=f.number("echo_timeout_s", 3.0, gt=0),
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
