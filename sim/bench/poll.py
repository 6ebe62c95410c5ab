"""Poll benchmark: the agent's read of the register map against a bare pymodbus client.

``python -m sim.bench poll [--rounds N] [--warmup N] [--seed S] [--load N] [--json]``

One simulated PLC (``python -m sim plc``, sim-tank, its own process on loopback) and, in
*this* process and one event loop, two masters on two TCP connections:

* **agent** -- ``PlcClient(profile).read_signals()``: the full path the runtime takes per
  tick (reconnect check, retries/timeouts bookkeeping, unit guard, block slicing, decoding,
  finiteness check, one :class:`~agent.model.readings.Reading` per signal);
* **bare** -- an ``AsyncModbusTcpClient`` sending exactly the same requests (the agent's
  read plan, ``PlcClient.signal_blocks``) one after another and nothing else: no decoding,
  no wrapper, no ``wait_for``.

Each round reads once with each, in an order drawn at random per round (seeded), so both
see the same machine conditions (the PLC's load, the other engineers' jobs, the scheduler).
The first ``--warmup`` rounds are discarded. Each read is timed with ``perf_counter_ns``
around the ``await`` alone; checks (all readings GOOD, no error replies) come after the
clock stops and any failure makes the run fail (a benchmark of failed reads is no figure).

Result (microseconds; ratio = agent / bare at the same percentile)::

    {"bench": "poll", "rounds": 2000, "warmup": 200, "blocks": 1,
     "agent_p50_us": ..., "agent_p99_us": ..., "bare_p50_us": ..., "bare_p99_us": ...,
     "ratio_p50": ..., "ratio_p99": ..., "agent_overhead_p50_us": ...,
     "agent_requests_per_read": 1.0,
     "bare_requests_per_read": 1, "target_ratio_p50": 1.1, "meets_target": true,
     "load": 0, "load_tool": null, "load_cpu_percent": null}

``--load N`` (``--load-tool``): N CPU hogs at normal priority for the whole run, and the sim
PLC at SCHED_FIFO ``SIM_RT_PRIORITY``, as in :mod:`sim.bench.reaction` (it stands in for
its own hardware); both masters, in this process, compete with the hogs alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from agent.config.profile.load import load_profile, with_connection
from agent.io.modbus.client import PlcClient
from agent.model.profile import Profile, Table, TcpLink
from agent.model.readings import Quality
from agent.protocol.modbus.plan import Block
from sim.bench.load import SIM_RT_PRIORITY, TOOLS, LoadError, cpu_load
from sim.bench.stats import percentile
from sim.plc.harness import SimPlcProcess

log = logging.getLogger(__name__)

TARGET_RATIO_P50 = 1.10  # issue 14
DEFAULT_ROUNDS = 2000
DEFAULT_WARMUP = 200


class PollBenchError(RuntimeError):
    """A read failed during the benchmark (BAD reading, error reply, no connection)."""


@dataclass(frozen=True)
class Samples:
    """Per-read durations in nanoseconds (warm-up excluded) and the agent's request count."""

    agent_ns: tuple[int, ...]
    bare_ns: tuple[int, ...]
    agent_requests: int
    blocks: int


def bare_call(client: AsyncModbusTcpClient, block: Block) -> Callable[[], Awaitable[ModbusPDU]]:
    """The pymodbus call that reads ``block`` as one request, the same request the agent's
    client sends, without anything the agent does around it."""
    a, n, u = block.address, block.count, block.unit_id
    match block.table:
        case Table.COIL:
            return lambda: client.read_coils(a, count=n, device_id=u)
        case Table.DISCRETE:
            return lambda: client.read_discrete_inputs(a, count=n, device_id=u)
        case Table.HOLDING:
            return lambda: client.read_holding_registers(a, count=n, device_id=u)
        case Table.INPUT:
            return lambda: client.read_input_registers(a, count=n, device_id=u)


async def _agent_read(agent: PlcClient) -> int:
    """One timed ``read_signals``; PollBenchError if any reading is not GOOD."""
    t0 = time.perf_counter_ns()
    readings = await agent.read_signals()
    elapsed = time.perf_counter_ns() - t0
    bad = {n: r.error for n, r in readings.items() if r.quality is not Quality.GOOD}
    if bad:
        raise PollBenchError(f"agent read BAD readings: {bad}")
    return elapsed


async def _bare_read(calls: list[Callable[[], Awaitable[ModbusPDU]]]) -> int:
    """The same requests, timed back to back; PollBenchError on an error reply."""
    t0 = time.perf_counter_ns()
    responses = [await call() for call in calls]
    elapsed = time.perf_counter_ns() - t0
    if any(r.isError() for r in responses):
        raise PollBenchError(f"bare client got an error reply: {responses}")
    return elapsed


