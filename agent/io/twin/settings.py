"""The twin link's settings, counters and TLS client context (``agent.io.twin.link`` uses them).

``TwinLinkSettings`` is what the runtime builds from the agent configuration's ``[twin]``
table and the profile's ``[timing]``; ``LinkCounters`` is what the link has seen (the
``twinguard status`` material); ``make_client_context`` is the pinned mutual-TLS context,
which refuses a device key its group or others may read (``check_private_key``).
"""

from __future__ import annotations

import math
import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from agent import __version__
from agent.model.endpoint import Endpoint
from agent.model.errors import KeyFileExposed
from agent.model.messages import PROTOCOL_VERSION, AgentHello
from agent.protocol.twin.frames import DEFAULT_MAX_FRAME

# Heartbeat timing announced in the hello when the caller gives none: the shipped sim-tank
# profile's [timing]. Only for the link's own tests and tools; the runtime always passes the
# profile's real values (agent.runtime.Runtime._make_link).
DEFAULT_HEARTBEAT_TIMEOUT_S = 0.5
DEFAULT_HEARTBEAT_LATE_S = 0.25


def to_ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds, rounded to the nearest (the hello's unit)."""
    return round(seconds * 1000)


@dataclass(frozen=True)
class TwinLinkSettings:
    """Where the twin is and how to talk to it. ValueError on impossible values.

    ``heartbeat_timeout_s`` / ``heartbeat_late_s`` are the agent's heartbeat timing (the
    hardware profile's ``[timing]``); the link only announces them in its hello (in ms,
    both >= 1 ms after rounding, late <= timeout), it never times heartbeats itself.
    """

    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str
    device_id: str
    max_frame: int = DEFAULT_MAX_FRAME
    connect_timeout_s: float = 5.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    idle_timeout_s: float = 3.0
    agent_version: str = __version__
    crl_file: Path | None = None  # PEM CRL of ca_file's CA: a revoked twin cert is refused
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    heartbeat_late_s: float = DEFAULT_HEARTBEAT_LATE_S
    # bounded work per loop turn (PROTOCOL.md §6.1): messages delivered per turn at most,
    # and the time after which a turn stops early; messages read but not yet delivered
    # (the inbox; no reading while it is full); replies (recommend_result) per second
    turn_frames: int = 64
    turn_s: float = 0.002
    inbox_frames: int = 10_000
    inbox_bytes: int = 1 << 20
    reply_rate: float = 100.0
    # more endpoints of the same twin, walked in order after host:port on a loss
    backups: tuple[Endpoint, ...] = ()

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """host:port (checked against server_name) first, then the backups."""
        return (Endpoint(self.host, self.port, self.server_name), *self.backups)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("connect_timeout_s", "backoff_min_s", "idle_timeout_s", "turn_s",
                     "turn_frames", "inbox_frames", "inbox_bytes", "reply_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.backoff_max_s >= self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        if not self.server_name or not self.device_id:
            raise ValueError("server_name and device_id must not be empty")
        for name in ("heartbeat_timeout_s", "heartbeat_late_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        late, timeout = to_ms(self.heartbeat_late_s), to_ms(self.heartbeat_timeout_s)
        if not 1 <= late <= timeout:
            raise ValueError(
                "need 1 ms <= heartbeat_late_s <= heartbeat_timeout_s (in whole ms), got "
                f"{self.heartbeat_late_s} s and {self.heartbeat_timeout_s} s")

    def hello(self) -> AgentHello:
        """The hello this link sends first on every connection."""
        return AgentHello(self.device_id, self.agent_version, PROTOCOL_VERSION,
                          to_ms(self.heartbeat_timeout_s), to_ms(self.heartbeat_late_s))


@dataclass
class LinkCounters:
    """What the link has seen since it was made (never reset)."""

    connects: int = 0  # TLS handshakes completed
    sessions: int = 0  # twin hellos accepted (session UP)
    disconnects: int = 0  # connections ended after a completed handshake
    failures: int = 0  # attempts that ended before a handshake completed
    frames_in: int = 0
    frames_out: int = 0
    malformed: int = 0  # frames or messages that broke the protocol
    idle_timeouts: int = 0
    dropped: int = 0  # send() while not connected
    callback_errors: int = 0
    last_error: str | None = None
    # bounded work (PROTOCOL.md §6.1)
    replies: int = 0  # reply() written
    replies_dropped: int = 0  # reply() over the per-second budget, or with nowhere to go
    yields: int = 0  # delivery turns that gave the loop back with messages still waiting
    read_pauses: int = 0  # reading stopped because the inbox was full
    ahead: int = 0  # liveness messages delivered ahead of waiting ones
    waiting_max: int = 0  # the most messages ever waiting at once
    discarded: int = 0  # waiting messages dropped because their connection ended
    endpoint: str = ""  # the endpoint dialled last ("host:port")
    switches: int = 0  # walks to the next endpoint (only with backups)
    # messages ignored by reason (the fleet link: unsigned, replayed, signature, ...)
    refused: dict[str, int] = field(default_factory=dict)


def check_private_key(path: Path, key: str = "twin.key") -> None:
    """Raise :class:`KeyFileExposed` if the private key file ``path`` (configured at ``key``)
    grants its group or others any access (mode & 0o077); OSError if it cannot be stat-ed."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyFileExposed(
            f"device key {path} ({key}) is mode {mode:04o}: its group or others may read it; "
            f"make it private to the agent's user: chmod 600 {path}")


def make_client_context(settings: TwinLinkSettings) -> ssl.SSLContext:
    """TLS >= 1.2 client context: our cert + key, the twin verified against ca_file only.

    With ``crl_file`` the twin's certificate is also checked against that CRL
    (``VERIFY_CRL_CHECK_LEAF``; a CRL that is missing, expired or from another CA makes every
    handshake fail: fail closed). Expiry is checked by ``ssl`` itself.
    Raises OSError / ssl.SSLError if a file is missing or not a valid cert/key/CRL, and
    :class:`KeyFileExposed` (a PermissionError) if the key file is open to group or others.
    """
    check_private_key(settings.key_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=str(settings.ca_file))  # pinned: no system roots
    if settings.crl_file is not None:
        ctx.load_verify_locations(cafile=str(settings.crl_file))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return ctx
