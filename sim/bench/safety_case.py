"""``python -m sim.bench safety-case --drill REPORT.json``: the generated safety case.

One row per hazard: what fails → the layer of defence that answers it (DESIGN.md, "Layers
of defence") → what makes it happen (the drill campaign's fault kinds, ``sim.drill.faults``,
and the tests that make it happen for real) → the figure measured, from the latest results:
the campaign report (``python -m sim drill --json -o REPORT.json``) its faults of those
kinds, how many were missed, late or false, and the reaction past the deadline (p99 and
the worst), with the date of the run. A hazard no drill kind makes happen says where its
evidence is instead (a test, or only a real Pi).

Output: the Markdown table (stdout, or ``-o FILE.md``), ``--json`` the rows as data. The
README shows the table of the latest committed run (:data:`LATEST`) between the markers
``<!-- safety-case:begin -->`` and ``<!-- safety-case:end -->``; a test checks they agree,
so a new run is committed together with its table (``--readme`` rewrites that block).
Exit 0 when every drilled hazard held (0 missed, 0 late, 0 false), 1 otherwise, 2 on bad
input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LATEST = Path(__file__).resolve().parent / "results" / "drill-latest.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- safety-case:begin -->", "<!-- safety-case:end -->"


@dataclass(frozen=True)
class Hazard:
    """A hazard and its evidence: ``kinds`` are drill fault kinds, ``tests`` pytest ids
    (``path::function``) that make it happen; ``elsewhere`` says where the figure is when
    no drill kind makes it happen."""

    what: str
    layer: str
    action: str
    kinds: tuple[str, ...]
    tests: tuple[str, ...]
    elsewhere: str = ""


E2E = "tests/e2e/"
HAZARDS: tuple[Hazard, ...] = (
    Hazard("the twin stops (frozen, killed, says bye, unhealthy)",
           "heartbeat monitor", "authority sheds per output; shadow writes nothing",
           ("twin-frozen", "twin-killed", "twin-bye", "twin-unhealthy"),
           (E2E + "test_e2e_failsafe.py::test_twin_silence_drives_the_safe_state_at_the_plc",
            E2E + "test_e2e_authority.py::test_active_local_ramps_to_the_local_value_at_max_rate",
            E2E + "test_e2e_fleet.py::"
            "test_a_frozen_twin_drives_the_safe_state_within_t_plus_one_poll")),
    Hazard("the twin link breaks (half-open, dropped, garbage frames)",
           "heartbeat monitor + twin link", "the session ends; authority sheds",
           ("link-half-open", "link-drop", "twin-garbage"),
           (E2E + "test_e2e_failsafe.py::test_half_open_twin_is_lost_then_reconnected",
            E2E + "test_e2e_failsafe.py::test_garbage_frame_ends_the_connection_never_the_agent")),
    Hazard("the twin is slow but within its deadline", "heartbeat monitor",
           "nothing (no false shed)", ("twin-slow",),
           (E2E + "test_e2e_failsafe.py::test_jitter_up_to_half_the_timeout_never_trips",)),
    Hazard("one redundant sensor fails (drift, offset, out of range, dropout, stuck)",
           "voting",
           "the channel is excluded, DEGRADED (the twin's authority sheds), production goes on",
           ("sensor-drift", "sensor-offset", "sensor-out-of-range", "sensor-dropout",
            "sensor-stuck"),
           (E2E + "test_e2e_failsafe.py::test_one_sensor_of_three_masked_two_trip",)),
    Hazard("a redundant group below its minimum", "voting", "FAILSAFE and the safe set",
           ("sensor-2oo3-lost",),
           (E2E + "test_e2e_failsafe.py::test_one_sensor_of_three_masked_two_trip",)),
    Hazard("a local trip (voted temperature above its limit)", "trips",
           "FAILSAFE regardless of the twin", ("sensor-trip",),
           (E2E + "test_e2e_failsafe.py::test_overtemperature_trip_fires",)),
    Hazard("the PLC stops answering, answers too late or wrongly", "Modbus client + safety",
           "FAILSAFE; the safe set confirmed at the PLC before NORMAL",
           ("plc-silent", "plc-slow", "plc-malformed"),
           (E2E + "test_e2e_safe_confirm.py::"
            "test_a_safe_set_lost_to_a_silent_plc_is_at_the_plc_before_normal_every_time",
            E2E + "test_modbus_hostile_run.py::test_agent_never_trusts_a_malformed_reply")),
    Hazard("the PLC is slow within budget or drops the connection once",
           "Modbus client", "nothing (no false trip); it reconnects",
           ("plc-slow-within", "plc-drop"), ()),
    Hazard("the agent's Python hangs (GIL held)", "native watchdog (C, no GIL)",
           "the pre-encoded safe frame; nothing stale after it", ("python-hang",),
           (E2E + "test_e2e_chain.py::test_every_layer_in_turn",
            E2E + "test_e2e_stale_write.py::"
            "test_no_stale_write_follows_the_native_frame_at_the_plc",
            "tests/firmware/test_watchdog_hang.py::test_fires_while_the_gil_is_held")),
    Hazard("the agent dies (kill -9), also while spooling", "the PLC's own watchdog",
           "the PLC falls back to its program; no committed record lost",
           ("agent-kill9", "agent-kill9-spooling"),
           (E2E + "test_e2e_twin_control.py::test_kill_9_fifty_times_loses_no_committed_record",
            "tests/io/test_spool_crash.py::test_kill_9_never_loses_a_reported_batch_nor_reuses_a_seq")),
    Hazard("the agent dies while a configuration is applied", "config store + audit",
           "no configuration in force without its audit record", (),
           ("tests/runtime/test_configpush_crash.py::test_no_config_in_force_without_its_audit_record",),
           "its test (not yet a drill kind)"),
    Hazard("a forged or replayed configuration or command", "signed bundles, signed envelopes",
           "refused, counted, audited; the plant unchanged", (),
           (E2E + "test_e2e_config_push.py::"
            "test_every_refusal_is_seen_from_outside_and_the_plant_stays_safe",
            E2E + "test_e2e_fleet.py::"
            "test_unsigned_and_replayed_heartbeats_are_ignored_and_counted"),
           "its tests (not a drill kind)"),
    Hazard("the whole board wedges", "hardware watchdog + systemd WatchdogSec",
           "reboot; the agent starts without disturbing the plant", (), (),
           "only on a real Pi (/dev/watchdog)"),
)


@dataclass(frozen=True)
class Row:
    """One hazard's line of the safety case (figures None where no drill made it happen)."""

    hazard: Hazard
    faults: int
    missed: int
    late: int
    false: int
    p99_ms: float | None
    max_ms: float | None
    date: str

    @property
    def held(self) -> bool:
        return self.missed == self.late == self.false == 0

    def to_json(self) -> dict[str, Any]:
        h = self.hazard
        return {"hazard": h.what, "layer": h.layer, "action": h.action, "kinds": list(h.kinds),
                "tests": list(h.tests), "elsewhere": h.elsewhere, "faults": self.faults,
                "missed": self.missed, "late": self.late, "false": self.false,
                "reaction_p99_ms": self.p99_ms, "reaction_max_ms": self.max_ms,
                "date": self.date, "held": self.held}


