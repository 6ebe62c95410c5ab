"""Floor baseline of the footprint benchmark: the agent's I/O pattern alone, sampled the same way.

``python -m sim.bench floor [--rate HZ] [--settle S] [--window S] [--json]``

Why it exists: on a small VM every sleep and wake-up costs CPU charged to the thread that
wakes, far more than on bare metal (a few us there). Measured on the 2-core development VM
(``time.thread_time()`` before and after 100 iterations, divided by 100; three runs, other
work running, load average about 2): ``time.sleep(0.1)`` costs 39..43 us of CPU per wake,
one ``await asyncio.sleep(0.1)`` iteration 164..198 us. An agent at 10 Hz wakes at least
20 times a second (its tick, the twin's heartbeat) and more for each reply it awaits, so
"N % of a core" mixes the agent's own work with what the machine charges for the I/O
pattern itself. The floor is that pattern and nothing else (``sim.bench.floorprog``: one
asyncio loop; per tick one Modbus TCP read of the profile's signal block and one heartbeat
write, each reply awaited; one TLS connection to the twin, the agent's hello sent, its
heartbeats read and decoded), and ``cpu_ratio = agent / floor`` is the figure that travels
between machines.

A run: the floor starts as its own process against a sim PLC and sim twin (a fresh
``sim.stack.Stack`` without an agent, the shipped sim-tank profile: the floor reads the same
block and writes the same register at every rate); once it says ``ready`` it runs for
``--settle`` s, then it is sampled for ``--window`` s from ``/proc`` exactly as the footprint
samples the agent (``sim.bench.procstat``). The run fails (FloorError) if the floor exits
before the end, if its tick rate counted at the sim PLC's write log (accepted heartbeat
writes in the window) is off the asked rate by more than 10 % (at least 2 ticks), if the
twin did not record its hello, or if it read no heartbeat.

``python -m sim.bench footprint`` runs the floor at each rate in the agent's own Stack,
after the agent's window, once the agent is stopped (so the two never share the CPU): the
same sim PLC and sim twin processes with the profile of that rate, so the floor is served
exactly as the agent was, without a second plant start-up, and the same settle and window
(``beside`` names the keys). The sim PLC's watchdog latches while no heartbeat comes in
between the two; it takes writes while latched, so the floor's count is not affected.

Result (``run``): ``bench``, ``rate_hz``, ``settle_s``, ``rss_mb`` (largest VmRSS),
``hwm_mb``, ``cpu_percent`` (of one core), ``ticks_per_s`` (at the PLC), ``window_s``,
``threads`` (at the end of the window: 1), ``overruns`` and ``heartbeats_read`` (the floor's
own counts over its whole run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from agent.config.profile.load import load_profile
from agent.io.modbus.client import PlcClient, read_request
from agent.model.profile import Profile
from sim.bench.floorprog import FloorPlan
from sim.bench.native import heartbeat_writes
from sim.bench.procstat import ProcessGone, sample_window
from sim.bench.stats import report
from sim.plc.harness import HarnessError
from sim.stack import DEVICE_ID, Proc, Stack

log = logging.getLogger(__name__)

RATE_TOLERANCE = 0.10  # of the asked ticks in the window, at least MIN_TICK_SLACK
MIN_TICK_SLACK = 2


class FloorError(RuntimeError):
    """The floor did not run as asked (see the module docstring for each case)."""


def floor_plan(stack: Stack, profile: Profile, rate_hz: float) -> FloorPlan:
    """The floor's plan for ``stack``: the agent's signal reads (``PlcClient``'s own plan),
    its heartbeat register, its ``[twin]`` settings and the profile's heartbeat timing."""
    reads = tuple((b.unit_id, read_request(b).fc, b.address, b.count)
                  for b in PlcClient(profile).signal_blocks)
    wd, timing = profile.plc_watchdog, profile.timing
    return FloorPlan(
        rate_hz=rate_hz, plc_host="127.0.0.1", plc_port=stack.plc.port,
        timeout_s=profile.plc.timeout_s, reads=reads, heartbeat=(wd.unit_id, wd.heartbeat_address),
        twin_host="127.0.0.1", twin_port=stack.twin.port, server_name="localhost",
        ca_file=str(stack.pki.ca_cert), cert_file=str(stack.pki.device_cert),
        key_file=str(stack.pki.device_key), device_id=DEVICE_ID,
        heartbeat_timeout_s=timing.heartbeat_timeout_s, heartbeat_late_s=timing.heartbeat_late_s)


def check_rate(ticks: int, rate_hz: float, wall_s: float,
               tolerance: float = RATE_TOLERANCE) -> None:
    """FloorError if ``ticks`` in ``wall_s`` is off ``rate_hz`` by more than ``tolerance``
    of the ticks asked (at least MIN_TICK_SLACK ticks)."""
    want = rate_hz * wall_s
    if abs(ticks - want) > max(MIN_TICK_SLACK, tolerance * want):
        raise FloorError(f"the floor ticked {ticks} times in {wall_s:.2f} s at the PLC, "
                         f"asked {rate_hz:g} Hz ({want:.0f} ticks)")


def measure(stack: Stack, profile: Profile, rate_hz: float, settle_s: float,
            window_s: float, *, tolerance: float = RATE_TOLERANCE) -> dict[str, Any]:
    """Run the floor against ``stack``'s sim PLC and sim twin (no agent may be running) and
    sample it; the per-run figures (FloorError, HarnessError if it does not start).
    ``tolerance``: of the tick rate, for :func:`check_rate`."""
    plan = stack.workdir / f"floor-{rate_hz:g}hz.json"
    plan.write_text(floor_plan(stack, profile, rate_hz).to_json())
    since = time.monotonic()
    proc = Proc([sys.executable, "-m", "sim.bench.floorprog", str(plan)],
                plan.with_suffix(".stderr"), ready=True)
    try:
        time.sleep(settle_s)
        try:
            win = sample_window(proc.pid, window_s)
        except ProcessGone:
            win = None
        if win is None or not proc.alive():
            raise FloorError(f"the floor exited during the window: {proc.stderr()[-2000:]}")
    finally:
        code = proc.stop()
        assert proc.proc.stdout is not None
        out = proc.proc.stdout.read().decode(errors="replace").strip()
        proc.proc.stdout.close()
    if code != 0:
        raise FloorError(f"the floor exited with {code}: {proc.stderr()[-2000:]}")
    counts = json.loads(out.splitlines()[-1])
    wd = profile.plc_watchdog
    beats = [float(r["t"]) for r in heartbeat_writes(stack.plc.write_log(),
                                                     wd.heartbeat_address, wd.unit_id)]
    check_rate(sum(1 for t in beats if win.first.t <= t <= win.last.t), rate_hz, win.wall_s,
               tolerance)
    hellos = [h for h in stack.twin.stats(last=10)["agent_hellos"] if h[0] >= since]
    if not any(h[2] == DEVICE_ID for h in hellos):
        raise FloorError(f"the twin recorded no hello from the floor (since {since:.3f})")
    if counts["heartbeats"] < 1:
        raise FloorError("the floor read no twin heartbeat")
    return {**win.figures(beats), "threads": win.last.threads,
            "overruns": counts["overruns"], "heartbeats_read": counts["heartbeats"]}


def beside(floor: dict[str, Any], agent_cpu_percent: float) -> dict[str, Any]:
    """The footprint's floor keys for one rate (``floor_*`` and ``cpu_ratio``, agent /
    floor; None when the floor's CPU is below what the window resolves)."""
    cpu = floor["cpu_percent"]
    return {
        "floor_cpu_percent": cpu, "floor_rss_mb": floor["rss_mb"],
        "floor_hwm_mb": floor["hwm_mb"], "floor_ticks_per_s": floor["ticks_per_s"],
        "cpu_ratio": round(agent_cpu_percent / cpu, 2) if cpu > 0 else None,
    }


def run(rate_hz: float, settle_s: float, window_s: float) -> dict[str, Any]:
    """The floor alone in a fresh Stack (see the module docstring); the result dict."""
    with Stack(start_agent=False) as stack:
        got = measure(stack, load_profile(stack.profile_path), rate_hz, settle_s, window_s)
    return {"bench": "floor", "rate_hz": rate_hz, "settle_s": settle_s, **got}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=10.0, help="ticks per second (10)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after ready (5)")
    p.add_argument("--window", type=float, default=20.0, help="sampling window, s (20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if not 0 < args.rate <= 1000 or args.settle < 0 or args.window <= 0:
        p.error("--rate must be in (0, 1000], --settle >= 0 and --window > 0")
    try:
        result = run(args.rate, args.settle, args.window)
    except (FloorError, HarnessError, TimeoutError) as exc:
        print(f"floor: {exc}", file=sys.stderr)
        return 1
    return report(result, args.json)
