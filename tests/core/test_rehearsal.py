"""The fault-drill rehearsal (sans-IO): each scenario played on a copy of a live controller.

The live controller is driven as the runtime drives it (``core_kit.Plant``) until the twin
has authority; the rehearsal then plays on a copy. Every expectation is derived from the
profile under test (its timeouts, safe values, local values, rates, policies), and the live
controller must come out exactly as a twin of it that was never rehearsed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from core_kit import DT, FLAG_COIL, Plant, profile, remote

from agent.cli.drill import render
from agent.cli.drillpage import page
from agent.core.drillreport import DrillReport, Step, report_from_dict
from agent.core.drills import SCENARIOS
from agent.core.rehearsal import Hooks, Rehearsal
from agent.io.audit import transition_record
from agent.io.guard import guard_values
from agent.model.errors import DrillRefused
from agent.model.mode import Mode
from agent.model.profile import PLC_REMOTE, Profile
from agent.protocol.modbus.codec import encode_output

pytestmark = pytest.mark.timeout(30)


def shedding(**kw: Any) -> Profile:
    """sim-tank with a [plc_remote] flag: the heater is released to the PLC program, the
    cooling valve ramps to a local value; a short return hold-off."""
    return profile(heater={"on_twin_loss": "release"},
                   cooling={"on_twin_loss": "local", "local_value": 40.0},
                   plc_remote=FLAG_COIL, authority={"return_holdoff_s": 0.5}, **kw)


def hooks(p: Plant) -> Hooks:
    return Hooks(encode=encode_output,
                 audit_kind=lambda *a: transition_record(*a)[0].value,
                 hang_values=guard_values(p.profile, p.c.last_written))


def rehearse(p: Plant, scenario: str, target: str | None = None) -> DrillReport:
    return Rehearsal(p.c, scenario, p.now, target=target, hooks=hooks(p)).play()


def first(report: DrillReport, kind: str, text: str = "") -> Step:
    return next(s for s in report.steps if s.kind == kind and text in s.text)


def writes_of(report: DrillReport, output: str) -> list[float]:
    return [w.value for w in report.writes if w.output == output]


def fingerprint(p: Plant) -> tuple[Any, ...]:
    c = p.c
    return (c.state, c.authority.state, c.link, dict(c.last_written), dict(c.plc_holds),
            dict(c.unconfirmed), c.monitor.seq, c.monitor.epoch, dict(c.local_ramps),
            c.machine.cause, c.authority.cause)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_live_controller_is_untouched_and_decides_as_if_no_drill_ran(
        scenario: str) -> None:
    prof = shedding()
    live, twin = remote(prof), remote(prof)
    before = fingerprint(live)
    report = rehearse(live, scenario)
    assert report.steps and report.steps[0].kind == "fault"
    assert fingerprint(live) == before == fingerprint(twin)
    # the same faults afterwards: the rehearsed controller decides exactly as the other
    for plant in (live, twin):
        plant.run(0.5)
        plant.hot = 50.0
        plant.run(0.5)
    assert [d.writes for d in live.decisions] == [d.writes for d in twin.decisions]
    assert fingerprint(live) == fingerprint(twin)
    times = [s.t for s in report.steps]
    assert times == sorted(times) and times[0] >= 0.0


def test_twin_outage_sheds_at_the_heartbeat_timeout_per_output_policy() -> None:
    prof = shedding()
    p = remote(prof)
    report = rehearse(p, "twin-outage")
    timing, flag = prof.timing, prof.plc_remote
    assert flag is not None
    assert first(report, "twin", "-> LATE").t == pytest.approx(timing.heartbeat_late_s)
    shed = first(report, "authority", "REMOTE -> LOCAL")
    assert shed.t == pytest.approx(timing.heartbeat_timeout_s)
    assert report.start_state == report.end_state == "normal"  # production goes on
    assert all(s.state == "normal" for s in report.steps)
    # release: the flag handed back to the PLC program; local: a ramp at max_rate
    assert writes_of(report, PLC_REMOTE)[0] == flag.local_value
    cooling = prof.output("cooling_valve")
    ramp = writes_of(report, "cooling_valve")
    # the ramp ends where the PLC holds the local value's raw step
    assert cooling.local_value is not None
    assert encode_output(cooling, ramp[-1]) == encode_output(cooling, cooling.local_value)
    start = p.plc["cooling_valve"]  # what the (kit's) PLC holds
    assert cooling.max_rate is not None
    steps = [b - a for a, b in zip([start, *ramp], ramp, strict=False)]
    assert max(abs(s) for s in steps) <= cooling.max_rate * timing.poll_period_s + 1e-9
    assert "heater_power" not in {w.output for w in report.writes}  # released, not written
    # the raw encoding is the output's own
    w = next(w for w in report.writes if w.output == "cooling_valve")
    assert w.raw == encode_output(cooling, w.value)
    # back: ALIVE, then the auto return after its hold-off, the flag at remote_value
    back = first(report, "authority", "RETURNING -> REMOTE")
    returning = first(report, "authority", "LOCAL -> RETURNING")
    assert back.t - returning.t == pytest.approx(prof.authority.return_holdoff_s)
    assert writes_of(report, PLC_REMOTE)[-1] == flag.remote_value
    assert report.end_authority == "remote"
    assert any("regains authority after" in o for o in report.operator)
    assert any(a.startswith("authority: remote -> local") for a in shed.audit)


def test_twin_unhealthy_sheds_at_once() -> None:
    p = remote(shedding())
    report = rehearse(p, "twin-unhealthy")
    shed = first(report, "authority", "REMOTE -> LOCAL")
    assert shed.t == 0.0 and "unhealthy" in shed.text


@pytest.mark.parametrize("policy", ["auto", "manual"])
def test_sensor_fail_degrades_then_trips_and_recovers_by_the_policy(policy: str) -> None:
    prof = shedding(recovery={"policy": policy})
    p = remote(prof)
    report = rehearse(p, "sensor-fail")
    group = prof.groups[0]
    assert group.min_healthy == len(group.signals) - 1 and group.required  # what follows
    faults = [s for s in report.steps if s.kind == "fault"]
    assert len(faults) == 3 and group.signals[0] in faults[0].text
    degraded = first(report, "safety", "NORMAL -> DEGRADED")
    assert faults[0].t < degraded.t <= faults[0].t + DT + 1e-9
    failsafe = first(report, "safety", "-> FAILSAFE")
    assert faults[1].t < failsafe.t <= faults[1].t + DT + 1e-9
    assert "TRIP" in failsafe.text
    # the safe set, each output to its safe_value (a ramp output at its max_rate)
    last = report.last_written()
    for o in prof.outputs:
        assert last[o.name] == o.safe_value
    enter = first(report, "write", "enter safe state")
    assert all(w.why.startswith("safe set") for w in enter.writes)
    assert any(a.startswith("failsafe_enter:") for a in failsafe.audit)
    recovering = first(report, "safety", "-> RECOVERING")
    normal = first(report, "safety", "RECOVERING -> NORMAL")
    if policy == "manual":
        ack = first(report, "operator", "acknowledges")
        assert "accepted" in ack.text and recovering.t < ack.t <= normal.t
        assert "ACK" in normal.text
        assert any(f"GPIO {prof.board.reset_button}) for {prof.board.reset_hold_s:g} s" in o
                   and "twinguard ack" in o for o in report.operator)
    else:
        assert normal.t - recovering.t == pytest.approx(prof.recovery.holdoff_s)
        assert not [s for s in report.steps if "acknowledges" in s.text]
    assert report.end_state == "normal" and report.end_authority == "remote"


def test_sensor_disagree_excludes_the_channel_and_keeps_running() -> None:
    prof = shedding()
    report = rehearse(remote(prof), "sensor-disagree")
    channel = prof.groups[0].signals[-1]
    first(report, "safety", "NORMAL -> DEGRADED")
    assert not [s for s in report.steps if s.state == "failsafe"]
    assert any(f"{channel} disagrees" in o for o in report.operator)


def test_sensor_drills_on_another_group_and_refusals() -> None:
    prof = shedding()
    p = remote(prof)
    report = rehearse(p, "sensor-fail", "pressure")
    assert prof.group("pressure").signals[0] in report.steps[0].text
    with pytest.raises(DrillRefused, match="no group 'nope'"):
        Rehearsal(p.c, "sensor-fail", p.now, target="nope")
    with pytest.raises(DrillRefused, match="unknown scenario"):
        Rehearsal(p.c, "meteor", p.now)
    with pytest.raises(DrillRefused, match="no trip 'nope'"):
        Rehearsal(p.c, "trip", p.now, target="nope")


def test_plc_silent_fails_safe_and_the_plc_watchdog_falls_back() -> None:
    prof = shedding()
    report = rehearse(remote(prof), "plc-silent")
    failsafe = first(report, "safety", "-> FAILSAFE")
    assert "PLC_UNREACHABLE" in failsafe.text and failsafe.t <= DT + 1e-9
    fell = first(report, "plc")
    assert fell.t == pytest.approx(prof.plc_watchdog.expected_timeout_ms / 1000)
    unacked = first(report, "write", "does not answer")
    assert {w.output: w.value for w in unacked.writes} == {
        **{o.name: o.safe_value for o in prof.outputs},
        PLC_REMOTE: prof.plc_remote.remote_value if prof.plc_remote else None}
    assert report.end_state == "normal"


def test_python_hang_the_native_watchdog_fires_then_failsafe() -> None:
    prof = shedding()
    p = remote(prof)
    report = rehearse(p, "python-hang")
    deadline = prof.timing.watchdog_deadline_s
    fire = first(report, "watchdog")
    assert fire.t == pytest.approx(deadline)
    assert {w.output: w.value for w in fire.writes} == guard_values(prof, p.c.last_written)
    fault = first(report, "safety", "on FAULT")
    assert fault.t == pytest.approx(2 * deadline) and "agent hang" in fault.text


def test_trip_fails_safe_when_the_rising_group_crosses_the_limit() -> None:
    prof = shedding()
    p = remote(prof)
    report = rehearse(p, "trip")
    rule = prof.trips[0]
    group = prof.group(rule.group)
    assert rule.limit is not None and group.max_rate is not None
    base = max(p.c.readings[s].value or 0.0 for s in group.signals)
    failsafe = first(report, "safety", "-> FAILSAFE")
    assert rule.name in failsafe.text
    expected = (rule.limit - base) / (group.max_rate / 2)  # the drill rises at half max_rate
    assert expected - DT <= failsafe.t <= expected + 2 * DT
    for o in prof.outputs:
        assert report.last_written()[o.name] == o.safe_value


def test_a_shadow_agent_without_authority_writes_nothing_on_a_twin_outage() -> None:
    p = Plant(shedding(), Mode.SHADOW)
    p.run(1.0)
    report = rehearse(p, "twin-outage")
    assert not report.writes and report.end_authority == "local"
    first(report, "twin", "-> LOST")


def test_report_json_text_and_page() -> None:
    report = rehearse(remote(shedding()), "sensor-fail")
    data = json.loads(json.dumps(report.to_dict()))
    assert report_from_dict(data) == report
    text = render(report)
    assert "would write" in text and report.outcome in text
    html = page(report)
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    svg = html[html.index("<svg"):html.index("</svg>") + 6]
    root = ET.fromstring(svg)
    lanes = {g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert {"lane-plant-safety", "lane-twin-authority", "lane-red-LED",
            "lane-would-write"} <= lanes
    body = html[html.index('<table id="steps">'):]
    assert body.count("<tr class=") == len(report.steps)


def test_a_drill_on_an_agent_still_starting_is_refused() -> None:
    p = Plant(shedding())  # never ticked: STARTING, the PLC's watchdog not yet verified
    with pytest.raises(DrillRefused, match="still starting"):
        Rehearsal(p.c, "twin-outage", p.now)
