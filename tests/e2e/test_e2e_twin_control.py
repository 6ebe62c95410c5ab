"""Twin control end to end (issue 5), real processes: sim PLC + sim twin + `twinguard run`.

Recommendations are scripted at the sim twin; what they did is read from the sim PLC's
write log. Telemetry is checked at the sim twin's sink (every seq received, frontier,
duplicates) and, after a kill -9, in the agent's spool file itself.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from typing import Any

import pytest
from test_e2e_authority import profile as authority_profile

from sim.stack import Stack, output_writes, recommend_script, sim_tank_text, spool_seqs, wait_for

pytestmark = [pytest.mark.slow]

HB_ADDRESS = 200  # plc_watchdog.heartbeat_address
HEATER_RATE = 20.0  # %/s
COOLING_RATE = 50.0
RESOLUTION = 0.1  # one raw step (scale 0.1)
JITTER_S = 0.015  # the agent limits by its tick times; the PLC logs arrival times


def assert_rate_limited(values: list[tuple[float, float]], rate: float) -> None:
    """Every step, and the ramp as a whole, within ``rate`` as the PLC saw it."""
    for (t0, v0), (t1, v1) in itertools.pairwise(values):
        assert abs(v1 - v0) <= rate * (t1 - t0 + JITTER_S) + RESOLUTION + 1e-6, (t0, v0, t1, v1)
    for i in range(len(values)):  # and over longer windows, where jitter cannot add up
        for j in range(i + 5, len(values)):
            (t0, v0), (t1, v1) = values[i], values[j]
            assert abs(v1 - v0) <= rate * (t1 - t0 + JITTER_S) + RESOLUTION + 1e-6


def profile(holdoff_s: float = 0.5) -> str:
    text = re.sub(r"(?m)^policy = .*$", 'policy = "auto"', sim_tank_text())
    return re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {holdoff_s}", text)


def coupler(heater: str = "hold", recovery_holdoff_s: float = 0.5) -> str:
    """sim-tank without the PLC program (the outputs start at 0 and stay where a master
    puts them), the twin's authority back 0.5 s after it is eligible, the heater's
    ``on_twin_loss`` as given."""
    text = authority_profile(heater=heater, holdoff_s=0.5)
    return re.sub(r"(?m)^holdoff_s = .*$", f"holdoff_s = {recovery_holdoff_s}", text)


def results(stack: Stack) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in stack.twin.stats(last=1000)["results"]}


def telemetry(stack: Stack, **flags: bool) -> dict[str, Any]:
    return stack.twin.request({"cmd": "telemetry", **flags})


def heater_values(stack: Stack, since: float) -> list[tuple[float, float]]:
    """(t, engineering value) of every heater_power write since ``since``."""
    return [(w["t"], w["values"][w["names"].index("heater_power")] * 0.1)
            for w in output_writes(stack.plc.write_log(), "heater_power", since=since)]


@pytest.mark.timeout(90)
def test_shadow_mode_never_writes_a_recommendation() -> None:
    items = [(0.2 * i, "heater_power" if i % 2 else "cooling_valve", float(10 + 7 * i % 90),
              1.5) for i in range(40)]
    with Stack(profile_text=profile()) as stack:
        t_normal = stack.wait_state("normal")
        assert stack.twin.request(recommend_script(items))["scheduled"] == 40
        wait_for(lambda: len(results(stack)) >= 40, 20, "40 verdicts")
        time.sleep(1.0)
        verdicts = results(stack)
        assert all(v["accepted"] and v["reason"] == "ok" for v in verdicts.values())
        writes = [w for w in stack.plc.write_log() if w["t"] >= t_normal]
        assert writes, "the PLC watchdog heartbeat goes on"
        assert {w["address"] for w in writes} == {HB_ADDRESS}, "only the heartbeat register"
        assert stack.agent_state() == "normal", "no safe state happened to excuse a write"
        shadows = [e for e in telemetry(stack, events=True)["event_records"]
                   if e.get("event") == "shadow"]
        assert {e["id"] for e in shadows} == set(verdicts), "each logged once as would-write"
        assert all(e["divergence"] == pytest.approx(e["value"] - e["actual"]) for e in shadows)
        assert "would have written" in stack.agent_stderr()


@pytest.mark.timeout(90)
def test_active_mode_clamps_rate_limits_and_rejects() -> None:
    with Stack(profile_text=coupler(), mode="active") as stack:
        stack.wait_state("normal")
        t_normal = stack.wait_authority("remote", timeout=30)
        stack.twin.request(recommend_script([
            (0.0, "heater_power", 30.0, 4.0), (0.0, "cooling_valve", 20.0, 4.0),
            (0.1, "heater_power", 150.0, 4.0), (0.1, "heater_power", 50.0, 0.0),
            (0.1, "heater_power", 50.0, 3600.0), (0.1, "stirrer", 50.0, 4.0)]))
        wait_for(lambda: len(results(stack)) >= 6, 10, "6 verdicts")
        reasons = sorted(r["reason"] for r in results(stack).values())
        assert reasons == ["expired", "ok", "ok", "out_of_limits", "too_long", "unknown_output"]
        heater = wait_for(lambda: [v for v in heater_values(stack, t_normal) if v[1] >= 30.0],
                          10, "heater ramps to 30 %")
        del heater
        time.sleep(4.5)  # the recommendations expire: writing stops, nothing else written
        values = heater_values(stack, t_normal)
        assert values[-1][1] == pytest.approx(30.0) and max(v for _, v in values) <= 30.0
        assert_rate_limited(values, HEATER_RATE)
        assert len(values) >= 25, "30 % at 20 %/s needs many steps at 20 Hz"
        cooling = [(w["t"], w["values"][w["names"].index("cooling_valve")] * 0.1)
                   for w in output_writes(stack.plc.write_log(), "cooling_valve", t_normal)]
        assert cooling[-1][1] == pytest.approx(20.0)
        assert_rate_limited(cooling, COOLING_RATE)
        t_end = values[-1][0]
        time.sleep(0.5)
        assert heater_values(stack, t_end + 1e-6) == [], "an expired recommendation is ignored"
        assert stack.agent_state() == "normal"


@pytest.mark.timeout(90)
def test_twin_loss_while_active_writes_the_safe_state() -> None:
    """The heater's ``on_twin_loss = "safe"``: the twin's supervision is a protection layer
    and its loss a hazard (issue 12; the other policies: test_e2e_authority)."""
    with Stack(profile_text=coupler(heater="safe", recovery_holdoff_s=30.0),
               mode="active") as stack:
        stack.wait_state("normal")
        t_normal = stack.wait_authority("remote", timeout=30)
        stack.twin.request(recommend_script([(0.0, "heater_power", 40.0, 30.0)]))
        wait_for(lambda: [v for v in heater_values(stack, t_normal) if v[1] >= 10.0], 10,
                 "heater follows the recommendation")
        stack.twin.request({"cmd": "stop"})
        t_stop = time.monotonic()
        safe = wait_for(lambda: [w for w in output_writes(stack.plc.write_log(), "heater_power",
                                                          t_stop) if w["values"][0] == 0],
                        5, "safe value written")
        stack.twin.request({"cmd": "resume"})  # healthy again, but the hold-off is 30 s
        time.sleep(2.0)
        after = heater_values(stack, safe[0]["t"])
        assert all(v == 0.0 for _, v in after), "the safe state's output policy took over"
        assert stack.plc.control.state()["outputs"]["heater_power"] == 0


@pytest.mark.timeout(120)
def test_telemetry_outage_is_delivered_in_order_after_reconnect() -> None:
    with Stack(profile_text=profile()) as stack:
        stack.wait_state("normal")
        wait_for(lambda: telemetry(stack)["received"] > 20, 10, "live telemetry")
        stack.twin.request({"cmd": "vanish", "s": 6.0})  # a 10-minute outage, compressed
        time.sleep(6.0)
        before = telemetry(stack)["received"]
        wait_for(lambda: telemetry(stack)["historical"] >= 80, 20, "the backlog as history")
        stack.agent.signal(15)  # type: ignore[union-attr]  # SIGTERM: flush, then compare
        assert stack.agent is not None and stack.agent.proc.wait(10) == 0
        stack.start_agent()  # drains whatever was left
        left = wait_for(lambda: not spool_seqs(stack.state_dir) and telemetry(stack, seqs=True),
                        30, "the spool drained")
        order = left["order"]
        first, last = min(order), max(order)
        assert set(range(first, last + 1)) <= set(order), "no seq missing"
        assert left["frontier"] == last and left["holes"] == 0
        assert left["received"] > before


def newest_seq(stack: Stack) -> int:
    """The highest telemetry seq committed to the agent's spool or received by the twin."""
    received = telemetry(stack)["max_seq"]
    return max([*spool_seqs(stack.state_dir), received or 0])


