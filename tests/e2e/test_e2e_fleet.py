"""Fail-safe end to end through a broker (issue 15, FLEET.md §7.3 and §7.9), real processes:
mosquitto, the sim MQTT twin, the sim PLC and `twinguard run` with ``[twin] transport =
"mqtt"`` (:class:`sim.fleet_stack.FleetStack`).

Each test makes the fault happen for real (SIGSTOP the twin or the broker, SIGKILL the
broker, forge, replay, delay) and asserts from outside: the sim PLC's write log (the safe
set, when it was written) and ``twinguard status --json``. As in test_e2e_failsafe.py the
heater's ``on_twin_loss = "safe"`` in active mode makes the twin's loss a hazard, so the
loss shows as the safe set at the PLC.

Where a deadline is measured from the last heartbeat, that heartbeat is the last one an
observer (a second subscriber to the fan-out topic) received before the fault; its send
time comes from the twin's own record (by seq, read after the twin runs again): the agent
cannot have heard it earlier, so "not before the deadline" cannot fail by load, and
"within one poll of it" is as tight as test_e2e_failsafe.py's.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.model.messages import Heartbeat
from agent.protocol.fleet import envelope
from agent.protocol.fleet.names import heartbeat_topic
from sim.broker import locate
from sim.fleet_stack import HOST_ID, FleetStack
from sim.stack import DEVICE_ID, output_writes, sim_tank_text, spool_seqs, wait_for

pytest.importorskip("aiomqtt", reason="the fleet extra is not installed")
pytest.importorskip("agent.io.fleet.link", reason="no FleetLink in this tree (branch fleet-link)")
if locate() is None:
    pytest.skip("no mosquitto: python -m sim.broker fetch", allow_module_level=True)

from sim.broker.probe import Probe
from sim.twin.mqtt import load_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

HEATER_SAFE_RAW = 0
TIMEOUT_S = 0.5  # sim-tank heartbeat_timeout_s
POLL_MARGIN_S = 0.25  # one poll and the write (as test_e2e_failsafe.py)
HB = heartbeat_topic(HOST_ID)


def guarded(holdoff_s: float = 0.5) -> str:
    """sim-tank with the heater's ``on_twin_loss = "safe"`` (run in active mode)."""
    text = re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", sim_tank_text())
    return re.sub(r'(?m)^on_twin_loss = "release"', 'on_twin_loss = "safe"', text, count=1)


@pytest.fixture
def stack() -> Iterator[FleetStack]:
    with FleetStack(profile_text=guarded(), mode="active") as s:
        yield s


def alive(stack: FleetStack) -> float:
    """Wait until the agent is NORMAL with the twin ALIVE; when (the twin's clock)."""
    t = stack.wait_state("normal", timeout=30)
    stack.wait_twin("alive", timeout=30)
    return t


def safe_writes(stack: FleetStack, since: float) -> list[dict[str, Any]]:
    return output_writes(stack.plc.write_log(), "heater_power", since=since)


def observer(stack: FleetStack, broker: int = 0) -> Probe:
    """A second subscriber to the heartbeat fan-out (its own certificate, CN observer)."""
    b = stack.brokers[broker]
    probe = Probe(b.port, b.pki.client_context("observer"), "observer")
    probe.subscribe(HB, qos=0)
    probe.wait_message(HB)
    return probe


def last_seq(probe: Probe, before: float) -> int:
    """The seq of the last verified-looking heartbeat ``probe`` received before ``before``."""
    seqs = []
    for m in probe.messages(HB):
        if m.t < before:
            _, _, body = envelope.unpack(m.payload)
            seqs.append(int(body["seq"]))
    assert seqs, "no heartbeat arrived before the fault"
    return max(seqs)


def sent_at(stack: FleetStack, seq: int, epoch: int) -> float:
    """When (monotonic) the twin made heartbeat ``seq`` of ``epoch`` (its own record)."""
    for t, _, ep, s, _ in stack.twin.stats(last=2000)["heartbeats"]:
        if (ep, s) == (epoch, seq):
            return float(t)
    raise AssertionError(f"the twin has no record of heartbeat {epoch}/{seq}")


def first_safe(stack: FleetStack, since: float, within_s: float = 10.0) -> dict[str, Any]:
    writes = wait_for(lambda: safe_writes(stack, since), within_s, "the safe set at the PLC")
    first: dict[str, Any] = writes[0]
    assert first["values"][0] == HEATER_SAFE_RAW
    return first


