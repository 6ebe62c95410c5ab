"""What the fleet benchmark's arrivals say: latency, silences and losses (no I/O, no clock).

Input: the publisher's side table ``sent`` (heartbeat seq -> the publisher's CLOCK_MONOTONIC
just before ``publish``; the simulated agents stamp each arrival with the same system-wide
clock on the same machine, so one subtraction is the latency) and, per simulated agent, its
arrivals in the order it received them (:class:`Arrivals`).

* latency: ``t_arrival - sent[seq]`` of every arrival of a seq in ``sent``, all agents pooled;
* silences: per agent, the differences of ``[start, *arrival times, end]`` where ``start`` is
  the first heartbeat's send time and ``end`` the last one's plus one period (when the next
  would have gone out). What the agent's heartbeat monitor would have timed: a lost
  heartbeat shows as a silence of two periods, a missing tail as the silence from the last
  arrival to ``end``, an agent that heard nothing as one silence over the whole window; the
  trailing one only counts when the last arrival came before ``end``;
* ``gaps_over_L`` / ``gaps_over_T``: silences longer than L and than T, all agents;
* ``lost``: sent x agents minus the distinct seqs received; ``duplicates``: a seq received
  again by the same agent (QoS 0 never repeats one; a broker that replays would).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.bench.stats import percentile, summary_ms


@dataclass(frozen=True)
class Arrivals:
    """One simulated agent's heartbeats, in arrival order: seq and CLOCK_MONOTONIC time."""

    seqs: Sequence[int]
    times: Sequence[float]


def silences(times: Sequence[float], start: float, end: float) -> list[float]:
    """The silences one agent's monitor would have timed (module docstring), in seconds."""
    points = [start, *times]
    gaps = [b - a for a, b in itertools.pairwise(points)]
    if points[-1] < end:
        gaps.append(end - points[-1])
    return gaps


def analyse(sent: Mapping[int, float], agents: Sequence[Arrivals], *, period_s: float,
            late_s: float, timeout_s: float) -> dict[str, Any]:
    """The benchmark's arrival figures (module docstring) as a JSON-ready dict."""
    if not sent:
        raise ValueError("no heartbeat was sent")
    start = min(sent.values())
    end = max(sent.values()) + period_s
    latencies: list[float] = []
    gaps: list[float] = []
    received = duplicates = unknown = 0
    for agent in agents:
        seen: set[int] = set()
        for seq, t in zip(agent.seqs, agent.times, strict=True):
            if seq not in sent:
                unknown += 1
                continue
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            latencies.append(t - sent[seq])
        received += len(seen)
        gaps.extend(silences(agent.times, start, end))
    expected = len(sent) * len(agents)
    lat = summary_ms(latencies)
    return {
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "duplicates": duplicates,
        "unknown": unknown,
        "latency_p50_ms": lat["p50_ms"],
        "latency_p99_ms": lat["p99_ms"],
        "latency_max_ms": lat["max_ms"],
        "gap_p99_ms": round(percentile(gaps, 99) * 1000.0, 3),
        "gap_max_ms": round(max(gaps) * 1000.0, 3) if gaps else 0.0,
        "gaps_over_L": sum(1 for g in gaps if g > late_s),
        "gaps_over_T": sum(1 for g in gaps if g > timeout_s),
        "agents_over_timeout": sum(
            1 for a in agents if any(g > timeout_s for g in silences(a.times, start, end))),
    }


def send_figures(sent: Mapping[int, float], period_s: float) -> dict[str, float]:
    """How regular the publisher itself was: its largest gap between two sends and its
    largest lateness against the schedule ``first + (seq - first_seq) * period``."""
    seqs = sorted(sent)
    times = [sent[s] for s in seqs]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    late = [sent[s] - (times[0] + (s - seqs[0]) * period_s) for s in seqs]
    return {"send_gap_max_ms": round(max(gaps, default=0.0) * 1000.0, 3),
            "send_late_max_ms": round(max(late, default=0.0) * 1000.0, 3)}
