"""Every exception the agent raises on purpose, in one tree.

Each leaf also inherits the built-in a caller would catch without knowing twinguard
(``except ValueError`` still sees a bad profile, ``except OSError`` a socket in the way)::

    TwinguardError(Exception)
     ├── _ProblemsError(TwinguardError, ValueError)    a file with problems; ``problems``
     │    ├── ProfileError                             a hardware profile is invalid
     │    └── ConfigError                              an agent configuration is invalid
     ├── WriteRefused(TwinguardError, PermissionError) an undeclared or out-of-limit write
     ├── KeyFileExposed(TwinguardError, PermissionError)  a private key open to group/others
     ├── ProtocolError(TwinguardError, ValueError)     a peer sent a malformed frame/message
     │    └── FrameError(ProtocolError)                a twin frame broke the framing rules
     ├── BundleError(TwinguardError, ValueError)       not a well-formed configuration bundle
     ├── DrillRefused(TwinguardError, ValueError)      a fault drill that cannot be played
     │                                                 (unknown scenario or target, one
     │                                                 already running)
     ├── ConnectFailed(TwinguardError, OSError)        the link to the PLC cannot be opened
     ├── DeviceUnavailable(TwinguardError, OSError)    a device or file a profile or
     │                                                 configuration names cannot be opened
     ├── GpioError(TwinguardError, OSError)            a GPIO pin cannot be claimed
     ├── StatusSocketError(TwinguardError, OSError)    the status socket cannot be set up
     │    └── StatusSocketInUse(StatusSocketError)     another agent serves this state dir
     └── AgentNotRunning(TwinguardError, ConnectionError)  no agent on the status socket

Who raises them: profile and configuration parsing (``agent.config``) the problem errors,
the Modbus codec (``agent.protocol.modbus``) ``WriteRefused``, the twin protocol and the
status socket's client ``ProtocolError``, the Sparkplug codec (``agent.protocol.sparkplug``)
``SparkplugError``, the adapters (``agent.io``) the ``OSError`` family.
Adapters translate foreign exceptions (sockets, pyserial, ssl, sqlite3, gpiozero) with
``raise ... from``. Two private exceptions never leave their module and are not part of
this tree: the twin link's ``_SessionEnd`` and the status server's ``_BadRequest``
(control flow inside one coroutine).

Plain data only; imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class TwinguardError(Exception):
    """Base class of every error the agent raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: which file, which key (``signals[2].address``) and why."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.reason}"


class _ProblemsError(TwinguardError, ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ProfileError(_ProblemsError):
    """A hardware profile has one or more problems; ``problems`` lists every one of them."""


class ConfigError(_ProblemsError):
    """An agent configuration has one or more problems; ``problems`` lists every one."""


class WriteRefused(TwinguardError, PermissionError):
    """A write to a register or coil that is not a declared output, or outside its limits."""


class KeyFileExposed(TwinguardError, PermissionError):
    """A private key file that its group or others may access (the agent will not use it);
    the message names the file, its mode and the ``chmod 600`` that fixes it."""


class ProtocolError(TwinguardError, ValueError):
    """A peer sent something that breaks the protocol; the connection carrying it is closed."""


class FrameError(ProtocolError):
    """A twin frame broke the framing rules. ``decoded`` holds the good frames before it
    (``bodies`` their raw bodies, from ``FrameDecoder.feed_bodies``)."""

    def __init__(self, reason: str, decoded: list[dict[str, Any]] | None = None,
                 bodies: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.decoded: list[dict[str, Any]] = list(decoded or [])
        self.bodies: list[bytes] = list(bodies or [])  # from feed_bodies: good ones before


class SparkplugError(ProtocolError):
    """A Sparkplug B payload, topic or STATE message broke the specification's rules (or
    twinguard's bounds on them); the message says which rule, for which metric."""


class BundleError(TwinguardError, ValueError):
    """A bundle is not a well-formed bundle (or, with ``too_large``, above the size cap)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class ConnectFailed(TwinguardError, OSError):
    """The link to the PLC could not be opened; the message says why and what to check."""


class DeviceUnavailable(TwinguardError, OSError):
    """A device or file named by the profile or the configuration cannot be opened; the
    message names the key, the path, the cause and what to do (``agent.io.devices``)."""


class GpioError(TwinguardError, OSError):
    """A GPIO pin could not be claimed (invalid number, already in use, no GPIO driver)."""


class StatusSocketError(TwinguardError, OSError):
    """The status socket cannot be set up (path too long, permissions, a file in the way)."""


class StatusSocketInUse(StatusSocketError):
    """Another agent answers on the socket: two agents must never share one state dir."""


class DrillRefused(TwinguardError, ValueError):
    """A fault drill cannot be played: an unknown scenario or target, a profile without
    what it needs, or another drill still running (the message says which)."""


class AgentNotRunning(TwinguardError, ConnectionError):
    """No agent serves the status socket (missing, or nothing listens on it)."""
