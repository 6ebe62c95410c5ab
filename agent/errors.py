"""Exceptions raised by the agent.

    TwinguardError
     ├── ProfileError(TwinguardError, ValueError)       a hardware profile is invalid
     ├── ConfigError(TwinguardError, ValueError)       an agent configuration is invalid
     ├── WriteRefused(TwinguardError, PermissionError) an undeclared or out-of-limit write
     └── ProtocolError(TwinguardError, ValueError)     a peer sent a malformed frame or message

Adapters translate foreign exceptions (sockets, pyserial, ssl, sqlite3) with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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


class ProtocolError(TwinguardError, ValueError):
    """A peer sent something that breaks the protocol; the connection carrying it is closed."""