@pytest.mark.parametrize("bridged", [False, True], ids=["one-broker", "bridged-pair"])
def test_a_frozen_twin_drives_the_safe_state_within_t_plus_one_poll(bridged: bool) -> None:
    """With ``bridged`` the agent is on the plant broker, the twin on the site broker."""
    with FleetStack(profile_text=guarded(), mode="active", bridged=bridged) as stack:
        t_normal = alive(stack)
        probe = observer(stack)  # on the agent's broker
        try:
            epoch = stack.twin.stats(last=0)["epoch"]
            os.kill(stack.twin.pid, signal.SIGSTOP)
            t_stop = time.monotonic()
            try:
                first = first_safe(stack, t_normal)
            finally:
                os.kill(stack.twin.pid, signal.SIGCONT)
            deadline = sent_at(stack, last_seq(probe, t_stop + 1e-3), epoch) + TIMEOUT_S
        finally:
            probe.close()
        assert first["t"] >= deadline, "the safe state was written before the deadline"
        assert first["t"] - deadline < POLL_MARGIN_S, "written at the deadline, not later"
        stack.wait_state("failsafe", since=deadline)


def test_a_frozen_broker_drives_the_safe_state_within_t(stack: FleetStack) -> None:
    t_normal = alive(stack)
    t_freeze = time.monotonic()
    stack.brokers[0].freeze()
    try:
        first = first_safe(stack, t_normal)
    finally:
        stack.brokers[0].thaw()
    # nothing came through after t_freeze: the agent's last heartbeat is older than that
    assert t_freeze < first["t"] < t_freeze + TIMEOUT_S + POLL_MARGIN_S


def test_a_killed_broker_drives_the_safe_state_at_once(stack: FleetStack) -> None:
    t_normal = alive(stack)
    t_kill = time.monotonic()
    stack.brokers[0].kill()
    first = first_safe(stack, t_normal)
    # the connection is gone at once: no waiting for the heartbeat timeout
    assert t_kill < first["t"] < t_kill + TIMEOUT_S
    lost = next(line for line in stack.agent_stderr().splitlines() if "ALIVE -> LOST" in line)
    assert "twin link disconnected" in lost, lost  # the connection, not the silence


def test_a_forged_state_online_without_heartbeats_gives_no_authority() -> None:
    # the twin-host certificate's holder says "online" (STATE, retained) and proves nothing
    with FleetStack(profile_text=guarded(), mode="active",
                    twin_args=("--no-heartbeats",)) as stack:
        wait_for(lambda: stack.twin.stats(last=0)["devices"].get(DEVICE_ID, {})
                 .get("births", 0) >= 1, 30, "the agent's NBIRTH (STATE online gated it)")
        stack.twin.request({"cmd": "forge_state_online"})
        end = time.monotonic() + 3.0
        seen = []
        while time.monotonic() < end:
            snap = stack.wait_status(lambda s: True, 10, "a status snapshot")
            seen.append((snap["state"], snap["twin"]["state"], snap["authority"]["state"]))
            time.sleep(0.2)
        assert all(twin != "alive" for _, twin, _ in seen), seen  # STATE is no heartbeat
        assert {auth for _, _, auth in seen} == {"local"}, seen  # no authority to the twin
        assert {state for state, _, _ in seen} <= {"starting", "failsafe"}, seen
        assert stack.status_json()["twin"]["link"]["sessions"] == 0


