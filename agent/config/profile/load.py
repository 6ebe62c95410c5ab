"""Find, read and parse hardware profiles; override their PLC connection.

The only I/O of the profile package: reading one TOML file. Resolution of a profile
reference (``load_profile``):

- ``None`` means the default shipped profile, ``sim-tank``;
- an existing file (any path, absolute or relative) is read as is;
- otherwise a bare name (``sim-tank`` or ``sim-tank.toml``, no directory part) is looked up
  in the installed ``hw_profiles`` package (``importlib.resources``);
- anything else is a ``ProfileError`` listing the shipped profiles.

Every failure (missing file, unreadable file, not UTF-8, TOML syntax, schema) is raised as
``agent.model.errors.ProfileError`` whose problems name the file; a TOML syntax error names the
line and column (path ``line L, column C``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config.profile.parse import (
    DEFAULT_TCP_PORT,
    STANDARD_BAUDRATES,
    UNIT_ID_MAX,
    parse_profile,
)
from agent.model.errors import Problem, ProfileError
from agent.model.profile import Parity, PlcConnection, Profile, RtuLink, TcpLink

__all__ = ["DEFAULT_PROFILE", "TIMEOUT_MAX_S", "list_profiles", "load_profile", "read_toml",
           "with_connection", "with_link_settings"]

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "sim-tank"
_PACKAGE = "hw_profiles"
_TOML_POSITION = re.compile(r"^(?P<reason>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)"
                            r"|(?P<end>end of document))\)$")
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]+))"
                        r"(?::(?P<port>[^:]*))?$")


def list_profiles() -> list[str]:
    """Names (without ``.toml``) of the profiles shipped in the ``hw_profiles`` package."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir()
                  if p.is_file() and p.name.endswith(".toml"))


def load_profile(ref: str | Path | None = None) -> Profile:
    """Read and parse the profile ``ref`` refers to (see the module docstring).

    Raises ``ProfileError`` for every failure; never returns a partially valid profile.
    """
    name = DEFAULT_PROFILE if ref is None else ref
    path = Path(name)
    if path.is_file():
        source = str(path)
        data = _read(path.read_bytes, source)
    else:
        text = str(name)
        if isinstance(name, Path) or "/" in text or "\\" in text:
            raise ProfileError([Problem(text, "(file)", "no such file")])
        stem = text.removesuffix(".toml")
        shipped = list_profiles()
        if stem not in shipped:
            raise ProfileError([Problem(text, "(file)", "no such file, and no shipped profile "
                                        f"of that name (shipped: {', '.join(shipped)})")])
        resource = importlib.resources.files(_PACKAGE) / f"{stem}.toml"
        source = str(resource)
        data = _read(resource.read_bytes, source)
    profile = parse_profile(data, source)
    log.debug("loaded profile %s", source)
    return profile


def read_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML ``text``; a syntax error becomes a ``ProfileError`` with line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.match(message)
        if match is None:
            where, reason = "(file)", message
        elif match["end"]:
            where, reason = "end of file", match["reason"]
        else:
            where, reason = f"line {match['line']}, column {match['col']}", match["reason"]
        raise ProfileError([Problem(source, where, f"invalid TOML: {reason}")]) from exc


def _read(read_bytes: Any, source: str) -> dict[str, Any]:
    try:
        raw: bytes = read_bytes()
    except OSError as exc:
        raise ProfileError([Problem(source, "(file)", f"cannot read: {exc.strerror or exc}")]) \
            from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError([Problem(source, "(file)", f"not UTF-8 text (byte {exc.start})")]) \
            from exc
    return read_toml(text, source)


def with_connection(profile: Profile, *, tcp: str | None = None,
                    rtu: str | None = None) -> Profile:
    """A copy of ``profile`` whose PLC link is overridden (the CLI's ``--tcp``/``--rtu``).

    ``tcp`` is ``HOST:PORT`` (``[v6addr]:PORT``; a bare ``HOST`` means port 502). ``rtu`` is a
    serial device path; the profile's serial settings are kept, or 19200 8E1 (the Modbus
    serial default) if the profile was TCP. Neither given returns ``profile`` itself.
    Raises ``ProfileError`` with path ``--tcp``/``--rtu`` for bad input or both given.
    """
    if tcp is not None and rtu is not None:
        raise ProfileError([Problem(profile.source, "--rtu", "use --tcp or --rtu, not both")])
    link: TcpLink | RtuLink
    if tcp is not None:
        link = parse_host_port(tcp, profile.source)
    elif rtu is not None:
        if not rtu.strip() or not rtu.startswith("/"):
            raise ProfileError([Problem(profile.source, "--rtu", "expected a serial device "
                                        f"path such as /dev/ttyUSB0, got {rtu!r}")])
        old = profile.plc.link
        if isinstance(old, RtuLink):
            link = dataclasses.replace(old, device=rtu)
        else:
            link = RtuLink(device=rtu, baudrate=19200, parity=Parity.EVEN, stopbits=1,
                           bytesize=8)
    else:
        return profile
    plc: PlcConnection = dataclasses.replace(profile.plc, link=link)
    return dataclasses.replace(profile, plc=plc)


TIMEOUT_MAX_S = 60.0  # --timeout: longer than any PLC that answers at all takes