class ReportError(ValueError):
    """The campaign report cannot be read as one (the message says what is wrong)."""


def rows(report: Mapping[str, Any], date: str) -> list[Row]:
    """The safety case of one campaign report (its ``totals`` per fault kind)."""
    totals = report.get("totals")
    if not isinstance(totals, Mapping):
        raise ReportError("no 'totals' object: not a `python -m sim drill --json` report")
    out = []
    for h in HAZARDS:
        drilled = [totals[k] for k in h.kinds if k in totals]
        p99s = [t["reaction_ms"]["p99"] for t in drilled
                if t.get("reaction_ms", {}).get("p99") is not None]
        maxes = [t["reaction_ms"]["max"] for t in drilled
                 if t.get("reaction_ms", {}).get("max") is not None]
        out.append(Row(h, sum(int(t["count"]) for t in drilled),
                       sum(int(t["missed"]) for t in drilled),
                       sum(int(t["late"]) for t in drilled),
                       sum(int(t["false"]) for t in drilled),
                       max(p99s) if p99s else None, max(maxes) if maxes else None, date))
    return out


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def markdown(table: Sequence[Row], seed: Any = None) -> str:
    """The table as Markdown (what the README shows)."""
    lines = ["| what fails | layer of defence | what happens | made to happen by | measured |",
             "|---|---|---|---|---|"]
    for r in table:
        h = r.hazard
        by = [f"drill: {', '.join(f'`{k}`' for k in h.kinds)}"] if h.kinds else []
        by += [f"`{t.split('::')[-1]}`" for t in h.tests]
        if r.faults:
            verdict = "held" if r.held else f"**FAILED**: {r.missed} missed, {r.late} late, " \
                                             f"{r.false} false"
            timing = ("nothing written, as expected" if r.p99_ms is None else
                      f"past the deadline p99 {_ms(r.p99_ms)}, max {_ms(r.max_ms)}")
            measured = f"{r.faults} faults, {verdict}; {timing} ({r.date})"
        elif h.kinds:
            measured = f"not drawn in the run of {r.date}"
        else:
            measured = h.elsewhere
        lines.append(f"| {h.what} | {h.layer} | {h.action} | {'; '.join(by) or '—'} | "
                     f"{measured} |")
    if seed is not None:
        lines.append("")
        lines.append(f"From `python -m sim drill` seed {seed} "
                     f"(`sim/bench/results/drill-latest.json`).")
    return "\n".join(lines) + "\n"


def load(path: Path) -> tuple[dict[str, Any], str]:
    """The report at ``path`` and the date of its run (its ``date`` key, else the file's
    modification date); ReportError naming the file otherwise."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (run `python -m sim drill --json -o "
                          f"{path}` first)") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not a JSON report: {exc}") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path}: not a JSON object")
    date = report.get("date")
    if not isinstance(date, str):
        date = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
    return report, date


def readme_block(text: str) -> str:
    """The table between the README's safety-case markers ("" if there are none)."""
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench safety-case",
                                     description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--drill", type=Path, default=LATEST,
                        help=f"a campaign report (default {LATEST.relative_to(ROOT)})")
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    parser.add_argument("-o", "--output", type=Path, help="write the Markdown here")
    parser.add_argument("--readme", action="store_true",
                        help="rewrite the README's safety-case block with this table")
    args = parser.parse_args(argv)
    try:
        report, date = load(args.drill)
        table = rows(report, date)
    except (ReportError, KeyError, TypeError) as exc:
        print(f"safety-case: {exc}", file=sys.stderr)
        return 2
    text = markdown(table, report.get("seed"))
    if args.json:
        print(json.dumps({"date": date, "seed": report.get("seed"),
                          "rows": [r.to_json() for r in table]}, indent=2))
    elif args.output is None and not args.readme:
        print(text, end="")
    try:
        if args.output is not None:
            args.output.write_text(text)
        if args.readme:
            old = README.read_text()
            if not readme_block(old):
                print(f"safety-case: {README} has no {BEGIN} ... {END} block", file=sys.stderr)
                return 2
            README.write_text(old[:old.index(BEGIN) + len(BEGIN)] + "\n" + text
                              + old[old.index(END):])
    except OSError as exc:
        print(f"safety-case: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0 if all(r.held for r in table) else 1