def test_a_heartbeat_from_a_device_certificate_is_refused_by_the_broker(
        stack: FleetStack) -> None:
    """A heartbeat signed with the twin's own key, published with a device's certificate:
    the ACL refuses it (PUBACK 0x87), so it cannot keep the agent alive once the twin
    stops."""
    t_normal = alive(stack)
    key = load_key(stack.twin.key_path)
    broker = stack.brokers[0]
    forger = Probe(broker.port, broker.pki.client_context("sim-tank-02"), "forger")
    try:
        stack.twin.request({"cmd": "stop"})
        epoch = stack.twin.stats(last=0)["epoch"]
        seq = stack.twin.stats(last=0)["seq"]
        codes = []
        t_stop = time.monotonic()
        for i in range(1, 11):
            wire = envelope.seal(Heartbeat(epoch, seq + 1000 + i, True,
                                           time.time_ns() // 1_000_000), key, host=HOST_ID,
                                 to=envelope.FANOUT, epoch=epoch, seq=seq + 1000 + i,
                                 sent_ms=time.time_ns() // 1_000_000)
            codes.append(forger.publish(HB, wire, qos=1))
            time.sleep(0.1)
        assert set(codes) == {0x87}
        first = first_safe(stack, t_normal)
        assert first["t"] > t_stop
    finally:
        forger.close()


def _refused(snap: dict[str, Any]) -> dict[str, int]:
    """The link's refusals by reason from a status snapshot (``twin.link.refused``)."""
    rows = snap["twin"]["link"].get("refused", [])
    if isinstance(rows, dict):
        return {str(k): int(v) for k, v in rows.items()}
    return {str(r["reason"]): int(r["count"]) for r in rows}


def test_unsigned_and_replayed_heartbeats_are_ignored_and_counted(stack: FleetStack) -> None:
    alive(stack)
    before = _refused(stack.status_json())
    stack.twin.request({"cmd": "replay", "count": 3})
    for kind in ("forged", "zero_sig", "garbage"):
        stack.twin.request({"cmd": "unsigned", "kind": kind})

    def grew(snap: dict[str, Any]) -> bool:
        got = _refused(snap)
        return all(got.get(r, 0) - before.get(r, 0) >= n
                   for r, n in (("replayed", 3), ("signature", 2), ("malformed", 1)))

    snap = stack.wait_status(grew, 10, "the refusals counted")
    assert snap["twin"]["state"] == "alive", "refused heartbeats change nothing"
    assert stack.agent_state() == "normal"


def test_delayed_heartbeats_are_a_loss_by_the_echo_rule() -> None:
    """The delay grows in steps shorter than the heartbeat timeout, so the heartbeats never
    stop for T: what finds the delaying broker is the echo in the acks."""
    with FleetStack(profile_text=guarded(), mode="active", echo_timeout_s=1.5,
                    twin_args=("--ack-period", "0.2")) as stack:
        t_normal = alive(stack)
        delay = 0
        while not safe_writes(stack, t_normal) and delay < 4000:
            delay += 100
            stack.twin.request({"cmd": "delay", "ms": delay})
            time.sleep(0.3)
        first_safe(stack, t_normal)
        lines = stack.agent_stderr().splitlines()
        down = next(line for line in lines if "twin link down:" in line)
        assert "does not hear us" in down, down  # the first loss: the echo rule ...
        lost = next(line for line in lines if "ALIVE -> LOST" in line)
        assert "twin link disconnected" in lost, lost  # ... not the heartbeat monitor


def test_a_backlog_after_a_reconnect_arrives_historical_with_no_gap(
        stack: FleetStack) -> None:
    alive(stack)
    wait_for(lambda: (stack.twin.telemetry()["acked"] or 0) > 10, 20, "telemetry acked")
    broker = stack.brokers[0]
    broker.kill()
    time.sleep(2.0)  # the agent spools what it cannot send
    before = stack.twin.telemetry()["max_seq"]
    broker.start()  # the same port
    stack.wait_twin("alive", timeout=30)
    tele = wait_for(lambda: (t := stack.twin.telemetry(seqs=True))["historical"] > 0
                    and t["holes"] == 0 and t["max_seq"] > before + 20 and t, 30,
                    "the backlog, then live telemetry")
    order = tele["order"]
    assert sorted(order) == list(range(min(order), max(order) + 1)), "a hole"
    assert tele["frontier"] == tele["max_seq"]


def test_failover_between_two_brokers_keeps_telemetry_continuous() -> None:
    with FleetStack(profile_text=guarded(), mode="active", brokers=2) as stack:
        alive(stack)
        wait_for(lambda: (stack.twin.telemetry()["received"] or 0) > 20, 20, "telemetry")
        at_kill = stack.twin.telemetry()["max_seq"]
        stack.brokers[0].kill()
        stack.wait_twin("alive", timeout=30)
        tele = wait_for(lambda: (t := stack.twin.telemetry(seqs=True))["max_seq"]
                        > at_kill + 30 and t["holes"] == 0 and t, 30,
                        "telemetry through the second broker")
        order = tele["order"]
        assert sorted(order) == list(range(min(order), max(order) + 1)), "a hole"
        assert stack.twin.stats(last=0)["devices"][DEVICE_ID]["server"] == 1


def test_a_forged_ack_deletes_nothing(stack: FleetStack) -> None:
    alive(stack)
    wait_for(lambda: (stack.twin.telemetry()["acked"] or 0) > 5, 20, "telemetry acked")
    stack.twin.request({"cmd": "ack", "on": False})  # the real acks stop moving
    acked = stack.twin.telemetry()["acked"]
    # a genuine ack deletes what it covers (so a forged one that were taken would too)
    wait_for(lambda: min(spool_seqs(stack.state_dir), default=acked + 1) > acked, 10,
             "the acknowledged records deleted from the spool")
    wait_for(lambda: (stack.twin.telemetry()["max_seq"] or 0) > acked + 10, 20,
             "records the twin holds but has not acknowledged")
    before = _refused(stack.status_json()).get("signature", 0)
    forged = stack.twin.request({"cmd": "forge_ack"})["forged"]
    assert forged[0]["upto"] > acked + 10
    stack.wait_status(lambda s: _refused(s).get("signature", 0) > before, 10,
                      "the forged ack refused")
    held = spool_seqs(stack.state_dir)
    assert [q for q in range(acked + 1, forged[0]["upto"] + 1) if q not in held] == [], \
        "the agent deleted records the twin never acknowledged"
    assert stack.status_json()["twin"]["state"] == "alive"
