"""``twinguard drill --scenario NAME``: rehearse a fault in the running agent's decision core.

The agent (found by its status socket, as ``twinguard status`` and ``ack`` find it:
``--state-dir``) plays the scenario on a copy of its decision state, with simulated time, and
answers with the report (``agent.core.drillreport``); nothing is written to the PLC, the
LEDs, the twin or the spool, and the drill goes to the agent's audit log with who asked.
``--list`` names the scenarios (``agent.core.drills``) without asking the agent.

``twinguard drill --sim`` is the other kind of drill: a seeded campaign of real faults on the
simulated plant (``sim.drill``, as ``python -m sim drill``; ``agent.cli.drillsim``), never on
a real one: it starts its own sim PLC, sim twin and agent.

Output: the report as text (default), as JSON on stdout (``--json``), and with ``-o FILE``
also written to FILE: ``.json`` the same JSON, ``.html`` a self-contained page (a timeline
and the table of steps; ``agent.cli.drillpage``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ask_agent,
    json_option,
    state_dir_option,
)
from agent.core.drillreport import DrillReport, Step, report_from_dict
from agent.core.drills import SCENARIOS
from agent.io.status_client import request_drill
from agent.model.errors import ProtocolError

EXIT_CODES = """exit status:
  0  the agent rehearsed the drill (whatever the rehearsal found); --list
  1  the agent refused the drill (the reason is printed: a drill already running, the agent
     still starting, a profile without what the scenario needs), no access to its socket,
     a timeout, a reply that makes no sense, or FILE cannot be written
  2  bad usage (no or an unknown scenario, -o FILE not .json or .html)
  3  the agent is not running (no socket in the state directory, or nothing listens on it)
with --sim: 0 every fault ok; 1 a fault missed, late or false, or the plant did not start;
  2 bad usage"""

OUTPUTS = (".json", ".html")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", "-s", metavar="NAME", default=None,
                        help="the fault to rehearse (--list names them)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--target", metavar="NAME", default=None,
                        help="the group (sensor-*) or trip (trip) to play on (default: the "
                             "first in the profile that fits)")
    parser.add_argument("-o", "--output", metavar="FILE", type=Path, default=None,
                        help="also write the report to FILE (.json or .html)")
    json_option(parser)
    state_dir_option(parser)
    sim = parser.add_argument_group(
        "--sim: a fault campaign on the simulated plant (its own processes; never a real one)")
    sim.add_argument("--sim", action="store_true",
                     help="run the campaign (python -m sim drill) instead of a rehearsal")
    sim.add_argument("--faults", type=int, default=200, metavar="N",
                     help="how many faults to draw (default 200)")
    sim.add_argument("--seed", type=int, default=None, metavar="S",
                     help="the seed that reproduces the sequence (default: drawn, printed)")
    sim.add_argument("--kind", action="append", default=None, metavar="NAME",
                     help="play exactly this fault kind (repeatable) instead of drawing")
    sim.add_argument("--workdir", metavar="DIR", default=None,
                     help="where the plant keeps its files (kept when a fault is not ok)")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"twinguard drill: {message}", file=sys.stderr)
    return code


def drill(args: argparse.Namespace) -> int:
    """Rehearse a fault in the running agent's decision core (nothing is written), or with
    ``--sim`` run a fault campaign on the simulated plant."""
    if args.sim:
        from agent.cli.drillsim import campaign  # noqa: PLC0415 - the sim plant: only if asked

        return campaign(args)
    if args.list:
        width = max(len(n) for n in SCENARIOS)
        for name, scenario in SCENARIOS.items():
            print(f"{name:<{width}}  {scenario.summary}")
        return EXIT_OK
    if args.scenario is None:
        return _fail("which scenario? --scenario NAME (twinguard drill --list names them)")
    if args.scenario not in SCENARIOS:
        return _fail(f"unknown scenario {args.scenario!r}: one of {', '.join(SCENARIOS)} "
                     "(twinguard drill --list)")
    out: Path | None = args.output
    if out is not None and out.suffix.lower() not in OUTPUTS:
        return _fail(f"-o {out}: the report is written as .json or .html")

    def ask(path: Path) -> int:
        raw = request_drill(path, args.scenario, args.target)
        try:
            report = report_from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the drill reply is not a report ({exc!r})") from None
        if out is not None:
            try:
                out.write_text(_file_text(report, out))
            except OSError as exc:
                return _fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_FAILED)
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(render(report))
            if out is not None:
                print(f"\nreport written to {out}")
        return EXIT_OK

    return ask_agent("drill", args.state_dir, ask)


def _file_text(report: DrillReport, out: Path) -> str:
    if out.suffix.lower() == ".json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    from agent.cli.drillpage import page  # noqa: PLC0415 - only for -o FILE.html

    return page(report)


# --- text ------------------------------------------------------------------------------------

def _writes(step: Step) -> list[str]:
    """One line per output: its value (raw) and why; a ramp as first -> last in N writes."""
    by: dict[str, list[int]] = {}
    for i, w in enumerate(step.writes):
        by.setdefault(w.output, []).append(i)
    lines = []
    for name, idx in by.items():
        first, last = step.writes[idx[0]], step.writes[idx[-1]]
        raw = "" if last.raw is None else f" (raw {_raw_text(last.raw)})"
        if len(idx) > 1 and first.value != last.value:
            value = f"{first.value:g} -> {last.value:g} in {len(idx)} writes"
        elif len(idx) > 1:
            value = f"{last.value:g}, {len(idx)} times"
        else:
            value = f"{last.value:g}"
        lines.append(f"{name} = {value}{raw}: {last.why}")
    return lines


def _raw_text(raw: tuple[int, ...] | bool) -> str:
    if isinstance(raw, bool):
        return "coil on" if raw else "coil off"
    return " ".join(str(r) for r in raw)


def render(r: DrillReport) -> str:
    """The report as plain text (what ``twinguard drill`` prints)."""
    pad = " " * 20
    lines = [
        f"drill {r.scenario}: {r.summary}",
        f"rehearsed in the agent's decision core only: nothing was written ({r.profile})",
        f"start: {r.start_state.upper()}, twin authority {r.start_authority.upper()}, twin "
        f"{r.start_link}, mode {r.mode}; a poll every {r.poll_period_s:g} s",
        "",
        "    t (s)  what       (plant / authority / twin after it)",
    ]
    for s in r.steps:
        lines.append(f"{s.t:9.3f}  {s.kind:<9}  {s.text}  "
                     f"[{s.state} / {s.authority} / {s.link}]")
        lines += [f"{pad}{w}" for w in _writes(s)]
        lines += [f"{pad}audit: {a}" for a in s.audit]
    lines += ["", f"end after {r.duration_s:g} s: {r.end_state.upper()}, twin authority "
                  f"{r.end_authority.upper()}, twin {r.end_link}", f"outcome: {r.outcome}"]
    if r.operator:
        lines += ["", "what the operator has to do:"]
        lines += [f"  {i}. {text}" for i, text in enumerate(r.operator, 1)]
    lines += ["", "assumed:"] + [f"  - {a}" for a in r.assumptions]
    return "\n".join(lines)
