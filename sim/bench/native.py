"""Reaction benchmark, native path: how late does the native watchdog's safe-state write land?

``python -m sim.bench reaction --path native [--trials N] [--load N] [--json]``

What is measured: how late, past the watchdog's deadline, the native watchdog's pre-encoded
safe-state frame reaches the PLC while the agent's Python is hung, by the sim PLC's clock.
Under ``--load N`` the hogs and the sims' SCHED_FIFO priority are :mod:`sim.bench.reaction`'s
(the sims stand in for other machines and must not wait behind the hogs; their priority, 20,
is below the agent's, so they never preempt the watchdog they measure).

The sim PLC, the sim twin and the agent run as separate processes (``sim.stack.Stack``), the
agent with test-only fault injection (``TWINGUARD_FAULT_INJECTION=1``), the native watchdog
forced (``TWINGUARD_WATCHDOG=native``: an ImportError, not a silent Python fallback, if it is
not built) and ``TWINGUARD_WATCHDOG_EXIT=3`` (a fire ``_exit``\\ s the agent, as systemd would
then restart it). Per trial: a fresh agent, wait until it reports NORMAL, wait a random
fraction of a poll period, SIGUSR2 it (its main thread then holds the GIL in a catastrophic
regex for seconds), and read the sim PLC's write log, not the agent:

    deadline  = t(last PLC-watchdog heartbeat write before the hang) + watchdog_deadline_s
    lateness  = t(the watchdog's safe-state write) - deadline

Both times are the sim PLC's CLOCK_MONOTONIC stamps when the request's first byte reached
it (the write log's ``t``: its data-received callback, before decoding). The agent
kicks the watchdog right after the heartbeat write's reply has come back, so the true
deadline is later than the one above by the reply's trip and the agent's wake-up (tens to
hundreds of microseconds on loopback): the measured lateness **overstates** the watchdog's
own by that much (a conservative bias). If the hang lands between the heartbeat write and
the kick (the reply's trip and the end of the tick), the last kick followed the heartbeat
*before* that one: a lateness below ``-poll_period_s / 2`` can only mean that (the watchdog
never fires before its deadline), so :func:`measure` then takes the deadline from the
heartbeat before the last (seen in about one trial in 30 at 20 Hz).

The JSON's ``first_frame`` is the same lateness for the safe set's first frame (sim-tank:
the ``[plc_remote]`` flag; the watchdog sends each frame after the reply to the one before,
so the output's frame also waits for the PLC's answer to the flag).

The watchdog's write is told apart from the agent's by time: it is the first safe-state write
after the signal, and the agent's loop cannot write while its main thread holds the GIL (no
heartbeat write appears between the signal and the watchdog's write, which is checked).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from agent.config.profile.load import load_profile
from sim.bench.reaction import SAFE_OUTPUT, bench_profile
from sim.demo.judge import native_lateness
from sim.stack import Stack, output_writes, wait_for

EXIT_CODE = 3
AGENT_ENV = {
    "TWINGUARD_FAULT_INJECTION": "1",
    "TWINGUARD_WATCHDOG": "native",
    "TWINGUARD_WATCHDOG_EXIT": str(EXIT_CODE),
    "TWINGUARD_HANG_S": "3",
}


def heartbeat_writes(log: list[dict[str, Any]], address: int, unit: int) -> list[dict[str, Any]]:
    """Accepted writes of the PLC watchdog heartbeat register, in log order."""
    return [r for r in log if r.get("source") == "modbus" and r["table"] == "holding"
            and r["address"] == address and r["unit"] == unit and r.get("accepted", True)]


def measure(log: list[dict[str, Any]], t_signal: float, address: int, unit: int,
            deadline_s: float, *, period_s: float) -> tuple[float, float, float]:
    """(lateness_s, t of the watchdog's write, lateness_s of the safe set's first frame)
    from a write log; ValueError if not there.

    The safe set goes out one frame after the reply to the one before (sim-tank: the
    ``[plc_remote]`` flag, then the outputs), so the output's lateness includes the PLC's
    answer to the flag; the first frame's lateness is the watchdog's own plus the bias the
    module docstring describes."""
    safe = output_writes(log, SAFE_OUTPUT, since=t_signal)
    if not safe:
        raise ValueError("no safe-state write after the signal")
    t_safe = float(safe[0]["t"])
    beats = [float(r["t"]) for r in heartbeat_writes(log, address, unit)]
    if any(t_signal + deadline_s < t < t_safe for t in beats):
        raise ValueError("the agent's loop kept writing heartbeats: it was not hung")
    late = native_lateness(beats, t_safe, deadline_s, period_s)
    if late is None:
        raise ValueError("no heartbeat write before the watchdog's write")
    beat_seqs = {r["seq"] for r in heartbeat_writes(log, address, unit)}
    t_first = min(float(r["t"]) for r in log if r.get("source") == "modbus"
                  and t_signal < float(r["t"]) <= t_safe and r["seq"] not in beat_seqs)
    return late, t_safe, late - (t_safe - t_first)


def native_trials(trials: int, rng: Any, log: Any, *, sim_rt_priority: int | None = None,
                  after_trial: Callable[[], None] = lambda: None
                  ) -> tuple[list[float], list[float], float]:
    """Run ``trials`` GIL hangs; lateness of each watchdog write (s), of each first frame
    of the safe set (s, see :func:`measure`) and the deadline (s).
    ``sim_rt_priority``: the sims' SCHED_FIFO priority (loaded runs); ``after_trial`` is
    called after each trial (the load's check)."""
    text = bench_profile()
    lateness: list[float] = []
    first: list[float] = []
    with Stack(profile_text=text, agent_env=AGENT_ENV, start_agent=False,
               sim_rt_priority=sim_rt_priority) as stack:
        profile = load_profile(str(stack.profile_path))
        deadline_s = profile.timing.watchdog_deadline_s
        hb = profile.plc_watchdog
        period = profile.timing.poll_period_s
        for i in range(trials):
            started = time.monotonic()
            agent = stack.start_agent()
            stack.wait_state("normal", timeout=30, since=started)
            time.sleep(rng.uniform(0.0, 2 * period))
            t_signal = time.monotonic()
            agent.signal(signal.SIGUSR2)

            def landed(t_signal: float = t_signal) -> list[dict[str, Any]]:
                return output_writes(stack.plc.write_log(), SAFE_OUTPUT, since=t_signal)

            wait_for(landed, deadline_s + 10.0, "the watchdog's safe-state write at the PLC")
            code = agent.proc.wait(15)
            late, _, late_first = measure(stack.plc.write_log(), t_signal,
                                          hb.heartbeat_address, hb.unit_id, deadline_s,
                                          period_s=period)
            lateness.append(late)
            first.append(late_first)
            print(f"trial {i + 1}/{trials}: {late * 1000:+.3f} ms (agent exit {code})",
                  file=log, flush=True)
            if code != EXIT_CODE:
                raise RuntimeError(f"agent exited {code}, expected the watchdog's {EXIT_CODE}:"
                                   f"\n{stack.agent_stderr()[-3000:]}")
            after_trial()
    return lateness, first, deadline_s
