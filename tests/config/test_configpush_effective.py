"""Overrides applied to the hardware profile, cross-checked like profile problems."""

from __future__ import annotations

import pytest

from agent.config.agentconfig import Overrides
from agent.config.effective import effective_profile
from agent.config.profile.load import load_profile
from agent.model.errors import ConfigError

pytestmark = pytest.mark.timeout(10)

P = load_profile("sim-tank")


def problems(o: Overrides) -> list[str]:
    with pytest.raises(ConfigError) as info:
        effective_profile(P, o, "c.toml")
    return [f"{p.path}: {p.reason}" for p in info.value.problems]


def test_no_overrides_is_the_profile_itself() -> None:
    assert effective_profile(P, Overrides(), "c.toml") is P


def test_narrowing_applies() -> None:
    o = Overrides(timing={"poll_period_s": 0.1},
                  outputs={"heater_power": {"maximum": 80.0, "max_rate": 10.0}},
                  trips={"overtemperature": {"limit": 90.0}},
                  groups={"temperature": {"discrepancy": 2.0}})
    e = effective_profile(P, o, "c.toml")
    assert e.timing.poll_period_s == 0.1
    assert e.output("heater_power").maximum == 80.0 and e.output("heater_power").max_rate == 10
    assert e.trips[0].limit == 90.0 and e.group("temperature").discrepancy == 2.0
    assert e.output("cooling_valve") == P.output("cooling_valve")


@pytest.mark.parametrize(("o", "path"), [
    (Overrides(outputs={"heater_power": {"maximum": 120.0}}), "heater_power.maximum"),
    (Overrides(outputs={"heater_power": {"minimum": -1.0}}), "heater_power.minimum"),
    (Overrides(outputs={"heater_power": {"max_rate": 50.0}}), "heater_power.max_rate"),
    (Overrides(outputs={"heater_power": {"minimum": 10.0}}), "heater_power.minimum"),  # safe 0
    (Overrides(outputs={"cooling_valve": {"safe_value": 120.0}}), "cooling_valve.safe_value"),
    (Overrides(outputs={"pump": {"maximum": 1.0}}), "overrides.outputs.pump"),
    (Overrides(trips={"overtemperature": {"limit": 400.0}}), "overtemperature.limit"),
    (Overrides(groups={"temperature": {"discrepancy": 0.0}}), "temperature.discrepancy"),
    (Overrides(groups={"temperature": {"max_age_s": 0.01}}), "temperature.max_age_s"),
    (Overrides(timing={"poll_period_s": 0.3}), "watchdog_deadline_s"),
    (Overrides(timing={"watchdog_deadline_s": 2.0}), "watchdog_deadline_s"),
    (Overrides(timing={"heartbeat_late_s": 0.6}), "heartbeat_late_s"),
])
def test_cross_checks(o: Overrides, path: str) -> None:
    found = problems(o)
    assert any(path in p for p in found), found


def test_every_problem_is_reported() -> None:
    o = Overrides(outputs={"heater_power": {"maximum": 120.0}},
                  trips={"overtemperature": {"limit": 400.0}})
    assert len(problems(o)) == 2
