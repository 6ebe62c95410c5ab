"""``python -m sim.bench fleet --agents N [--tls] [--bridge] [--duration S] [--json]``: one
twin's signed heartbeats fanned out by a real mosquitto to N simulated agents (FLEET.md 7.9).

* the twin: one MQTT 5 client as ``twin-host`` (:class:`sim.broker.probe.Probe`) publishes
  STATE online (QoS 1, retained), then one signed heartbeat (``envelope.seal`` to ``"*"``,
  ``names.heartbeat_topic``, QoS 0, Message Expiry 1 s) every ``1 / --rate`` s (10 Hz: the
  sim twin's rate) for ``--duration`` s, on an absolute schedule. Just before each
  ``publish`` it puts CLOCK_MONOTONIC in a side table keyed by seq;
* the agents: N light clients over TLS in ``--workers`` processes
  (:mod:`sim.bench.fleetagents`: paho on one selector loop per process, one shared device
  certificate, ``--verify`` of them checking every signature, the rest decoding), each
  stamping CLOCK_MONOTONIC at every arrival. Same machine, same clock: latency =
  arrival - send, no wall clock involved (``sent_ms`` in the envelope is not used);
* the broker: one :class:`sim.broker.Broker` (TLS client certificates as in production:
  the fixture has no plain listener, so ``--tls`` is the only mode and the flag is
  accepted), or with ``--bridge`` a :class:`sim.broker.BridgedPair`: the twin on the site
  broker, the agents on the plant broker;
* L and T: ``[timing] heartbeat_late_s`` / ``heartbeat_timeout_s`` of ``--profile``
  (sim-tank: 250 / 500 ms), read from the shipped profile.

Figures (:mod:`sim.bench.fleetstats`): latency p50/p99/max (all arrivals pooled), the
largest silence an agent's monitor would have timed, the silences over L and over T,
losses, connect time (``connect`` sent to the workers until every agent has its SUBACK),
each broker's CPU (% of one core) and largest RSS over the publishing window (``/proc``),
the publisher's own regularity (``send_gap_max_ms``: a late publisher is not the broker's
fault) and ``reads_behind``, the agents' reads after which more was already waiting in the
kernel (a worker that did not get the CPU in time: latency that comes with many is the
simulated agents' own, not the broker's).
``meets_gate``: 0 silences over T and p99 < L (the issue's acceptance).
Exit status 1 when an agent did not connect or a worker failed.

``--agent`` adds ``agent_reaction``: after the fan-out run, the real agent's shed reaction
through the broker (the agent's FleetLink, the MQTT sim twin), with the N simulated agents
subscribed to the same broker (:mod:`sim.bench.fleetreaction`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config.profile.load import load_profile
from agent.model.messages import Heartbeat
from agent.protocol.fleet.envelope import FANOUT, public_bytes, seal
from agent.protocol.fleet.names import heartbeat_topic
from sim.bench.fleetagents import AGENT_CN, WorkerSpec, worker
from sim.bench.fleetstats import Arrivals, analyse, send_figures
from sim.bench.procstat import ProcSample, Window, read_proc
from sim.bench.stats import report
from sim.broker import BridgedPair, Broker, BrokerError, BrokerUnavailable
from sim.broker.acl import HOST_USER, state_topic
from sim.broker.probe import Probe, ProbeError, expiring

log = logging.getLogger(__name__)

RATE_HZ = 10.0  # the sim twin's heartbeat rate (sim.twin.server.SimTwin's default)
EXPIRY_S = 1  # the heartbeat's Message Expiry Interval (FLEET.md 7.2)
HOST_ID = "twin"
CONNECT_TIMEOUT_S = 180.0
DONE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FleetRun:
    """One run's parameters (the command line's)."""

    agents: int
    bridge: bool = False
    duration_s: float = 30.0
    rate_hz: float = RATE_HZ
    workers: int = 2
    verify: int = 10
    profile: str = "sim-tank"


@dataclass(frozen=True)
class Outcome:
    """The figures (JSON-ready) and the pids of every process the run started (brokers,
    workers): all of them are gone when :func:`run` returns."""

    figures: dict[str, Any]
    pids: tuple[int, ...]


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal counts, larger first (zeros dropped)."""
    return [c for i in range(parts) if (c := total // parts + (i < total % parts))]


class Workers:
    """The worker processes (``spawn``: a fresh interpreter, no inherited threads) and
    their pipes; :meth:`close` ends every one of them (join, then terminate, then kill)."""

    def __init__(self, specs: Sequence[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess] = []
        self.conns: list[Connection] = []
        for i, spec in enumerate(specs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(spec, child), name=f"fleet-agents-{i}",
                               daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.procs if p.pid is not None)

    def collect(self, tag: str, timeout_s: float) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout_s
        got: list[tuple[Any, ...]] = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            while not conn.poll(0.1):
                if not proc.is_alive():
                    raise RuntimeError(f"{proc.name} exited with {proc.exitcode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.name}: no {tag!r} within {timeout_s:g} s")
            msg = conn.recv()
            if not isinstance(msg, tuple) or msg[0] != tag:
                raise RuntimeError(f"{proc.name}: {msg!r:.200}, expected {tag!r}")
            got.append(msg)
        return got

    def request(self, command: str, reply: str, timeout_s: float) -> list[tuple[Any, ...]]:
        """Send ``command`` to every worker; their ``reply`` tuples, in worker order."""
        for conn in self.conns:
            conn.send(command)
        return self.collect(reply, timeout_s)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)


def worker_specs(broker: Broker, twin_keys: tuple[bytes, ...], cfg: FleetRun
                 ) -> list[WorkerSpec]:
    """The workers' share of ``cfg.agents`` (and of the ``cfg.verify`` verifying agents)
    on ``broker``, with the shared device certificate."""
    files = broker.pki.client(AGENT_CN)
    counts = split(cfg.agents, cfg.workers)
    verify = split(min(cfg.verify, cfg.agents), len(counts))
    return [WorkerSpec(port=broker.port, ca=str(files.ca), cert=str(files.cert),
                       key=str(files.key), host_id=HOST_ID, hb_topic=heartbeat_topic(HOST_ID),
                       state_topic=state_topic(HOST_ID), first=sum(counts[:i]), count=c,
                       verify=verify[i] if i < len(verify) else 0, twin_keys=twin_keys)
            for i, c in enumerate(counts)]


def _sampled(pids: Mapping[str, int]) -> dict[str, ProcSample]:
    return {name: read_proc(pid, time.monotonic()) for name, pid in pids.items()}


def publish(twin: Probe, key: Ed25519PrivateKey, pids: Mapping[str, int], count: int,
            period_s: float) -> tuple[dict[int, float], dict[str, Window], int]:
    """Publish ``count`` signed heartbeats on the schedule; the side table (seq -> send
    time), the CPU/RSS window of each process in ``pids`` (name -> pid) over the run, and
    the heartbeat's size."""
    topic = heartbeat_topic(HOST_ID)
    props = expiring(EXPIRY_S)
    epoch = time.time_ns() // 1_000_000  # a new epoch per run, as a restarted twin's
    sent: dict[int, float] = {}
    first = _sampled(pids)
    rss = {name: s.rss_kib for name, s in first.items()}
    start = time.monotonic() + period_s
    next_sample = start + 1.0
    size = 0
    for seq in range(1, count + 1):
        due = start + (seq - 1) * period_s
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        sent_ms = time.time_ns() // 1_000_000
        wire = seal(Heartbeat(epoch, seq, True, sent_ms), key, host=HOST_ID, to=FANOUT,
                    epoch=epoch, seq=seq, sent_ms=sent_ms)
        size = len(wire)
        sent[seq] = time.monotonic()
        twin.publish(topic, wire, qos=0, properties=props)
        if time.monotonic() >= next_sample:
            next_sample += 1.0
            for name, s in _sampled(pids).items():
                rss[name] = max(rss[name], s.rss_kib)
    last = _sampled(pids)
    windows = {name: Window(first[name], last[name], max(rss[name], last[name].rss_kib))
               for name in pids}
    return sent, windows, size


@contextlib.contextmanager
def _brokers(workdir: Path, bridge: bool) -> Iterator[tuple[Broker, Broker, dict[str, Broker]]]:
    """(the twin's broker, the agents' broker, all by name), started; stopped after."""
    if bridge:
        with BridgedPair(workdir / "pair") as pair:
            assert pair.plant is not None
            yield pair.site, pair.plant, {"site": pair.site, "plant": pair.plant}
    else:
        with Broker(workdir / "broker") as b:
            yield b, b, {"broker": b}


def _arrivals(done: Sequence[tuple[Any, ...]]) -> list[Arrivals]:
    agents: list[Arrivals] = []
    for msg in done:
        for seqs_raw, times_raw in msg[1]:
            seqs, times = array("q"), array("d")
            seqs.frombytes(seqs_raw)
            times.frombytes(times_raw)
            agents.append(Arrivals(seqs, times))
    return agents


def run(cfg: FleetRun, workdir: Path) -> Outcome:
    """One benchmark run in ``workdir`` (module docstring)."""
    timing = load_profile(cfg.profile).timing
    period_s = 1.0 / cfg.rate_hz
    count = max(1, round(cfg.duration_s * cfg.rate_hz))
    key = Ed25519PrivateKey.generate()
    pids: list[int] = []
    load_start = os.getloadavg()[0]
    with _brokers(workdir, cfg.bridge) as (twin_broker, agent_broker, brokers):
        pids += [b.pid for b in brokers.values()]
        specs = worker_specs(agent_broker, public_bytes([key]), cfg)
        with Probe(twin_broker.port, twin_broker.pki.client_context(HOST_USER),
                   "fleet-bench-twin") as twin:
            state = json.dumps({"online": True, "timestamp": time.time_ns() // 1_000_000})
            code = twin.publish(state_topic(HOST_ID), state.encode(), qos=1, retain=True)
            if code is None or code >= 0x80:  # 0x10 "no matching subscribers" is fine
                raise RuntimeError(f"STATE online refused by the broker: reason code {code}")
            workers = Workers(specs)
            pids += workers.pids
            try:
                workers.collect("started", CONNECT_TIMEOUT_S)
                t_connect = time.monotonic()
                ready = workers.request("connect", "ready", CONNECT_TIMEOUT_S)
                connect_s = max(r[1] for r in ready) - t_connect
                log.info("%d agents connected and subscribed in %.2f s",
                         sum(r[2] for r in ready), connect_s)
                watched = {**{n: b.pid for n, b in brokers.items()},
                           **{f"workers-{i}": pid for i, pid in enumerate(workers.pids)}}
                sent, windows, size = publish(twin, key, watched, count, period_s)
                time.sleep(EXPIRY_S + timing.heartbeat_timeout_s)  # the last ones arrive
                done = workers.request("stop", "done", DONE_TIMEOUT_S)
            finally:
                workers.close()
    refused: Counter[str] = Counter()
    for msg in done:
        refused.update(msg[3])
    figures: dict[str, Any] = {
        "bench": "fleet", "agents": cfg.agents, "tls": True, "bridge": cfg.bridge,
        "duration_s": round(count * period_s, 3), "rate_hz": cfg.rate_hz,
        "profile": cfg.profile, "L_ms": round(timing.heartbeat_late_s * 1000.0, 3),
        "T_ms": round(timing.heartbeat_timeout_s * 1000.0, 3),
        "workers": len(specs), "verifying_agents": sum(spec.verify for spec in specs),
        "shared_certificate": AGENT_CN, "latency_clock": "CLOCK_MONOTONIC side table",
        "heartbeats_sent": count, "payload_bytes": size,
        "connected": sum(r[2] for r in ready), "connect_s": round(connect_s, 3),
        "errors": [e for r in ready for e in r[3]][:10],
    }
    got = analyse(sent, _arrivals(done), period_s=period_s, late_s=timing.heartbeat_late_s,
                  timeout_s=timing.heartbeat_timeout_s)
    figures |= got
    figures |= {
        "refused": dict(refused), "state_seen": sum(m[2] for m in done),
        "disconnects": sum(m[4] for m in done), "reads_behind": sum(m[5] for m in done),
        **send_figures(sent, period_s),
        "brokers": {name: {"cpu_percent": round(w.cpu_percent, 2),
                           "rss_mb": round(w.rss_max_kib / 1024.0, 1)}
                    for name, w in windows.items() if name in brokers},
        "workers_cpu_percent": round(sum(w.cpu_percent for n, w in windows.items()
                                         if n not in brokers), 2),
        "load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
    }
    p99 = figures["latency_p99_ms"]
    figures["meets_gate"] = (figures["gaps_over_T"] == 0 and math.isfinite(p99)
                             and p99 < figures["L_ms"])
    return Outcome(figures, tuple(pids))


def agent_reaction(cfg: FleetRun, trials: int) -> dict[str, Any]:
    """The real agent's shed reaction through the broker (``--agent``): see
    :mod:`sim.bench.fleetreaction`."""
    from sim.bench.fleetreaction import reaction  # noqa: PLC0415 - the agent's fleet extra

    return reaction(cfg, trials)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000, help="simulated agents (default 1000)")
    p.add_argument("--tls", action="store_true",
                   help="TLS with client certificates (always on: the only mode)")
    p.add_argument("--bridge", action="store_true",
                   help="twin on a site broker, agents on a plant broker bridged to it")
    p.add_argument("--duration", type=float, default=30.0, help="publishing seconds")
    p.add_argument("--rate", type=float, default=RATE_HZ, help="heartbeats per second")
    p.add_argument("--workers", type=int, default=2, help="agent processes (default 2)")
    p.add_argument("--verify", type=int, default=10,
                   help="agents that verify every signature (the rest decode; default 10)")
    p.add_argument("--profile", default="sim-tank", help="where L and T come from")
    p.add_argument("--agent", action="store_true",
                   help="also the real agent's shed reaction through the broker, the "
                        "simulated agents on it (sim.bench.fleetreaction)")
    p.add_argument("--trials", type=int, default=20, help="--agent: twin losses (20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.agents < 1 or args.workers < 1 or args.verify < 0 or args.trials < 1:
        p.error("--agents, --workers and --trials must be >= 1, --verify >= 0")
    if not args.duration > 0 or not args.rate > 0:
        p.error("--duration and --rate must be > 0")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    cfg = FleetRun(agents=args.agents, bridge=args.bridge, duration_s=args.duration,
                   rate_hz=args.rate, workers=args.workers, verify=args.verify,
                   profile=args.profile)
    try:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            outcome = run(cfg, Path(tmp))
        if args.agent:
            outcome.figures["agent_reaction"] = agent_reaction(cfg, args.trials)
    except (BrokerError, BrokerUnavailable, ProbeError, RuntimeError, OSError) as exc:
        print(f"python -m sim.bench fleet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m sim.bench fleet: interrupted", file=sys.stderr)
        return 130
    report(outcome.figures, args.json)
    return 0 if outcome.figures["connected"] == cfg.agents and not outcome.figures["errors"] \
        else 1
