"""Recommendations die with the twin session that sent them (issue 10, item 5), end to end.

Real processes: sim PLC + sim twin + ``twinguard run``; what was written is read from the
sim PLC's write log.

* A recommendation of epoch 1 is being written; the twin is killed (kill -9) and a new
  twin process (a new epoch, which never sent it) starts on the same port. The agent sheds
  authority (the heater holds: ``on_twin_loss = "hold"``), gives it to the new twin after
  the return hold-off, and never writes towards the old value again; a recommendation of
  the new twin is written.
* A recommendation accepted in shadow mode; a signed promotion to ``active`` lands: nothing
  of it is written; one sent after the promotion is.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from bundle_kit import Kit
from test_e2e_twin_control import coupler

from sim.stack import (
    DEVICE_ID,
    SimTwinProcess,
    Stack,
    output_writes,
    recommend_script,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HB_ADDRESS = 200  # plc_watchdog.heartbeat_address
HEATER_SCALE = 0.1


def profile() -> str:
    """sim-tank without the PLC program (the heater starts at 0 and holds where it is
    put), auto recovery, the twin's authority back 0.5 s after it is eligible."""
    return coupler()


def heater(stack: Stack, since: float) -> list[tuple[float, float]]:
    """(t, %) of every heater_power write the PLC accepted since ``since``."""
    return [(w["t"], w["values"][w["names"].index("heater_power")] * HEATER_SCALE)
            for w in output_writes(stack.plc.write_log(), "heater_power", since=since)]


def plc_heartbeat_after(stack: Stack, t: float, timeout: float = 10.0) -> float:
    """Wait for a PLC-watchdog heartbeat write after ``t`` (the agent's loop ran on)."""
    got = wait_for(lambda: [w["t"] for w in stack.plc.write_log()
                            if w["address"] == HB_ADDRESS and w["t"] > t], timeout,
                   f"a PLC heartbeat after {t}")
    return float(got[0])


def assert_a_fresh_one_is_written(stack: Stack, value: float = 6.0) -> None:
    """A recommendation sent now reaches the PLC (so "nothing written" above meant
    something): the heater gets to ``value`` and never beyond it."""
    t_new = time.monotonic()
    stack.twin.request(recommend_script([(0.0, "heater_power", value, 30.0)]))
    wait_for(lambda: [v for _, v in heater(stack, t_new) if v >= value], 10,
             "a fresh recommendation is written")
    assert max(v for _, v in heater(stack, t_new)) <= value + 1e-6


def verdicts(stack: Stack) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in stack.twin.stats(last=1000)["results"]}


def test_a_restarted_twin_never_gets_the_old_epochs_recommendation_written() -> None:
    with Stack(profile_text=profile(), mode="active") as stack:
        stack.wait_state("normal")
        t_normal = stack.wait_authority("remote", timeout=30)
        epoch1 = stack.twin.request({"cmd": "ping"})["epoch"]
        stack.twin.request({"cmd": "recommend", "output": "heater_power", "value": 40.0,
                            "valid_s": 60.0, "id": "epoch1-r"})
        wait_for(lambda: [v for _, v in heater(stack, t_normal) if v >= 8.0], 10,
                 "the heater ramps towards the epoch-1 value")

        # kill -9 the twin; a new twin process (new epoch) on the same port
        port = stack.twin.port
        t_kill = time.monotonic()
        stack.twin.proc.kill()
        wait_for(lambda: "twin authority REMOTE -> LOCAL" in stack.agent_stderr(), 5,
                 "authority shed once the twin is gone")
        t_shed = time.monotonic()
        stack.twin = SimTwinProcess(stack.workdir, stack.workdir / "pki",
                                    extra_args=("--listen", f"127.0.0.1:{port}"))
        assert stack.twin.port == port
        epoch2 = stack.twin.request({"cmd": "ping"})["epoch"]
        assert epoch2 > epoch1
        t_back = stack.wait_authority("remote", since=t_kill, timeout=30)
        plc_heartbeat_after(stack, t_back + 2.0)  # 2 s of the new twin's authority

        after = heater(stack, t_shed)
        assert after == [], f"nothing towards the epoch-1 value after the shed: {after}"
        assert re.search(r"dropped \((heartbeat_lost|authority_shed)", stack.agent_stderr())

        # the new twin's own (from what the heater holds, upwards): it could write all along
        held = stack.plc.control.state()["outputs"]["heater_power"]
        assert_a_fresh_one_is_written(stack, value=round(held + 6.0, 1))
        assert stack.agent_state() == "normal"


def test_a_promotion_to_active_writes_nothing_accepted_in_shadow() -> None:
    kit = Kit.new()
    extra = f"[confirm]\nwindow_s = 3.0\n{kit.trust_toml()}"
    with Stack(profile_text=profile(), mode="shadow", config_extra=extra) as stack:
        t_normal = stack.wait_state("normal")
        stack.twin.request({"cmd": "recommend", "output": "heater_power", "value": 40.0,
                            "valid_s": 60.0, "id": "shadow-r"})
        wait_for(lambda: verdicts(stack).get("shadow-r"), 10, "the verdict")
        assert verdicts(stack)["shadow-r"]["reason"] == "ok"
        wait_for(lambda: "would have written heater_power=40" in stack.agent_stderr(), 10,
                 "shadow mode logs what it would have written")

        # two approvers promote to active: a signed bundle pushed by the twin
        active = stack.config_path.read_text().replace('mode = "shadow"', 'mode = "active"')
        bundle = stack.workdir / "active.bundle"
        bundle.write_bytes(kit.bundle(active, 1, ("ap1", "ap2"), device=DEVICE_ID))
        t_push = time.monotonic()
        assert stack.twin.request({"cmd": "push", "path": str(bundle)})["connections"] == 1
        wait_for(lambda: [r for r in stack.twin.stats(last=50)["config_results"]
                          if r["t"] >= t_push and r["reason"] == "accepted"], 10,
                 "the promotion accepted")
        t_active = wait_for(lambda: next((s[0] for s in stack.twin.stats(last=20)["statuses"]
                                          if s[0] >= t_push and s[3] == "active"), None),
                            10, "the agent reports active")
        t_remote = stack.wait_authority("remote", since=t_active, timeout=30)
        plc_heartbeat_after(stack, t_remote + 2.0)  # 2 s of active mode with authority
        assert stack.agent_state() == "normal"
        assert heater(stack, t_normal) == [], "nothing of the shadow recommendation"
        assert "dropped (mode_changed" in stack.agent_stderr()

        assert_a_fresh_one_is_written(stack)  # one sent once active is
