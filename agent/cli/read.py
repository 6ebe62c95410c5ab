"""``twinguard read``: one read of every signal, for the commissioning engineer.

    twinguard read --profile P [--tcp HOST:PORT | --rtu DEVICE] [--unit U] [--baud B]
                   [--parity N|E|O] [--stopbits 1|2] [--timeout S] [--raw] [--json]

For a first contact, as with mbpoll/modpoll, ``--unit``, ``--baud``, ``--parity``,
``--stopbits`` and ``--timeout`` override the profile's ``[plc]`` for this read
(``agent.config.profile.load.with_link_settings``; a bad value is exit 2 naming the option).
Prints the link as used (``PLC at rtu /dev/ttyUSB0 9600 8N2 unit 3, timeout 0.5 s``),
then a table with name, table:address, type, raw registers in hex (with ``--raw`` also in
decimal), value, unit, quality or error; then the PLC watchdog line and a summary (``all 5
signals GOOD`` or ``2 of 5 signals BAD: temp_a (timeout); temp_b (...)``). With ``--json`` exactly::

    {"signals": {NAME: {"raw": [int, ...] | bool | null, "value": float | null,
                        "unit": str, "quality": "good" | "bad"}},
     "plc_watchdog": {"timeout_ms": int | null, "expected_ms": int, "matches": bool,
                      "latched": bool | null}}

(with ``--json`` the reasons for BAD readings, the summary and a watchdog that does not
match go to stderr, one a line; the registers are integers, so ``--raw`` changes nothing).
It also reads the PLC's communication watchdog registers and says whether the timeout
matches the profile and whether it has fallen back.

Exit status (:data:`EXIT_CODES`, the ``--help`` epilog): 0 every signal GOOD and the
watchdog as the profile expects, 1 some signal BAD or the watchdog not as expected, 2 the
profile or an override has problems (each printed as ``FILE: KEY.PATH: reason``), 3 the PLC
cannot be reached (``cannot reach the PLC at WHERE: WHY`` on stderr, e.g. "no such device:
/dev/ttyX — check the profile's plc.device / --rtu").

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
    describe_link,
    json_option,
    profile_options,
    report_problems,
)
from agent.config.profile.load import load_profile, with_connection, with_link_settings
from agent.model.errors import ProfileError
from agent.model.profile import Profile, Signal, TcpLink
from agent.model.readings import Quality, Reading

if TYPE_CHECKING:
    from rich.table import Table as RichTable



EXIT_CODES = """exit status:
  0  every signal GOOD and the PLC watchdog as the profile expects
  1  some signal BAD (the summary names each with its reason), or the watchdog not as expected
  2  bad usage, profile or override (FILE: KEY.PATH: reason, or FILE: --OPTION: reason)
  3  the PLC cannot be reached (cannot reach the PLC at WHERE: WHY)"""


def options(parser: argparse.ArgumentParser) -> None:
    profile_options(parser)
    first = parser.add_argument_group("first contact (override the profile's [plc] for this read)")
    first.add_argument("--unit", metavar="U", default=None,
                       help="unit id (slave address) 0..247 instead of plc.unit_id")
    first.add_argument("--baud", metavar="B", default=None,
                       help="serial baud rate (RTU only), e.g. 9600")
    first.add_argument("--parity", metavar="N|E|O", default=None,
                       help="serial parity none/even/odd (RTU only; stop bits then follow "
                            "the Modbus rule: 2 for N, else 1)")
    first.add_argument("--stopbits", metavar="1|2", default=None,
                       help="serial stop bits (RTU only)")
    first.add_argument("--timeout", metavar="S", default=None,
                       help="seconds to wait for each reply (default plc.timeout_s)")
    parser.add_argument("--raw", action="store_true",
                        help="show the registers in decimal as well as hex")
    json_option(parser)


def _load(ns: argparse.Namespace) -> Profile:
    profile = load_profile(ns.profile)
    if ns.tcp or ns.rtu:
        profile = with_connection(profile, tcp=ns.tcp, rtu=ns.rtu)
    return with_link_settings(profile, unit=ns.unit, baud=ns.baud, parity=ns.parity,
                              stopbits=ns.stopbits, timeout=ns.timeout)


def _raw_text(raw: tuple[int, ...] | bool | None, decimal: bool = False) -> str:
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if decimal:
        return " ".join(f"{r:04X}={r}" for r in raw)
    return " ".join(f"{r:04X}" for r in raw)


def summary(profile: Profile, readings: dict[str, Reading]) -> str:
    """``all N signals GOOD``, or ``K of N signals BAD: a (reason); b, c (other reason)``:
    the BAD ones in profile order, those with the same reason named together."""
    by_reason: dict[str, list[str]] = {}
    for s in profile.signals:
        r = readings[s.name]
        if r.quality is not Quality.GOOD:
            by_reason.setdefault(r.error or "no reason given", []).append(s.name)
    total = len(profile.signals)
    if not by_reason:
        return f"all {total} signals GOOD"
    count = sum(len(names) for names in by_reason.values())
    return (f"{count} of {total} signals BAD: "
            + "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items()))


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


def _table(profile: Profile, readings: dict[str, Reading], decimal: bool) -> RichTable:
    # rich only when a table is drawn: it stays out of the running agent's memory
    from rich.table import Table as RichTable  # noqa: PLC0415

    t = RichTable(title=profile.source)
    raw = "raw hex=dec" if decimal else "raw"
    for col in ("name", "table:address", "type", raw, "value", "unit", "quality"):
        t.add_column(col, justify="right" if col in (raw, "value") else "left")
    for s in profile.signals:
        r = readings[s.name]
        quality = "good" if r.quality is Quality.GOOD else f"[red]BAD[/red] {r.error or ''}"
        t.add_row(
            s.name,
            _where(s),
            _type(s),
            _raw_text(r.raw, decimal),
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


WatchdogRead = tuple[int | None, bool | None]


async def _read(profile: Profile) -> tuple[dict[str, Reading], WatchdogRead] | str:
    """The readings and the PLC watchdog's (timeout ms, latched), or why the PLC could not
    be reached."""
    # the Modbus stack only when reading: building the parser and `check` load none of it
    from agent.io.modbus.client import PlcClient  # noqa: PLC0415

    client = PlcClient(profile)
    try:
        if not await client.connect():
            return client.last_connect_error or "connect failed"
        readings = await client.read_signals()
        return readings, await client.read_plc_watchdog()
    finally:
        await client.close()


def _watchdog_doc(profile: Profile, read: WatchdogRead) -> dict[str, Any]:
    expected = profile.plc_watchdog.expected_timeout_ms
    return {"timeout_ms": read[0], "expected_ms": expected,
            "matches": read[0] == expected, "latched": read[1]}


def _watchdog_line(profile: Profile, read: WatchdogRead) -> str:
    """One sentence on the PLC's communication watchdog as read back."""
    wd = profile.plc_watchdog
    where = f"holding {wd.timeout_address}, unit {wd.unit_id}"
    if read[0] is None:
        return (f"PLC communication watchdog: timeout register ({where}) could not be read: "
                "the agent would hold the plant safe")
    latch = {None: "", True: "; it has FALLEN BACK (latched)", False: "; not fallen back"}
    if read[0] == wd.expected_timeout_ms:
        return (f"PLC communication watchdog: timeout {read[0]} ms ({where}) matches the "
                f"profile{latch[read[1]]}")
    return (f"PLC communication watchdog: timeout {read[0]} ms ({where}) does NOT match the "
            f"profile's expected_timeout_ms = {wd.expected_timeout_ms}: set the PLC to "
            f"{wd.expected_timeout_ms} ms, or the profile to {read[0]}{latch[read[1]]}")


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
    result = asyncio.run(_read(profile))
    if isinstance(result, str):
        link = profile.plc.link
        where = f"{link.host}:{link.port}" if isinstance(link, TcpLink) else link.device
        sys.stderr.write(f"cannot reach the PLC at {where}: {result}\n")
        return EXIT_UNREACHABLE
    readings, watchdog = result
    bad = [r for r in readings.values() if r.quality is not Quality.GOOD]
    watchdog_ok = watchdog[0] == profile.plc_watchdog.expected_timeout_ms and not watchdog[1]
    if ns.json:
        doc = {**_json_doc(profile, readings), "plc_watchdog": _watchdog_doc(profile, watchdog)}
        sys.stdout.write(json.dumps(doc) + "\n")
        for r in bad:
            sys.stderr.write(f"{r.name}: {r.error}\n")
        if bad:
            sys.stderr.write(summary(profile, readings) + "\n")
        if not watchdog_ok:
            sys.stderr.write(_watchdog_line(profile, watchdog) + "\n")
    else:
        from rich.console import Console  # noqa: PLC0415 - rich only here, as in _table

        longest = max((len(r.error or "") for r in bad), default=0)  # a reason on one line
        width = max(120, Console().width, 90 + longest)
        print(f"PLC at {describe_link(profile)}, timeout {profile.plc.timeout_s:g} s")
        Console(width=width).print(_table(profile, readings, ns.raw))
        print(_watchdog_line(profile, watchdog))
        print(summary(profile, readings))
    return EXIT_FAILED if bad or not watchdog_ok else EXIT_OK
