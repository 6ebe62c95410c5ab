"""The fleet benchmark (``python -m sim.bench fleet``): heartbeats fanned out by a real
mosquitto to simulated agents, through one broker and through a bridged pair.

Shape and sanity at small N, never the acceptance thresholds (those belong to the
benchmark's report): the JSON's keys, every heartbeat sent reaching every agent (QoS 0 on
loopback with 20 agents loses none unless the machine stalls for the 1 s expiry; a few
percent are allowed), silences that add up to the window, L and T from the profile, and no
broker or worker process left behind.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config.profile.load import load_profile
from sim.bench.fleet import FleetRun, run, split
from sim.bench.fleetstats import Arrivals, analyse, silences
from sim.bench.mqttlite import MqttError, Packet, Reader, publish_parts
from sim.broker import locate

pytestmark = pytest.mark.timeout(90)

needs_broker = pytest.mark.skipif(locate() is None,
                                  reason="no mosquitto: run python -m sim.broker fetch")
KEYS = {
    "bench", "agents", "tls", "bridge", "duration_s", "rate_hz", "profile", "L_ms", "T_ms",
    "workers", "verifying_agents", "shared_certificate", "latency_clock", "heartbeats_sent",
    "payload_bytes", "connected", "connect_s", "errors", "expected", "received", "lost",
    "duplicates", "unknown", "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
    "gap_p99_ms", "gap_max_ms", "agents_over_timeout", "gaps_over_L", "gaps_over_T",
    "refused", "state_seen", "disconnects", "reads_behind", "send_gap_max_ms",
    "send_late_max_ms", "brokers", "workers_cpu_percent", "load_avg_start", "load_avg_end",
    "meets_gate",
}


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_run(got: dict[str, Any], agents: int, brokers: set[str]) -> None:
    """What any healthy small run must show."""
    assert set(got) == KEYS
    timing = load_profile("sim-tank").timing
    assert (got["L_ms"], got["T_ms"]) == (timing.heartbeat_late_s * 1000,
                                          timing.heartbeat_timeout_s * 1000)
    assert got["connected"] == agents and got["errors"] == [] and got["tls"] is True
    assert got["state_seen"] == agents  # the retained STATE online reached every agent
    assert got["refused"] == {} and got["verifying_agents"] == min(10, agents)
    assert got["expected"] == got["heartbeats_sent"] * agents
    assert got["duplicates"] == 0 and got["unknown"] == 0
    assert 0 <= got["lost"] <= 0.05 * got["expected"]
    assert got["received"] + got["lost"] == got["expected"]
    assert 0 < got["latency_p50_ms"] <= got["latency_p99_ms"] <= got["latency_max_ms"]
    # the silences of one agent add up to its window: (sent + 1) of them span sent periods,
    # so the largest is at least their mean
    period_ms = 1000.0 / got["rate_hz"]
    sent = got["heartbeats_sent"]
    assert got["gap_max_ms"] >= period_ms * sent / (sent + 1) - 1e-6
    assert got["gaps_over_T"] <= got["gaps_over_L"]
    assert got["agents_over_timeout"] <= min(agents, got["gaps_over_T"])
    assert set(got["brokers"]) == brokers
    for figures in got["brokers"].values():
        assert finite(figures["cpu_percent"]) and figures["rss_mb"] > 0
    assert got["connect_s"] > 0 and got["payload_bytes"] > 64
    assert 0 <= got["reads_behind"] <= got["received"] // 2


# --- no broker ----------------------------------------------------------------------------

def test_silences_and_losses_are_counted_from_the_arrivals() -> None:
    sent = {seq: 10.0 + 0.1 * (seq - 1) for seq in range(1, 11)}  # 10 Hz from t = 10
    whole = Arrivals(list(range(1, 11)), [t + 0.005 for t in sent.values()])
    # lost seq 4..6 (a 0.4 s silence: over L, not over T) and seq 10 (the tail to the end)
    holes = [s for s in range(1, 11) if s not in (4, 5, 6, 10)]
    holey = Arrivals(holes, [sent[s] + 0.01 for s in holes])
    deaf = Arrivals([], [])  # heard nothing: one silence over the whole window
    dup = Arrivals([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                   [sent[1] + 0.002, sent[1] + 0.003, *(sent[s] + 0.002 for s in range(2, 11))])
    got = analyse(sent, [whole, holey, deaf, dup], period_s=0.1, late_s=0.25, timeout_s=0.5)
    assert got["expected"] == 40 and got["received"] == 10 + 6 + 0 + 10
    assert got["lost"] == 4 + 10 and got["duplicates"] == 1
    assert got["gaps_over_L"] == 2 and got["gaps_over_T"] == 1  # holey's 0.4 s; deaf's 1 s
    assert got["agents_over_timeout"] == 1
    assert got["gap_max_ms"] == pytest.approx(1000.0)
    assert got["latency_max_ms"] == pytest.approx(10.0)
    assert silences([10.2, 10.3], start=10.0, end=10.4) == pytest.approx([0.2, 0.1, 0.1])
    # an arrival after the window's end adds no trailing silence
    assert silences([10.45], start=10.0, end=10.4) == pytest.approx([0.45])


def test_mqtt_reader_reassembles_packets_split_anywhere() -> None:
    topic = b"twinguard/v1/twin/hb"
    body = len(topic).to_bytes(2, "big") + topic + b"\x00" + b"p" * 300  # VBI of 2 bytes
    publish = bytes([0x30]) + bytes([(len(body) & 0x7F) | 0x80, len(body) >> 7]) + body
    stream = b"\x20\x03\x00\x00\x00" + publish + b"\xd0\x00" + publish
    reader = Reader()
    got: list[Packet] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i:i + 1])
    assert [p.kind for p in got] == [0x2, 0x3, 0xD, 0x3]
    assert got == Reader().feed(stream)
    assert publish_parts(got[1]) == (topic.decode(), b"p" * 300)
    # the fast path takes exactly one whole QoS 0 PUBLISH, nothing else
    assert Reader().single_publish(publish) == (topic.decode(), b"p" * 300)
    assert Reader().single_publish(publish + b"\xd0\x00") is None
    assert Reader().single_publish(publish[:-1]) is None
    partial = Reader()
    partial.feed(b"\xd0")  # something buffered: the fast path must not skip it
    assert partial.single_publish(publish) is None
    with pytest.raises(MqttError):
        Reader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_agents_are_split_over_workers() -> None:
    assert split(1000, 2) == [500, 500] and split(5, 3) == [2, 2, 1] and split(1, 4) == [1]


# --- real brokers -------------------------------------------------------------------------

@needs_broker
def test_one_broker_cli_prints_the_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "fleet", "--agents", "20", "--duration", "2",
         "--tls", "--json"], capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    got = json.loads(lines[0])
    check_run(got, 20, {"broker"})
    assert got["bridge"] is False and got["heartbeats_sent"] == 20


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@needs_broker
def test_bridged_pair_run_and_nothing_left_behind(tmp_path: Path) -> None:
    outcome = run(FleetRun(agents=20, bridge=True, duration_s=2.0, workers=2), tmp_path)
    check_run(outcome.figures, 20, {"site", "plant"})
    assert outcome.figures["bridge"] is True and outcome.figures["workers"] == 2
    assert len(outcome.pids) == 4  # two brokers, two workers
    assert [pid for pid in outcome.pids if not _gone(pid)] == []


@needs_broker
def test_the_real_agent_sheds_through_the_bridged_brokers_among_simulated_agents() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.bench", "fleet", "--agents", "10", "--duration", "1",
         "--bridge", "--agent", "--trials", "1", "--json"],
        capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    check_run({k: v for k, v in got.items() if k != "agent_reaction"}, 10, {"site", "plant"})
    reaction = got["agent_reaction"]
    assert (reaction["trials"], reaction["sim_agents"], reaction["bridge"]) == (1, 10, True)
    assert reaction["timeout_ms"] == got["T_ms"]
    # the shed write landed at the PLC after the deadline (never before: T is the rule) ...
    assert 0 <= reaction["p50_ms"] <= reaction["max_ms"]
    # ... and the simulated agents heard the MQTT twin's heartbeats, all verified
    assert reaction["sim_received"] > 0 and reaction["sim_refused"] == {}
