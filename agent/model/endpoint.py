"""Where a twin (or a broker) is: one endpoint of the ordered list a link walks.

An agent may name backup endpoints besides its first; on a loss the link walks to the next
one in order (wrapping), with the same jittered backoff between attempts, so telemetry
keeps flowing to whichever endpoint is up (the spool resends what no twin acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """``host:port``, and the name the peer's certificate must carry (``server_name``)."""

    host: str
    port: int
    server_name: str

    def __post_init__(self) -> None:
        if not self.host or not self.server_name:
            raise ValueError("an endpoint needs a host and a server name")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(text: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address as [address]:port")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"{text!r}: port must be in 1..65535")
    return host, number