def with_link_settings(profile: Profile, *, unit: str | None = None, baud: str | None = None,
                       parity: str | None = None, stopbits: str | None = None,
                       timeout: str | None = None) -> Profile:
    """A copy of ``profile`` with the CLI's first-contact overrides applied over ``[plc]``
    (``twinguard read --unit/--baud/--parity/--stopbits/--timeout``), each given as typed.

    - ``unit``: the unit id (0..247; 0 is refused on RTU, where it is the broadcast that
      never answers). Every signal, output and watchdog/remote register on the profile's
      ``plc.unit_id`` moves to it; those with a ``unit_id`` of their own keep it.
    - ``baud`` (a standard rate), ``parity`` (``N``, ``E`` or ``O``, any case) and
      ``stopbits`` (1 or 2): only for an RTU link (the profile's or ``--rtu``'s). A parity
      without ``stopbits`` takes the Modbus rule, as a profile does: 2 for ``N``, else 1.
    - ``timeout``: seconds per request, > 0 and at most :data:`TIMEOUT_MAX_S`.

    Nothing given returns ``profile`` itself. Raises ``ProfileError`` with every problem, each
    at its option (``--unit`` ...), and nothing applied.
    """
    problems: list[Problem] = []

    def bad(option: str, reason: str) -> None:
        problems.append(Problem(profile.source, option, reason))

    plc = profile.plc
    link = plc.link
    new_unit = plc.unit_id
    if unit is not None:
        new_unit = _int_option(unit, 0, UNIT_ID_MAX, "--unit", bad)
        if new_unit == 0 and isinstance(link, RtuLink):
            bad("--unit", "0 is the RTU broadcast address, which never answers")
    serial = {"--baud": baud, "--parity": parity, "--stopbits": stopbits}
    if isinstance(link, TcpLink):
        for option, value in serial.items():
            if value is not None:
                bad(option, "only for a serial link: add --rtu DEVICE, or use a profile "
                            'with transport = "rtu"')
    else:
        rate = link.baudrate
        if baud is not None:
            rate = _int_option(baud, 1, 10_000_000, "--baud", bad)
            if rate not in STANDARD_BAUDRATES:
                bad("--baud", f"{baud!r} is not a standard rate "
                              f"({', '.join(map(str, STANDARD_BAUDRATES))})")
        new_parity = link.parity
        if parity is not None:
            try:
                new_parity = Parity(parity.strip().upper())
            except ValueError:
                bad("--parity", f"expected N, E or O (none, even, odd), got {parity!r}")
        stops = link.stopbits if parity is None else (2 if new_parity is Parity.NONE else 1)
        if stopbits is not None:
            stops = _int_option(stopbits, 1, 2, "--stopbits", bad)
        link = dataclasses.replace(link, baudrate=rate, parity=new_parity, stopbits=stops)
    timeout_s = plc.timeout_s
    if timeout is not None:
        try:
            timeout_s = float(timeout)
        except ValueError:
            timeout_s = math.nan
        if not 0 < timeout_s <= TIMEOUT_MAX_S:  # nan fails too
            bad("--timeout", f"expected seconds per request, more than 0 and at most "
                             f"{TIMEOUT_MAX_S:g}, got {timeout!r}")
    if problems:
        raise ProfileError(problems)
    if (link, new_unit, timeout_s) == (plc.link, plc.unit_id, plc.timeout_s):
        return profile
    return _move_unit(dataclasses.replace(profile, plc=dataclasses.replace(
        plc, link=link, unit_id=new_unit, timeout_s=timeout_s)), plc.unit_id, new_unit)


def _int_option(text: str, lo: int, hi: int, option: str,
                bad: Callable[[str, str], None]) -> int:
    """``text`` as an integer in ``lo..hi``, else ``bad(option, why)`` and ``lo``."""
    value = int(text) if text.strip().isdigit() else None
    if value is None or not lo <= value <= hi:
        bad(option, f"expected an integer from {lo} to {hi}, got {text!r}")
        return lo
    return value


def _move_unit(profile: Profile, old: int, new: int) -> Profile:
    """Everything addressed to unit ``old`` addressed to ``new`` instead."""
    if old == new:
        return profile
    r = dataclasses.replace
    wd, remote = profile.plc_watchdog, profile.plc_remote
    return r(profile,
             signals=tuple(r(s, unit_id=new) if s.unit_id == old else s for s in profile.signals),
             outputs=tuple(r(o, unit_id=new) if o.unit_id == old else o for o in profile.outputs),
             plc_watchdog=r(wd, unit_id=new) if wd.unit_id == old else wd,
             plc_remote=r(remote, unit_id=new) if remote and remote.unit_id == old else remote)


def parse_host_port(text: str, source: str) -> TcpLink:
    """``HOST:PORT`` / ``[v6]:PORT`` / ``HOST`` (port 502); ``ProfileError`` at ``--tcp``."""
    match = _HOST_PORT.match(text.strip())
    if match is None:
        raise ProfileError([Problem(source, "--tcp", f"expected HOST:PORT, got {text!r}")])
    host = match["v6"] or match["host"]
    port_text = match["port"]
    if port_text is None:
        return TcpLink(host=host, port=DEFAULT_TCP_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ProfileError([Problem(source, "--tcp", "port must be a number between 1 and "
                                    f"65535, got {port_text!r}")])
    return TcpLink(host=host, port=int(port_text))
