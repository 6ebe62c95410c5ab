"""Data minimisation end to end (issue 15 item 5): what the simulated twin received.

A real agent (``sim.stack.Stack``: sim PLC, sim twin, ``twinguard run``) runs with one
``[telemetry.policy]`` that gives each signal of the sim tank a different rule, and the
device a keyed pseudonym; each test judges one rule by the records the sim twin's sink
holds (``{"cmd": "telemetry", "policy": true}``), never by what the agent says it did.
Then: an agent stopped with a window open and started again delivers the partial window,
counted with every poll it covered; and a policy change pushed by the sim twin is refused
with an engineer's signature and takes effect (by a hand-over restart) with an operator's,
every record at the twin carrying the policy it was made under.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bundle_kit import Kit
from test_e2e_config_push import Pusher

from agent.core.minimise import pseudonym
from sim.stack import DEVICE_ID, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEY = os.urandom(32)
POLICY = """
[telemetry.policy]
device = "pseudonym"
pseudonym_key = "pseudonym.key"

[telemetry.policy.signals]
temp_a = "send"
temp_b = "drop"
temp_c = { action = "quantize", step = 0.5 }
pressure_a = { action = "aggregate", window_s = 1 }
pressure = { action = "aggregate", window_s = 1 }
"""
# what the header must say (written out here, not computed by the code under test)
RULES = {"temp_b": ["drop"], "temp_c": ["quantize", 0.5], "pressure_a": ["aggregate", 1.0],
         "pressure": ["aggregate", 1.0]}
POLLS = 60  # poll records the twin must hold before the records are judged


def received(stack: Stack) -> dict[str, Any]:
    return stack.twin.request({"cmd": "telemetry", "policy": True, "events": True})


def received_when(stack: Stack, cond: Callable[[dict[str, Any]], bool], timeout: float,
                  what: str) -> dict[str, Any]:
    """What the twin holds, once ``cond`` holds for it (``wait_for``'s deadline)."""
    def check() -> dict[str, Any] | None:
        got = received(stack)
        return got if cond(got) else None

    result: dict[str, Any] = wait_for(check, timeout, what, period=0.2)
    return result


def start(policy: str) -> Stack:
    stack = Stack(config_extra=policy, start_agent=False)
    (stack.workdir / "pseudonym.key").write_bytes(KEY)
    stack.start_agent()
    return stack


@pytest.fixture(scope="module")
def plant() -> Iterator[tuple[Stack, dict[str, Any]]]:
    """One agent under the policy, until the twin holds ``POLLS`` polls and 3 windows."""
    with start(POLICY) as stack:
        got = received_when(
            stack, lambda t: len(t["polls"]) >= POLLS
            and sum(not a["partial"] for a in t["aggregate_records"]) >= 3,
            60, "poll records and three closed aggregation windows at the twin")
        yield stack, got


def test_send_arrives_as_read(plant: tuple[Stack, dict[str, Any]]) -> None:
    _, got = plant
    names = got["signal_names"]
    polls = len(got["polls"])
    assert names["signals.temp_a"]["records"] >= polls  # in every poll record ...
    assert names["signals.temp_a"]["raw"] == names["signals.temp_a"]["records"]  # ... raw too
    assert all(isinstance(p["signals"]["temp_a"]["value"], float) for p in got["polls"]
               if p["signals"]["temp_a"]["quality"] == "good")
    assert names["votes.temperature"]["records"] >= polls  # a group not listed: sent


def test_drop_never_reaches_the_twin(plant: tuple[Stack, dict[str, Any]]) -> None:
    _, got = plant
    assert got["received"] >= POLLS
    assert "signals.temp_b" not in got["signal_names"]
    assert all("temp_b" not in a["signals"] for a in got["aggregate_records"])
    # its exclusion details (which carry values) are withheld wherever temp_b is named
    for p in got["polls"]:
        for channel, _reason, detail in p["votes"]["temperature"]["excluded"]:
            assert channel != "temp_b" or detail == "withheld by policy"


def test_quantize_sends_multiples_of_the_step_and_no_raw(
        plant: tuple[Stack, dict[str, Any]]) -> None:
    _, got = plant
    names = got["signal_names"]
    assert names["signals.temp_c"]["records"] >= len(got["polls"])
    assert names["signals.temp_c"]["raw"] == 0  # the registers would give the exact value
    values = [p["signals"]["temp_c"]["value"] for p in got["polls"]
              if p["signals"]["temp_c"]["value"] is not None]
    assert len(values) >= POLLS // 2
    for v in values:
        assert math.isclose(v / 0.5, round(v / 0.5), abs_tol=1e-9), v


def test_aggregate_one_record_per_window_counting_every_poll(
        plant: tuple[Stack, dict[str, Any]]) -> None:
    _, got = plant
    assert "signals.pressure_a" not in got["signal_names"]
    assert "votes.pressure" not in got["signal_names"]
    closed = [a for a in got["aggregate_records"] if not a["partial"]]
    starts = [a["start"] for a in closed]
    assert starts == sorted(set(starts))  # one record per window, in order
    polls_t = sorted(p["t"] for p in got["polls"])
    for a in closed:
        assert a["window_s"] == 1.0 and a["end"] == a["start"] + 1.0
        assert math.isclose(a["start"], round(a["start"]), abs_tol=1e-9)  # aligned
        for series in (a["signals"]["pressure_a"], a["votes"]["pressure"]):
            if series["count"]:
                assert series["min"] <= series["mean"] <= series["max"]
        # every poll of the window is counted, as a value or as bad; judged only for
        # windows wholly inside the polls the twin kept (it keeps the last 2000)
        if a["seq"] <= got["frontier"] and polls_t[0] <= a["start"]:
            in_window = sum(a["start"] <= t < a["end"] for t in polls_t)
            s = a["signals"]["pressure_a"]
            assert s["count"] + s["bad"] == in_window > 0, a


def test_pseudonym_replaces_the_device_id_everywhere(
        plant: tuple[Stack, dict[str, Any]]) -> None:
    stack, got = plant
    name = pseudonym(KEY, DEVICE_ID)
    assert got["devices"] == {name: got["received"] - got["unheadered"]}
    everything = json.dumps([got["polls"], got["aggregate_records"], got["event_records"]])
    assert DEVICE_ID not in everything
    assert name in everything
    status = stack.status_json()["telemetry_policy"]
    assert status["sent_as"] == name and status["device"] == "pseudonym"


def test_every_record_carries_the_policy_in_force(plant: tuple[Stack, dict[str, Any]]) -> None:
    stack, got = plant
    (pid, seen), = got["policies"].items()
    assert seen["header"] == {"id": pid, "pseudonym": True, "rules": RULES}
    # only the spool's own event records go without the header
    spool_events = sum(e.get("type") == "spool_event" for e in got["event_records"])
    assert got["unheadered"] == spool_events
    status = stack.status_json()["telemetry_policy"]
    assert status["id"] == pid
    assert {r["name"]: r["action"] for r in status["rules"]} == {
        "pressure": "aggregate", "pressure_a": "aggregate", "temp_b": "drop",
        "temp_c": "quantize"}
    text = stack.status_text()
    assert f"{pid}: device pseudonym (as {pseudonym(KEY, DEVICE_ID)})" in text
    assert "temp_b drop" in text and "temp_c quantize step 0.5" in text


def test_the_open_window_is_flushed_on_stop_and_delivered_after_restart() -> None:
    policy = ('[telemetry.policy.signals]\n'
              'pressure_a = { action = "aggregate", window_s = 86400 }\n')
    with start(policy) as stack:
        wait_for(lambda: len(received(stack)["polls"]) >= 20, 30, "poll records")
        assert stack.agent is not None
        assert stack.agent.stop() == 0
        stack.start_agent()
        got = received_when(
            stack, lambda t: any(a["partial"] and a["seq"] <= t["frontier"]
                                 for a in t["aggregate_records"]),
            30, "the partial window after the restart")
        partial = next(a for a in got["aggregate_records"] if a["partial"])
        run1 = [p for p in got["polls"] if p["t"] <= partial["end"]]
        counted = sum(a["signals"]["pressure_a"]["count"] + a["signals"]["pressure_a"]["bad"]
                      for a in got["aggregate_records"] if a["end"] <= partial["end"])
        assert counted == len(run1) >= 20
        assert "signals.pressure_a" not in got["signal_names"]


def test_a_policy_change_is_an_operator_bundle_and_the_twin_sees_it_take_effect() -> None:
    kit = Kit.new()
    with Stack(config_extra=f"[confirm]\nwindow_s = 10.0\n{kit.trust_toml()}") as stack:
        pusher = Pusher(stack, kit)
        t_normal = stack.wait_state("normal")
        before = received_when(stack, lambda t: len(t["polls"]) >= 10, 30, "poll records")
        (old_id,) = before["policies"]
        assert before["signal_names"]["signals.temp_b"]["records"] >= 10
        text = pusher.base + '\n[telemetry.policy.signals]\ntemp_b = "drop"\n'

        refused = pusher.expect(kit.bundle(text, 5, ("eng1",), device=DEVICE_ID),
                                "role_not_allowed")
        assert "telemetry.policy.signals.temp_b may only be changed by role operator" in \
            refused["detail"]
        assert stack.status_json()["telemetry_policy"]["rules"] == []

        accepted = pusher.expect(kit.bundle(text, 6, ("op1",), device=DEVICE_ID), "accepted")
        assert "restart required" in accepted["detail"]
        stack.successor_pid()
        pusher.result("confirmed", t_normal, timeout=30)
        status = stack.status_json()["telemetry_policy"]
        assert status["rules"] == [{"name": "temp_b", "action": "drop", "window_s": None,
                                    "step": None}]
        new_id = status["id"]
        got = received_when(
            stack, lambda t: sum(p["policy"]["id"] == new_id for p in t["polls"]) >= 10, 30,
            "poll records under the new policy")
        assert set(got["policies"]) == {old_id, new_id}
        assert got["policies"][new_id]["header"]["rules"] == {"temp_b": ["drop"]}
        for p in got["polls"]:  # each record as the policy it names says
            assert ("temp_b" in p["signals"]) == (p["policy"]["id"] == old_id), p["policy"]