async def measure(profile: Profile, rounds: int, warmup: int, rng: random.Random) -> Samples:
    """Interleaved agent/bare reads against the PLC ``profile`` points at (TCP only).

    Raises PollBenchError if either master cannot connect or any read fails.
    """
    link = profile.plc.link
    if not isinstance(link, TcpLink):
        raise PollBenchError("the poll benchmark compares TCP masters: give a TCP profile")
    agent = PlcClient(profile)
    bare = AsyncModbusTcpClient(link.host, port=link.port, timeout=profile.plc.timeout_s,
                                retries=0, reconnect_delay=0, name="bare")
    try:
        if not await agent.connect():
            raise PollBenchError("the agent's client could not connect to the sim PLC")
        if not await bare.connect():
            raise PollBenchError("the bare client could not connect to the sim PLC")
        blocks = agent.signal_blocks
        calls = [bare_call(bare, b) for b in blocks]
        agent_ns: list[int] = []
        bare_ns: list[int] = []
        requests_before = 0
        for i in range(warmup + rounds):
            if i == warmup:
                requests_before = agent.requests
            if rng.random() < 0.5:
                a = await _agent_read(agent)
                b = await _bare_read(calls)
            else:
                b = await _bare_read(calls)
                a = await _agent_read(agent)
            if i >= warmup:
                agent_ns.append(a)
                bare_ns.append(b)
        return Samples(tuple(agent_ns), tuple(bare_ns), agent.requests - requests_before,
                       len(blocks))
    finally:
        await agent.close()
        bare.close()


def summarize(samples: Samples) -> dict[str, Any]:
    """The documented result fields from raw samples (see the module docstring)."""
    rounds = len(samples.agent_ns)
    agent_us = [v / 1000.0 for v in samples.agent_ns]
    bare_us = [v / 1000.0 for v in samples.bare_ns]
    a50, a99 = percentile(agent_us, 50), percentile(agent_us, 99)
    b50, b99 = percentile(bare_us, 50), percentile(bare_us, 99)
    ratio_p50 = a50 / b50
    return {
        "bench": "poll",
        "rounds": rounds,
        "blocks": samples.blocks,
        "agent_p50_us": round(a50, 1),
        "agent_p99_us": round(a99, 1),
        "bare_p50_us": round(b50, 1),
        "bare_p99_us": round(b99, 1),
        "ratio_p50": round(ratio_p50, 3),
        "ratio_p99": round(a99 / b99, 3),
        "agent_overhead_p50_us": round(a50 - b50, 1),
        "agent_requests_per_read": round(samples.agent_requests / rounds, 3),
        "bare_requests_per_read": samples.blocks,
        "target_ratio_p50": TARGET_RATIO_P50,
        "meets_target": ratio_p50 <= TARGET_RATIO_P50,
    }


def run(rounds: int, warmup: int, seed: int, profile_ref: str = "sim-tank", *,
        sim_rt_priority: int | None = None) -> dict[str, Any]:
    """Start a sim PLC (at SCHED_FIFO ``sim_rt_priority`` if given), measure, stop it; the
    result dict (PollBenchError on failed reads)."""
    with SimPlcProcess(profile_ref, rt_priority=sim_rt_priority) as plc:
        profile = with_connection(load_profile(profile_ref), tcp=f"127.0.0.1:{plc.port}")

        async def body() -> Samples:
            return await measure(profile, rounds, warmup, random.Random(seed))

        samples = asyncio.run(body())
    result = summarize(samples)
    result["warmup"] = warmup
    result["seed"] = seed
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench poll", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="measured rounds")
    p.add_argument("--warmup", type=int, default=None,
                   help=f"discarded rounds first (default: min({DEFAULT_WARMUP}, rounds/10))")
    p.add_argument("--seed", type=int, default=1, help="seed of the per-round order")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="N CPU hogs at normal priority for the whole run (default 0)")
    p.add_argument("--load-tool", choices=TOOLS, default="auto",
                   help="stress-ng, Python busy loops, or auto: stress-ng where it is there")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.load < 0:
        p.error("--load must be >= 0")
    warmup = min(DEFAULT_WARMUP, max(1, args.rounds // 10)) if args.warmup is None else args.warmup
    if warmup < 0:
        p.error("--warmup must be >= 0")
    try:
        with cpu_load(args.load, args.load_tool, sys.stderr) as load:
            result = run(args.rounds, warmup, args.seed,
                         sim_rt_priority=SIM_RT_PRIORITY if args.load else None)
    except LoadError as exc:
        print(f"poll: {exc}", file=sys.stderr)
        return 1
    result.update(load.fields())
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0
