"""The demo run: start the simulated plant, run the scenarios, report (see ``sim.demo.cli``).

Order of work: pick the scenarios (unknown name: exit 2), make the signing keys with the
real CLI (:mod:`sim.demo.signing`), start ``sim.stack.Stack`` with the demo profile
(sim-tank, auto recovery, short hold-off) and the trusted keys in the agent's factory
configuration (``[[trust]]``), start the recorder and the view, wait for the agent's first
NORMAL, start the process (:mod:`sim.demo.plant`: the operator's setpoint at the HMI, the
twin's recommendations) and wait for the tank to settle at the setpoint under the PLC
program, run each scenario (an agent found dead between scenarios is restarted, so one
failure does not take the rest down), stop, draw the timeline, print the table (or the
JSON), exit 0 iff every scenario that ran passed (and one did). ``--quick`` shortens the
twin outages and the interludes (:data:`sim.demo.context.QUICK`) for tests.

A ``--workdir`` that already holds a demo's agent state (``state/``: its pushed
configuration, versions and audit log) is refused (exit 2): a second run there would start
from the first run's configuration and keys.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from agent.config.profile.load import load_profile
from sim.demo import timeline
from sim.demo.context import (
    QUICK,
    WAIT_S,
    DemoContext,
    Durations,
    ScenarioResult,
    Skipped,
    agent_running,
    stop_successors,
)
from sim.demo.plant import start_process, wait_settled
from sim.demo.record import ConfigSeen, Recorder, StatusSeen
from sim.demo.scenarios import FAULT_INJECTION_ENV, SCENARIOS, demo_profile_text, run_scenario
from sim.demo.signing import Signer, SigningError
from sim.demo.view import LiveView, PlainView, View
from sim.plc.harness import HarnessError
from sim.stack import DEVICE_ID, Stack

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def select(names: Sequence[str] | None) -> list[str]:
    """The scenarios to run, in table order; ValueError naming an unknown one."""
    if not names:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)} "
                         f"(known: {', '.join(SCENARIOS)})")
    return [n for n in SCENARIOS if n in names]


def summary(results: Sequence[ScenarioResult | Skipped], timeline_path: Path) -> dict[str, Any]:
    """The ``--json`` object (see ``sim.demo.cli``)."""
    ran = [r for r in results if isinstance(r, ScenarioResult)]
    return {
        "passed": bool(ran) and all(r.passed for r in ran),
        "scenarios": [{"name": r.name, "passed": r.passed,
                       "reaction_ms": None if r.reaction_ms is None
                       else round(r.reaction_ms, 3),
                       "figures": dict(r.figures), "detail": r.detail} for r in ran],
        "skipped": [{"name": r.name, "reason": r.reason} for r in results
                    if isinstance(r, Skipped)],
        "timeline": str(timeline_path),
    }


def results_table(results: Sequence[ScenarioResult | Skipped]) -> Table:
    t = Table(title="twinguard demo: reaction measured at the simulated PLC")
    t.add_column("scenario", style="bold")
    t.add_column("result")
    t.add_column("reaction", justify="right")
    t.add_column("what the PLC and the twin saw")
    for r in results:
        if isinstance(r, Skipped):
            t.add_row(r.name, "[dim]skipped[/dim]", "-", f"[dim]{r.reason}[/dim]")
            continue
        verdict = "[green]PASS[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        react = "-" if r.reaction_ms is None else f"{r.reaction_ms:+.1f} ms"
        t.add_row(r.name, verdict, react, r.detail)
    return t


def main(args: argparse.Namespace) -> int:
    human: TextIO = sys.stderr if args.json else sys.stdout
    console = Console(file=human)
    try:
        names = select(args.scenario)
    except ValueError as exc:
        print(f"twinguard demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out_dir = Path(args.out).resolve()
    if args.workdir and (Path(args.workdir) / "state").exists():
        print(f"twinguard demo: {Path(args.workdir) / 'state'} holds a previous run's agent "
              "state; pass a new or empty --workdir", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="twinguard-demo-") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        live = not args.no_live and human.isatty()
        durations = QUICK if getattr(args, "quick", False) else Durations()
        try:
            results, path = _run(names, workdir, out_dir, console, live, durations=durations)
        except (HarnessError, TimeoutError, OSError, SigningError) as exc:
            print(f"twinguard demo: the simulated plant did not come up: {exc}",
                  file=sys.stderr)
            return EXIT_FAILED
    doc = summary(results, path)
    console.print(results_table(results))
    console.print(f"timeline: {path}")
    if args.json:
        print(json.dumps(doc))
    return EXIT_OK if doc["passed"] else EXIT_FAILED


def _run(names: list[str], workdir: Path, out_dir: Path, console: Console,
         live: bool, *, durations: Durations) -> tuple[list[ScenarioResult | Skipped], Path]:
    env = {FAULT_INJECTION_ENV: "1"} if "python-hang" in names else {}
    text = demo_profile_text()
    results: list[ScenarioResult | Skipped] = []
    workdir.mkdir(parents=True, exist_ok=True)
    signer = Signer.create(workdir / "keys", DEVICE_ID)
    with Stack(profile_text=text, agent_env=env, workdir=workdir,
               config_extra=signer.trust_toml) as stack:
        profile = load_profile(stack.profile_path)
        view_box: list[View] = []

        def on_new(writes: list[dict[str, Any]], statuses: list[StatusSeen],
                   configs: list[ConfigSeen]) -> None:
            if view_box:
                view_box[0].on_new(writes, statuses, configs)

        def agent_alive() -> bool:
            return agent_running(stack)

        recorder = Recorder(stack.plc.control.request, stack.twin.request, on_new=on_new,
                            agent_alive=agent_alive)
        view: View = (LiveView(profile, recorder, console, agent_alive)
                      if live else PlainView(profile, recorder, console.file))
        view_box.append(view)
        recorder.start()
        view.start()
        current = ["start-up"]

        def step(text: str) -> None:
            recorder.mark("step", current[0], text)
            view.step(text)

        ctx = DemoContext(stack, profile, step, signer, durations)
        try:
            step("wait for the agent's first NORMAL")
            stack.wait_state("normal", timeout=WAIT_S)
            start_process(stack, profile, step)
            step("wait for the tank to settle at the setpoint under the PLC program")
            wait_settled(stack)
            for i, name in enumerate(names, start=1):
                current[0] = name
                if not agent_running(stack):
                    step("the agent is not running: restart it")
                    stack.start_agent()
                view.scenario(name, i, len(names))
                recorder.mark("begin", name, name)
                result = run_scenario(name, ctx)
                recorder.mark("end", name, name)
                results.append(result)
                if isinstance(result, Skipped):
                    view.step(f"skipped: {result.reason}")
                else:
                    view.step(f"{'PASS' if result.passed else 'FAIL'}: {result.detail}")
                    if i < len(names):
                        time.sleep(durations.interlude_s)  # the plant runs on between them
            time.sleep(1.0)  # a little normal running after the last scenario, recorded
        finally:
            recorder.stop()
            view.stop()
            stop_successors(stack)
        path = timeline.write(out_dir / "timeline.svg", recorder.snapshot(), profile, results)
    return results, path