@pytest.mark.timeout(480)
def test_kill_9_fifty_times_loses_no_committed_record() -> None:
    """50 SIGKILLs, each at a random point **while telemetry flows**: the agent is killed
    only once it is demonstrably in the middle of its work (a session resumed at the
    twin, or, while the twin has vanished, new records committed to the spool), so that
    every kill can lose records in flight and no kill lands in the interpreter's start
    (which would prove nothing). That is what a count of resumes used to stand for; here
    it is a condition of each kill, whatever the machine's speed."""
    rng = random.Random(5)
    extra = "[telemetry]\nhistory_rate = 200.0\nwindow = 100\n"
    with Stack(profile_text=profile(), config_extra=extra, start_agent=False,
               twin_args=("--ack-every", "10")) as stack:
        sessions = 0  # kills that came after a session resumed at the twin
        for i in range(50):
            vanished = i % 5 == 0
            if vanished:
                stack.twin.request({"cmd": "vanish", "s": 1.0})  # a backlog to drain later
            resumes, newest = telemetry(stack)["resumes"], newest_seq(stack)
            agent = stack.start_agent()
            if vanished:
                wait_for(lambda n=newest: newest_seq(stack) > n, 30,
                         f"kill {i}: records committed while the twin is away", period=0.05)
            else:
                wait_for(lambda r=resumes: telemetry(stack)["resumes"] > r, 30,
                         f"kill {i}: a telemetry session resumed", period=0.05)
                sessions += 1
            time.sleep(rng.uniform(0.0, 0.8))
            assert agent.alive(), agent.stderr()[-2000:]
            agent.kill()  # SIGKILL
        spooled = spool_seqs(stack.state_dir)
        got = telemetry(stack, seqs=True)
        held = set(got["order"]) | set(spooled)
        first, last = min(held), max(held)
        missing = sorted(set(range(first, last + 1)) - held)
        assert missing == [], f"committed records lost: {missing[:10]}"
        assert sessions == 40 and got["resumes"] >= sessions
        stack.start_agent()  # after a restart every committed record reaches the twin
        wait_for(lambda: telemetry(stack)["frontier"] >= last, 60, "backlog delivered")
        final = telemetry(stack, seqs=True)
        # backlogs go out as history: judged after the last restart's drain (between the
        # kills a drain may not have begun within a kill's 0-0.8 s: CI once counted none)
        assert final["historical"] > 0, "the backlog was sent as history"
        assert set(range(first, last + 1)) <= set(final["order"])
        assert final["holes"] == 0
        assert final["duplicates"] <= final["resumes"] * 200, "resends bounded by the window"


