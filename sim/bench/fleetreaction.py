"""``python -m sim.bench fleet --agent``: the real agent's shed reaction through the broker.

The reaction benchmark's python path (:func:`sim.bench.reaction.python_trials`, sim-tank's
``release``: the ``[plc_remote]`` flag's write at the sim PLC, its lateness past the MQTT sim
twin's last heartbeat sent + T, both CLOCK_MONOTONIC, ``--trials`` twin losses) on a
:class:`LoadedFleetStack`: :class:`sim.fleet_stack.FleetStack` (the sim PLC, the MQTT sim
twin, mosquitto, the agent with ``[twin] transport = "mqtt"``; with ``--bridge`` the twin on
the site broker and the agent on the plant broker) plus the ``--agents`` simulated agents of
:mod:`sim.bench.fleetagents` subscribed to the same fan-out on the agent's broker for the
whole run, so the broker fans every heartbeat out to N + 1 agents while the real one sheds.
The simulated agents' arrivals are not analysed here (the twin stops its heartbeats on
purpose each trial); what they saw is summed (``sim_received``, ``sim_refused``).
"""

from __future__ import annotations

import base64
import random
import sys
from collections import Counter
from typing import Any

from sim.bench.fleet import CONNECT_TIMEOUT_S, DONE_TIMEOUT_S, FleetRun, Workers, worker_specs
from sim.bench.reaction import python_trials
from sim.bench.stats import summary_ms
from sim.fleet_stack import FleetStack


class LoadedFleetStack(FleetStack):
    """A :class:`FleetStack` with ``sim_agents`` simulated agents on the agent's broker
    (connected and subscribed before ``__init__`` returns; stopped before the brokers)."""

    def __init__(self, *, cfg: FleetRun, **kwargs: Any) -> None:
        self.workers: Workers | None = None
        self.sim_received = 0
        self.sim_refused: Counter[str] = Counter()
        super().__init__(bridged=cfg.bridge, **kwargs)
        try:
            key = base64.b64decode(self.twin.public_key)
            self.workers = Workers(worker_specs(self.brokers[0], (key,), cfg))
            self.workers.collect("started", CONNECT_TIMEOUT_S)
            self.workers.request("connect", "ready", CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def close_services(self) -> None:
        if self.workers is not None:
            try:
                for msg in self.workers.request("stop", "done", DONE_TIMEOUT_S):
                    self.sim_received += sum(len(seqs) // 8 for seqs, _ in msg[1])
                    self.sim_refused.update(msg[3])
            finally:
                self.workers.close()
        super().close_services()


def reaction(cfg: FleetRun, trials: int, seed: int = 1) -> dict[str, Any]:
    """``trials`` twin losses through the broker with ``cfg.agents`` simulated agents on it;
    the shed write's lateness p50/p99/max past the deadline."""
    made: list[LoadedFleetStack] = []

    def factory(**kwargs: Any) -> LoadedFleetStack:
        made.append(LoadedFleetStack(cfg=cfg, **kwargs))
        return made[-1]

    lateness, timeout = python_trials(trials, random.Random(seed), sys.stderr, "release",
                                      stack_factory=factory)
    return {"trials": trials, "policy": "release", "timeout_ms": round(timeout * 1000),
            "sim_agents": cfg.agents, "bridge": cfg.bridge, **summary_ms(lateness),
            "sim_received": made[0].sim_received if made else 0,
            "sim_refused": dict(made[0].sim_refused) if made else {}}
