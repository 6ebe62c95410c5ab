"""The simulated plant through a broker: mosquitto (one, two, or a bridged pair), the sim
MQTT twin, the sim PLC and the agent with ``[twin] transport = "mqtt"``, all real processes.

    with FleetStack() as stack:               # a broker, the MQTT twin, PLC, agent
        stack.wait_twin("alive")              # twinguard status --json
        os.kill(stack.twin.pid, signal.SIGSTOP)   # a frozen twin ...
        stack.plc.write_log()                 # ... judged from the PLC's write log

``brokers=2`` starts two independent brokers (the agent's ``servers`` lists both, the twin
connects to both, as a Sparkplug host does); ``bridged=True`` starts a
:class:`sim.broker.BridgedPair` instead (the agent on the plant broker, the twin on the
site broker). The broker PKI is the stack's own demo PKI (:class:`sim.broker.pki.FleetPki`
adopts its CA, so the agent's device certificate, CN ``sim-tank-01``, is the MQTT user).
Everything else is :class:`sim.stack.Stack`'s (``profile_text``, ``mode``,
``config_extra`` ...). Needs the ``fleet`` extra and a mosquitto
(``python -m sim.broker fetch``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.broker import BridgedPair, Broker
from sim.broker.pki import FleetPki
from sim.plc.control import ControlClient
from sim.stack import Proc, Stack, toml_line

GROUP = "plant"
HOST_ID = "twin"


class MqttTwinProcess:
    """``python -m sim mqtt-twin`` connected to ``servers`` with a control channel; starts
    in ``__init__`` (returns once it is connected to every server)."""

    def __init__(self, workdir: Path, pki_dir: Path, servers: Sequence[tuple[str, int]], *,
                 rate_hz: float = 10.0, host_id: str = HOST_ID, group: str = GROUP,
                 name: str = "mqtt-twin", extra_args: Sequence[str] = (),
                 rt_priority: int | None = None) -> None:
        self.control_path = workdir / f"{name}.sock"
        self.key_path = workdir / f"{name}.key"
        argv = [sys.executable, "-m", "sim", "mqtt-twin", "--pki", str(pki_dir), "--key",
                str(self.key_path), "--host-id", host_id, "--group", group, "--rate",
                str(rate_hz), "--control", str(self.control_path)]
        for host, port in servers:
            argv += ["--server", f"{host}:{port}"]
        self.proc = Proc([*argv, *extra_args], workdir / f"{name}.stderr", ready=True,
                         rt_priority=rt_priority)
        words = dict(w.split("=", 1) for w in self.proc.ready_line.split()[2:] if "=" in w)
        self.epoch = int(words["epoch"])
        self.public_key = words["key"]  # base64, as [fleet] twin_keys takes it
        self.port = servers[0][1]
        self.control = ControlClient(self.control_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.control.request(req)

    def stats(self, last: int = 100) -> dict[str, Any]:
        return self.control.request({"cmd": "stats", "last": last})

    def telemetry(self, **args: Any) -> dict[str, Any]:
        return self.control.request({"cmd": "telemetry", **args})

    def stop(self) -> None:
        self.proc.stop()


class FleetStack(Stack):
    """:class:`sim.stack.Stack` through brokers; see the module docstring.

    ``brokers``: how many independent brokers (1 or 2); ``bridged``: a bridged pair
    instead; ``echo_timeout_s``/``keepalive_s``: the agent's ``[fleet]`` values;
    ``fleet_extra``: more ``[fleet]`` keys."""

    def __init__(self, *, brokers: int = 1, bridged: bool = False,
                 echo_timeout_s: float = 3.0, fleet_extra: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        if brokers not in (1, 2):
            raise ValueError("a fleet stack has 1 or 2 brokers")
        self.n_brokers = brokers
        self.bridged = bridged
        self.echo_timeout_s = echo_timeout_s
        self.fleet_extra = fleet_extra or {}
        self.brokers: list[Broker] = []
        self.pair: BridgedPair | None = None
        super().__init__(**kwargs)

    def _start_twin(self, rate_hz: float, args: tuple[str, ...],
                    rt_priority: int | None) -> MqttTwinProcess:
        pki = FleetPki(self.workdir / "pki")  # adopts the stack's CA
        pki_dir = self.workdir / "pki"
        try:
            if self.bridged:
                self.pair = BridgedPair(self.workdir / "brokers", group_id=GROUP,
                                        host_id=HOST_ID)
                self.pair.pki = pki  # the stack's CA instead of the pair's own
                self.pair.site.pki = pki
                self.pair.start()
                assert self.pair.plant is not None
                self.brokers = [self.pair.plant]
                twin_servers = [("127.0.0.1", self.pair.site.port)]
            else:
                for i in range(self.n_brokers):
                    broker = Broker(self.workdir / f"broker-{i}", group_id=GROUP,
                                    host_id=HOST_ID, pki=pki, name=f"broker-{i}")
                    self.brokers.append(broker)
                    broker.start()
                twin_servers = [("127.0.0.1", b.port) for b in self.brokers]
            return MqttTwinProcess(self.workdir, pki_dir, twin_servers, rate_hz=rate_hz,
                                   extra_args=args, rt_priority=rt_priority)
        except BaseException:
            self._close_brokers()
            raise

    def twin_table(self) -> dict[str, Any]:
        table = super().twin_table()
        for key in ("host", "port", "server_name"):
            del table[key]
        return {**table, "transport": "mqtt"}

    def extra_tables(self) -> str:
        fleet: dict[str, Any] = {
            "servers": [f"mqtts://127.0.0.1:{b.port}" for b in self.brokers],
            "group": GROUP, "host_id": HOST_ID, "twin_keys": [self.twin.public_key],
            "echo_timeout_s": self.echo_timeout_s, **self.fleet_extra,
        }
        lines = ["", "[fleet]", *(toml_line(k, v) for k, v in fleet.items())]
        return "\n".join(lines) + "\n"

    def _close_brokers(self) -> None:
        if self.pair is not None:
            self.pair.close()
        else:
            for broker in self.brokers:
                broker.close()

    def close_services(self) -> None:
        self._close_brokers()