@pytest.mark.timeout(120)
def test_size_bound_holds_through_an_outage_and_the_overflow_is_recorded() -> None:
    extra = "[spool]\nmax_records = 120\nmax_bytes = 1048576\n"
    with Stack(profile_text=profile(), config_extra=extra) as stack:
        stack.wait_state("normal")
        wait_for(lambda: telemetry(stack)["received"] > 10, 10, "live telemetry")
        stack.twin.request({"cmd": "vanish", "s": 8.0})  # ~160 polls into a 120-record spool
        sizes = []
        end = time.monotonic() + 7.5
        while time.monotonic() < end:
            sizes.append(len(spool_seqs(stack.state_dir)))
            time.sleep(0.25)
        assert max(sizes) <= 120, "the bound holds"
        assert max(sizes) >= 100, "the spool filled up"
        gap = wait_for(lambda: [e for e in telemetry(stack, events=True)["event_records"]
                                if e.get("event") == "gap"], 30, "the overflow event")
        assert gap
        ranges: list[tuple[int, int]] = []

        def unexplained() -> set[int]:
            ranges[:] = [(r[0], r[1]) for e in telemetry(stack, events=True)["event_records"]
                         if e.get("event") == "gap" for r in e["ranges"]]
            got = set(telemetry(stack, seqs=True)["order"])
            missing = set(range(min(got), max(got) + 1)) - got
            return {seq for seq in missing if not any(a <= seq <= b for a, b in ranges)}

        # never a silent loss: once the backlog is drained, every seq the twin lacks lies in
        # a recorded gap (a gap may also name records sent but not yet acknowledged)
        end = time.monotonic() + 30
        while (left := unexplained()) and time.monotonic() < end:
            time.sleep(0.25)
        assert not left, (sorted(left)[:10], ranges)
        assert sum(b - a + 1 for a, b in ranges) > 0, "records were dropped"


@pytest.mark.timeout(60)
def test_corrupt_spool_file_degrades_telemetry_never_control() -> None:
    with Stack(profile_text=profile(), start_agent=False) as stack:
        stack.state_dir.mkdir(parents=True, exist_ok=True)
        (stack.state_dir / "telemetry.sqlite").write_bytes(b"not a database" * 500)
        stack.start_agent()
        stack.wait_state("normal")  # control is not touched
        events = wait_for(lambda: [e for e in telemetry(stack, events=True)["event_records"]
                                   if e.get("event") == "quarantined"], 10, "quarantine event")
        assert "quarantined as telemetry.sqlite.corrupt-" in events[0]["text"]
        assert list(stack.state_dir.glob("telemetry.sqlite.corrupt-*"))
        wait_for(lambda: telemetry(stack)["received"] > 20, 10, "telemetry goes on")
