"""``twinguard read``: one read of every signal, for the commissioning engineer.

    twinguard read --profile P [--tcp HOST:PORT] [--rtu DEVICE] [--json]

Prints a table (name, table:address, type, raw registers in hex, value, unit, quality or
error), or with ``--json`` exactly::

    {"signals": {NAME: {"raw": [int, ...] | bool | null, "value": float | null,
                        "unit": str, "quality": "good" | "bad"}}}

(with ``--json`` the reasons for BAD readings go to stderr, one ``NAME: error`` a line).

Exit status: 0 every signal GOOD, 1 some signal BAD, 2 the profile has problems (each printed
as ``FILE: KEY.PATH: reason``), 3 the PLC cannot be reached (``cannot reach the PLC at WHERE:
WHY`` on stderr, e.g. "no such device: /dev/ttyX — check the profile's plc.device / --rtu").

A reply that does not match its request (wrong function code, byte count, transaction or
unit id, CRC ...) gives BAD readings whose reason starts ``malformed reply:`` and names what
was wrong; nothing of it is shown as a value. No command ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from agent.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    json_option,
    profile_options,
    report_problems,
)
from agent.config.profile.load import load_profile, with_connection
from agent.model.errors import ProfileError
from agent.model.profile import Profile, Signal, TcpLink
from agent.model.readings import Quality, Reading

if TYPE_CHECKING:
    from rich.table import Table as RichTable



def options(parser: argparse.ArgumentParser) -> None:
    profile_options(parser)
    json_option(parser)


def _load(ns: argparse.Namespace) -> Profile:
    profile = load_profile(ns.profile)
    if ns.tcp or ns.rtu:
        profile = with_connection(profile, tcp=ns.tcp, rtu=ns.rtu)
    return profile


def _raw_text(raw: tuple[int, ...] | bool | None) -> str:
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "1" if raw else "0"
    return " ".join(f"{r:04X}" for r in raw)


def _value_text(r: Reading) -> str:
    if r.value is None:
        return "-"
    return f"{r.value:.6g}"


def _json_doc(profile: Profile, readings: dict[str, Reading]) -> dict[str, Any]:
    signals: dict[str, Any] = {}
    for s in profile.signals:
        r = readings[s.name]
        raw: list[int] | bool | None = list(r.raw) if isinstance(r.raw, tuple) else r.raw
        signals[s.name] = {
            "raw": raw,
            "value": r.value,
            "unit": s.unit,
            "quality": "good" if r.quality is Quality.GOOD else "bad",
        }
    return {"signals": signals}


def _table(profile: Profile, readings: dict[str, Reading]) -> RichTable:
    # rich only when a table is drawn: it stays out of the running agent's memory
    from rich.table import Table as RichTable  # noqa: PLC0415

    link = profile.plc.link
    where = f"{link.host}:{link.port}" if isinstance(link, TcpLink) else link.device
    t = RichTable(title=f"{profile.source} @ {where}")
    for col in ("name", "table:address", "type", "raw", "value", "unit", "quality"):
        t.add_column(col, justify="right" if col in ("raw", "value") else "left")
    for s in profile.signals:
        r = readings[s.name]
        quality = "good" if r.quality is Quality.GOOD else f"[red]BAD[/red] {r.error or ''}"
        t.add_row(
            s.name,
            _where(s),
            _type(s),
            _raw_text(r.raw),
            _value_text(r),
            s.unit,
            quality,
        )
    return t


def _where(s: Signal) -> str:
    unit = f"u{s.unit_id} " if s.unit_id != 1 else ""
    return f"{unit}{s.table.value}:{s.address}"


def _type(s: Signal) -> str:
    if s.dtype.words == 2:
        return f"{s.dtype.value} ({s.word_order.value})"
    return s.dtype.value


async def _read(profile: Profile) -> dict[str, Reading] | str:
    """The readings, or why the PLC could not be reached."""
    # the Modbus stack only when reading: building the parser and `check` load none of it
    from agent.io.modbus.client import PlcClient  # noqa: PLC0415

    client = PlcClient(profile)
    try:
        if not await client.connect():
            return client.last_connect_error or "connect failed"
        return await client.read_signals()
    finally:
        await client.close()


def read(ns: argparse.Namespace) -> int:
    """Read every signal of the profile once from the PLC and print it."""
    import asyncio  # noqa: PLC0415 - with the Modbus stack (_read), only when reading

    try:
        profile = _load(ns)
    except ProfileError as exc:
        return report_problems(exc)
    except OSError as exc:
        sys.stderr.write(f"{ns.profile}: cannot read: {exc}\n")
        return EXIT_USAGE
    readings = asyncio.run(_read(profile))
    if isinstance(readings, str):
        link = profile.plc.link
        where = f"{link.host}:{link.port}" if isinstance(link, TcpLink) else link.device
        sys.stderr.write(f"cannot reach the PLC at {where}: {readings}\n")
        return EXIT_UNREACHABLE
    bad = [r for r in readings.values() if r.quality is not Quality.GOOD]
    if ns.json:
        sys.stdout.write(json.dumps(_json_doc(profile, readings)) + "\n")
        for r in bad:
            sys.stderr.write(f"{r.name}: {r.error}\n")
    else:
        from rich.console import Console  # noqa: PLC0415 - rich only here, as in _table

        longest = max((len(r.error or "") for r in bad), default=0)  # a reason on one line
        width = max(120, Console().width, 90 + longest)
        Console(width=width).print(_table(profile, readings))
    return EXIT_FAILED if bad else EXIT_OK
