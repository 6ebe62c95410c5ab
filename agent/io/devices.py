"""Why a device or file the profile or configuration names cannot be opened, and what to do.

One place for the sentences an engineer commissioning a Pi needs when ``open()`` fails:
which key named the path (``board.hw_watchdog``, ``twin.ca``), in which file, the cause in
words (not an errno), and the usual fix for that kind of path. Raised as
``DeviceUnavailable`` by the adapters, printed by the CLI without a traceback (exit 1).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from agent.model.errors import DeviceUnavailable

_HINTS = {
    "hw_watchdog": {
        errno.ENOENT: "enable the hardware watchdog (dtparam=watchdog=on in "
                      "/boot/firmware/config.txt, then reboot) or remove the key from the profile",
        errno.EBUSY: "another process holds it (systemd's RuntimeWatchdogSec= or a watchdog "
                     "daemon): let one of them own it, not both",
        errno.EACCES: "the agent's user may not open it: run as root or grant it with a udev "
                      "rule (the generated systemd unit allows the device)",
    },
    "serial": {
        errno.ENOENT: "is the adapter plugged in, the UART enabled? `ls -l /dev/serial* "
                      "/dev/tty{USB,ACM,AMA}*` lists what is there",
        errno.EACCES: "add the agent's user to the `dialout` group (sudo usermod -aG dialout "
                      "USER, then log in again)",
        errno.EBUSY: "another program holds the port (a serial console? disable it in "
                     "raspi-config)",
    },
    "file": {
        errno.ENOENT: "check the path (in a configuration, a relative path is relative to "
                      "the configuration file's directory)",
        errno.EACCES: "make it readable by the agent's user",
    },
}


def explain(key: str, path: str, exc: OSError, *, source: str | None = None,
            kind: str = "file") -> str:
    """``SOURCE: KEY = 'PATH': cause; what to do`` for an ``OSError`` opening ``path``."""
    where = f"{source}: " if source else ""
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(kind, {}).get(exc.errno or 0) or _HINTS["file"].get(exc.errno or 0)
    return f"{where}{key} = {path!r}: {cause}" + (f"; {hint}" if hint else "")


def unavailable(key: str, path: str, exc: OSError, *, source: str | None = None,
                kind: str = "file") -> DeviceUnavailable:
    """The :class:`DeviceUnavailable` to raise (``from exc``) for ``exc`` (its ``errno`` is
    ``exc``'s; ``str()`` is the sentence alone)."""
    error = DeviceUnavailable(explain(key, path, exc, source=source, kind=kind))
    error.errno = exc.errno
    return error


def check_readable(files: Mapping[str, str | Path | None], *, source: str | None = None) -> None:
    """Raise :class:`DeviceUnavailable` naming the first of ``files`` (config key -> path;
    None: not configured) that cannot be opened for reading."""
    for key, path in files.items():
        if path is None:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise unavailable(key, str(path), exc, source=source) from exc
        os.close(fd)
