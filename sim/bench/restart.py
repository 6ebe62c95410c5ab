"""Restart benchmark: how long is the PLC's watchdog heartbeat unwritten across a restart?

``python -m sim.bench restart [--trials N] [--baseline M] [--json]``

The sim PLC, the sim twin and the agent (``mode = "active"``) run as separate processes
(``sim.stack.Stack``) with a profile whose outputs ``hold`` on the twin's loss (no flag, no
PLC program: nothing at all is written when authority changes hands) and a PLC watchdog of
``PLC_TIMEOUT_MS`` (so that even the baseline does not trip it; its trips are counted). Once
the twin holds authority and has set the heater, each of the N trials pushes a signed bundle
that needs a restart (a ``[telemetry] window`` change, signed by an operator key in the
agent's trust store): the agent hands over to a new process of itself
(``agent.runtime.handover``). Per trial, from ``LOOKBACK_S`` before the push until the new
process reports authority REMOTE (a status sent after the old process was gone), read at
the sim PLC's write log:

* ``gap``: the longest gap between two heartbeat-register writes (the PLC watchdog's feed);
* every agent write other than the heartbeat (there must be none: the outputs untouched);
* the PLC watchdog's ``trips`` count.

The baseline, in the same process and plant: M times a plain stop (SIGTERM) of the running
agent and the start of a new ``python -m agent run``, the same gap measured from
``LOOKBACK_S`` before the stop until the new process holds authority. JSON::

    {"bench": "restart", "trials": N, "handover_p50_ms", "handover_p99_ms",
     "handover_max_ms", "baseline_trials": M, "baseline_p50_ms", "baseline_p99_ms",
     "baseline_max_ms", "ratio_p50": baseline p50 / hand-over p50, "plc_timeout_ms",
     "handover_output_writes": 0, "handover_watchdog_trips": 0, "baseline_watchdog_trips"}
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config.bundle import Bundle, signed_by
from sim.bench.reaction import bench_profile, table_removed
from sim.bench.stats import percentile, report
from sim.demo.context import stop_successors
from sim.demo.judge import heartbeat_gap
from sim.stack import DEVICE_ID, Stack, pid_running, recommend_script, wait_for

PLC_TIMEOUT_MS = 3000
HB_ADDRESS = 200  # sim-tank's plc_watchdog.heartbeat_address
KEY_ID = "bench-operator"
HEATER = 30.0
WAIT_S = 60.0
LOOKBACK_S = 0.2  # the gap's window opens this long before the push / the stop (> a poll)
SETTLE_S = 1.0  # between trials: the previous restart's gap stays out of the next window


def restart_profile() -> str:
    """sim-tank without flag or program, both outputs ``hold``, a ``PLC_TIMEOUT_MS`` PLC
    watchdog and short hold-offs."""
    text = re.sub(r"(?m)^(on_twin_loss|local_value) = .*\n", "", bench_profile())
    for table in ("plc_remote", "sim.program", "authority"):
        text = table_removed(text, table)
    text = re.sub(r"(?m)^failsafe = .*\n", lambda m: m.group(0) + 'on_twin_loss = "hold"\n',
                  text)
    text = re.sub(r"(?m)^expected_timeout_ms = .*$", f"expected_timeout_ms = {PLC_TIMEOUT_MS}",
                  text)
    return text + '\n[authority]\nreturn = "auto"\nreturn_holdoff_s = 0.3\n'


def trust_toml(key: Ed25519PrivateKey) -> str:
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return f'\n[[trust]]\nid = "{KEY_ID}"\nrole = "operator"\npublic_key = "{public}"\n'


def bundle(key: Ed25519PrivateKey, text: str, version: int) -> bytes:
    now = int(time.time())
    return signed_by(Bundle(DEVICE_ID, version, now, now + 3600, text), [(KEY_ID, key)]).encode()


def _answering_pid(stack: Stack, seen: set[int]) -> int:
    """Wait until the status socket is answered by an agent not in ``seen``; its pid."""
    def new_pid() -> int | None:
        try:
            pid = int(stack.status_json()["pid"])
        except (RuntimeError, KeyError, ValueError):
            return None
        return pid if pid not in seen else None

    pid: int = wait_for(new_pid, WAIT_S, "a new agent answering the status socket", 0.1)
    return pid


def _wait_gone(pid: int, what: str) -> None:
    wait_for(lambda: not pid_running(pid), WAIT_S, what, 0.02)


def _agent_writes(stack: Stack, since: float, until: float) -> int:
    return sum(1 for r in stack.plc.write_log() if since <= r["t"] <= until
               and r.get("source") == "modbus" and r.get("accepted", True)
               and r["address"] != HB_ADDRESS)


def _trips(stack: Stack) -> int:
    return int(stack.plc.control.state()["watchdog"]["trips"])


def _gap(stack: Stack, since: float, until: float) -> float:
    got = heartbeat_gap(stack.plc.write_log(), HB_ADDRESS, since, until)
    if got is None:
        raise RuntimeError("no heartbeat-register writes across the restart")
    return got[0]


def run(trials: int, baseline: int, log: Any) -> dict[str, Any]:
    """The benchmark (see the module docstring); its JSON object."""
    key = Ed25519PrivateKey.generate()
    handover: list[float] = []
    plain: list[float] = []
    writes = trips = base_trips = 0
    with Stack(profile_text=restart_profile(), mode="active",
               config_extra=trust_toml(key)) as stack:
        assert stack.agent is not None
        stack.wait_state("normal", timeout=WAIT_S)
        stack.wait_authority("remote", timeout=WAIT_S)
        stack.twin.request(recommend_script([(0.0, "heater_power", HEATER, 50.0)]))
        wait_for(lambda: abs(stack.plc.control.state()["outputs"]["heater_power"] - HEATER)
                 < 0.05, WAIT_S, f"heater at {HEATER:g} %")
        base = stack.config_path.read_text()
        current, seen = stack.agent.pid, {stack.agent.pid}
        for i in range(trials):
            time.sleep(SETTLE_S)
            path = stack.workdir / f"restart-{i + 1}.bundle"
            path.write_bytes(bundle(key, base + f"\n[telemetry]\nwindow = {100 + i}\n", i + 1))
            before = _trips(stack)
            t_push = time.monotonic()
            if not stack.twin.request({"cmd": "push", "path": str(path)}).get("ok"):
                raise RuntimeError("the twin could not push the bundle")
            _wait_gone(current, "the old agent lets go")
            t_gone = time.monotonic()
            current = _answering_pid(stack, seen)
            seen.add(current)
            stop_successors(stack)  # the dead ones: forgotten
            stack.successors.append(current)  # not our child: stopped by pid at the end
            t_back = stack.wait_authority("remote", since=t_gone, timeout=WAIT_S)
            handover.append(_gap(stack, t_push - LOOKBACK_S, t_back))
            n = _agent_writes(stack, t_push, t_back)
            writes += n
            trips += _trips(stack) - before
            print(f"trial {i + 1}/{trials}: hand-over gap {handover[-1] * 1000:.1f} ms, "
                  f"{n} writes (pid {current})", file=log, flush=True)
        for j in range(baseline):
            time.sleep(SETTLE_S)
            before = _trips(stack)
            t_stop = time.monotonic()
            os.kill(current, signal.SIGTERM)
            _wait_gone(current, "the agent stops")
            t_gone = time.monotonic()
            agent = stack.start_agent()
            current = agent.pid
            seen.add(current)
            t_back = stack.wait_authority("remote", since=t_gone, timeout=WAIT_S)
            plain.append(_gap(stack, t_stop - LOOKBACK_S, t_back))
            base_trips += _trips(stack) - before
            print(f"baseline {j + 1}/{baseline}: stop + start gap {plain[-1] * 1000:.1f} ms",
                  file=log, flush=True)
        stop_successors(stack)
    return summary(handover, plain, writes=writes, trips=trips, base_trips=base_trips)


def _ms(values: list[float], q: float) -> float:
    return round(percentile([v * 1000.0 for v in values], q), 3)


def summary(handover: list[float], plain: list[float], *, writes: int, trips: int,
            base_trips: int) -> dict[str, Any]:
    """The JSON object from the gaps (seconds) and counts."""
    result: dict[str, Any] = {"bench": "restart", "trials": len(handover),
                              "plc_timeout_ms": PLC_TIMEOUT_MS}
    for name, values in (("handover", handover), ("baseline", plain)):
        result[f"{name}_p50_ms"] = _ms(values, 50)
        result[f"{name}_p99_ms"] = _ms(values, 99)
        result[f"{name}_max_ms"] = _ms(values, 100)
    result["baseline_trials"] = len(plain)
    p50 = result["handover_p50_ms"]
    result["ratio_p50"] = round(result["baseline_p50_ms"] / p50, 2) if p50 > 0 else None
    result.update(handover_output_writes=writes, handover_watchdog_trips=trips,
                  baseline_watchdog_trips=base_trips)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench restart")
    p.add_argument("--trials", type=int, default=10, help="hand-over restarts (pushed bundles)")
    p.add_argument("--baseline", type=int, default=3, help="plain stop + start restarts")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.trials < 1 or args.baseline < 1:
        p.error("--trials and --baseline must be >= 1")
    result = run(args.trials, args.baseline, sys.stderr)
    return report(result, args.json)
