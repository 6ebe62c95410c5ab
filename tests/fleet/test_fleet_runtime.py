"""The whole agent (``Runtime``, the simulated PLC) with ``[twin] transport = "mqtt"``
through a real mosquitto, the twin scripted (``fleet_kit.ScriptedTwin``) with a pump thread
that sends signed heartbeats at 20 Hz and acks echoing the statuses it hears: the twin
earns authority over MQTT exactly as over TLS, telemetry arrives as NDATA and is acked, and
a twin that stops acking is a loss by the echo rule."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from fleet_kit import NDATA, ScriptedTwin, now_ms

from agent.config.agentconfig import load_config
from agent.config.profile.load import load_profile, with_connection
from agent.io.fleet.link import FleetLink
from agent.io.pki import init_pki
from agent.protocol import sparkplug as sp
from agent.protocol.fleet import names
from agent.runtime.loop import Runtime
from sim.broker import Broker, BrokerBinary
from sim.broker.pki import FleetPki
from sim.plc.harness import SimPlcProcess
from sim.stack import sim_tank_text
from sim.twin.harness import wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

DEVICE = "sim-tank-01"


class Pump:
    """Heartbeats every 50 ms; every 250 ms an ack echoing the newest status seq heard
    and acking the newest spool seq heard (while ``acking``)."""

    def __init__(self, twin: ScriptedTwin) -> None:
        self.twin = twin
        self.acking = True
        self.statuses: list[dict[str, object]] = []
        self.records: list[tuple[int, bool]] = []  # (spool seq, is_historical)
        self._stop = threading.Event()
        self._seen = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        births = self.twin.births()
        if not births:
            return
        alias = {m.alias: m.name for m in sp.decode_payload(births[-1].payload).metrics}
        got = self.twin.probe.messages(NDATA)
        for m in got[self._seen:]:
            for metric in sp.decode_payload(m.payload).metrics:
                name = alias.get(metric.alias)
                if name == names.M_STATUS:
                    self.statuses.append(msgpack.unpackb(metric.value))
                elif name == names.M_SPOOL_SEQ:
                    self.records.append((int(metric.value), metric.is_historical))
        self._seen = len(got)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.05):
            self.twin.heartbeat()
            n += 1
            if n % 5 == 0:
                self._read()
                if self.acking and self.statuses:
                    upto = max((s for s, _ in self.records), default=0)
                    self.twin.ack(upto, int(self.statuses[-1]["seq"]))  # type: ignore[call-overload]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def rig(tmp_path: Path, mosquitto_binary: BrokerBinary
        ) -> Iterator[tuple[Path, SimPlcProcess, ScriptedTwin]]:
    """The profile, the simulated PLC, a broker (its CA is the agent's) with the twin
    host on it, and agent.toml naming that broker and the twin's key."""
    profile = tmp_path / "profile.toml"
    profile.write_text(sim_tank_text())
    pki = init_pki(tmp_path / "pki", device_id=DEVICE)
    (tmp_path / "plc").mkdir()
    plc = SimPlcProcess(str(profile), workdir=tmp_path / "plc")
    with Broker(tmp_path / "broker", pki=FleetPki(tmp_path / "pki"),
                binary=mosquitto_binary) as broker:
        twin = ScriptedTwin(broker)
        key = base64.b64encode(twin.public[0]).decode()
        (tmp_path / "agent.toml").write_text(
            f'device_id = "{DEVICE}"\nmode = "active"\n\n[twin]\ntransport = "mqtt"\n'
            f'ca = "{pki.ca_cert}"\ncert = "{pki.device_cert}"\nkey = "{pki.device_key}"\n'
            "idle_timeout_s = 5.0\nbackoff_min_s = 0.05\nbackoff_max_s = 0.5\n\n[fleet]\n"
            f'servers = ["mqtts://localhost:{broker.port}"]\ngroup = "plant"\n'
            f'host_id = "twin"\ntwin_keys = ["{key}"]\necho_timeout_s = 2.0\n')
        try:
            yield profile, plc, twin
        finally:
            twin.close()
            plc.close()


def test_the_agent_runs_with_its_twin_over_mqtt(
        rig: tuple[Path, SimPlcProcess, ScriptedTwin], tmp_path: Path) -> None:
    profile_path, plc, twin = rig

    async def main() -> Pump:
        profile = with_connection(load_profile(profile_path), tcp=f"127.0.0.1:{plc.port}")
        runtime = Runtime(profile, load_config(tmp_path / "agent.toml"), tmp_path / "state")
        assert isinstance(runtime.link, FleetLink)
        await asyncio.to_thread(twin.state, True, now_ms())
        pump = Pump(twin)
        task = asyncio.create_task(runtime.run())
        try:
            await wait_until(lambda: bool(twin.births()), 15, "NBIRTH")
            await wait_until(lambda: any(s.get("authority") == "returning"
                                         for s in pump.statuses), 20,
                             "authority returning: the twin is ALIVE over MQTT")
            await wait_until(lambda: len(pump.records) >= 5, 15, "telemetry records")
            pump.acking = False  # heartbeats go on: only the echo rule can see this
            await wait_until(lambda: runtime.link is not None and not runtime.link.connected,
                             10, "the echo rule: the twin no longer hears us")
            assert runtime.controller.link.value != "alive"
            return pump
        finally:
            pump.stop()
            runtime.request_stop()
            await asyncio.wait_for(task, 15)

    pump = asyncio.run(main())
    birth = sp.decode_payload(twin.births()[0].payload)
    hello = msgpack.unpackb(birth.metric(names.M_HELLO).value)
    assert hello["device_id"] == DEVICE
    seqs = [s for s, _ in pump.records]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs), seqs
