"""``[telemetry.policy]``: parsing and its errors, the profile check, who may change it (a
signed bundle through the push path), the device name the feed derives from the key file.
(The status field: ``tests/io/test_status.py``.)"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from bundle_kit import Kit

from agent.config.agentconfig import AgentConfig, load_config, parse_config
from agent.config.policyconfig import check_policy
from agent.config.profile.load import load_profile
from agent.config.push import Accepted, Current, Reason, Rejected, Situation, evaluate
from agent.config.roles import owner
from agent.core.minimise import pseudonym
from agent.model.errors import ConfigError
from agent.model.mode import Mode
from agent.model.policy import Action, DeviceName, Rule, TelemetryPolicy
from agent.runtime.configsession import RESTART_PREFIXES
from agent.runtime.telemetry_feed import device_name
from sim.stack import NO_REALTIME, sim_tank_text

pytestmark = pytest.mark.timeout(30)

PROFILE = load_profile("sim-tank")
KIT = Kit.new()
POLICY = """
[telemetry.policy]
device = "pseudonym"
pseudonym_key = "keys/pseudonym.key"

[telemetry.policy.signals]
temp_a = "send"
temp_b = "drop"
temp_c = { action = "quantize", step = 0.5 }
pressure = { action = "aggregate", window_s = 60 }
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    """Every problem ``load_config`` reports for ``text``, as the CLI prints them."""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_a_policy_parses_into_rules_and_a_key_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(POLICY)
    policy = load_config(path).telemetry.policy
    assert policy.rules == {
        "temp_a": Rule(Action.SEND), "temp_b": Rule(Action.DROP),
        "temp_c": Rule(Action.QUANTIZE, step=0.5),
        "pressure": Rule(Action.AGGREGATE, window_s=60.0)}
    assert policy.device is DeviceName.PSEUDONYM
    assert policy.pseudonym_key == tmp_path.resolve() / "keys" / "pseudonym.key"
    assert policy.rule("pressure_b") == Rule(Action.SEND)  # not listed: sent
    assert AgentConfig.default().telemetry.policy == TelemetryPolicy()


@pytest.mark.parametrize(("toml", "expected"), [
    ('[telemetry.policy]\ndevise = "id"\n',
     "telemetry.policy.devise: unknown key (did you mean 'device'?)"),
    ('[telemetry.policy]\ndevice = "anonymous"\n',
     "telemetry.policy.device: expected one of 'id', 'pseudonym', got a string ('anonymous')"),
    ('[telemetry.policy]\ndevice = "pseudonym"\n',
     'telemetry.policy.pseudonym_key: missing: device = "pseudonym" needs a local secret'),
    ('[telemetry.policy]\npseudonym_key = "k"\n',
     'telemetry.policy.pseudonym_key: only with device = "pseudonym"'),
    ('[telemetry.policy.signals]\ntemp_a = "dorp"\n',
     "telemetry.policy.signals.temp_a: expected one of 'send', 'drop', 'aggregate', "
     "'quantize', got a string ('dorp') (did you mean 'drop'?)"),
    ('[telemetry.policy.signals]\ntemp_a = "aggregate"\n',
     "telemetry.policy.signals.temp_a: aggregate needs a window"),
    ('[telemetry.policy.signals]\ntemp_a = "quantize"\n',
     "telemetry.policy.signals.temp_a: quantize needs a step"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "quantize" }\n',
     "telemetry.policy.signals.temp_a.step: missing required key"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "quantize", step = 0 }\n',
     "telemetry.policy.signals.temp_a.step: must be at least 1e-09, got 0"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "aggregate", window_s = -1 }\n',
     "telemetry.policy.signals.temp_a.window_s: must be greater than 0, got -1"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "aggregate", window_s = 100000 }\n',
     "telemetry.policy.signals.temp_a.window_s: at most 86400 s (one day), got 100000"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "drop", step = 1 }\n',
     "telemetry.policy.signals.temp_a.step: only for action = \"quantize\", not 'drop'"),
    ('[telemetry.policy.signals]\ntemp_a = { action = "aggregate", window_s = 5, window = 5 }\n',
     "telemetry.policy.signals.temp_a.window: unknown key (did you mean 'window_s'?)"),
    ('[telemetry.policy.signals]\ntemp_a = 3\n',
     "telemetry.policy.signals.temp_a: expected a rule (a string or a table), got"),
    ('[telemetry.policy]\nsignals = "drop"\n',
     "telemetry.policy.signals: expected a table of name = rule"),
])
def test_config_errors_name_the_file_the_key_and_the_reason(toml: str, expected: str,
                                                            tmp_path: Path) -> None:
    found = problems(toml, tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith(str(tmp_path / "agent.toml") + ": "), found
    assert expected in found[0], found


def test_names_must_be_signals_or_groups_of_the_profile() -> None:
    config = parse_config(tomllib.loads(
        '[telemetry.policy.signals]\ntemp_d = "drop"\npresure = "drop"\npressure = "drop"\n'
        'temp_a = "drop"\n'), "agent.toml", Path("/"))
    with pytest.raises(ConfigError) as info:
        check_policy(PROFILE, config.telemetry.policy, "agent.toml")
    assert [str(p) for p in info.value.problems] == [
        "agent.toml: telemetry.policy.signals.temp_d: the profile has no signal or group "
        "'temp_d' (did you mean 'temp_c'?)",
        "agent.toml: telemetry.policy.signals.presure: the profile has no signal or group "
        "'presure' (did you mean 'pressure'?)"]


def current() -> Current:
    text = KIT.config()
    data = tomllib.loads(text)
    return Current(parse_config(data, "factory", Path("/")), data, PROFILE, 3, Path("/"))


def shadow() -> Situation:
    """A shadow-mode agent's situation now (the wall clock read when the test runs, not when
    the file was collected: a bundle issued later would read as from the future)."""
    return Situation(Mode.SHADOW, outputs_safe=False, wall_now=time.time())


@pytest.mark.parametrize("policy", [
    '[telemetry.policy.signals]\ntemp_b = "drop"\n',
    '[telemetry.policy.signals]\ntemp_c = { action = "quantize", step = 0.5 }\n',
    '[telemetry.policy]\ndevice = "pseudonym"\npseudonym_key = "p.key"\n',
])
def test_changing_the_policy_is_an_operator_bundle(policy: str) -> None:
    text = KIT.config(policy)
    outcome = evaluate(KIT.bundle(text, 4, ("op1",)), current(), shadow())
    assert isinstance(outcome, Accepted), outcome
    assert outcome.changes and all(p.startswith("telemetry.policy.") for p in outcome.changes)
    assert all(p.startswith(RESTART_PREFIXES) for p in outcome.changes)  # applied by restart
    for other in ("eng1", "saf1"):
        refused = evaluate(KIT.bundle(text, 5, (other,)), current(), shadow())
        assert isinstance(refused, Rejected)
        assert refused.reason is Reason.ROLE_NOT_ALLOWED
        assert "may only be changed by role operator" in refused.detail


def test_every_policy_key_path_belongs_to_the_operator() -> None:
    for path in ("telemetry.policy.device", "telemetry.policy.pseudonym_key",
                 "telemetry.policy.signals.temp_b",
                 "telemetry.policy.signals.temp_c.step",
                 "telemetry.policy.signals.pressure.window_s",
                 "telemetry.policy.signals.pressure.action"):
        assert owner(path).value == "operator", path


def test_a_pushed_policy_naming_no_profile_signal_is_invalid() -> None:
    text = KIT.config('[telemetry.policy.signals]\ntemp_z = "drop"\n')
    refused = evaluate(KIT.bundle(text, 4, ("op1",)), current(), shadow())
    assert isinstance(refused, Rejected) and refused.reason is Reason.INVALID_CONFIG
    assert "telemetry.policy.signals.temp_z: the profile has no signal or group" in \
        refused.detail


def test_the_device_name_comes_from_the_key_file_or_telemetry_stays_off(
        tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "tank-07"\n' + POLICY)
    config = load_config(path)
    with pytest.raises(FileNotFoundError):
        device_name(config)
    (tmp_path / "keys" / "pseudonym.key").write_bytes(b"x" * 31)
    with pytest.raises(ValueError, match="at least 32 bytes, this one has 31"):
        device_name(config)
    (tmp_path / "keys" / "pseudonym.key").write_bytes(b"x" * 32)
    assert device_name(config) == pseudonym(b"x" * 32, "tank-07")
    path.write_text('device_id = "tank-07"\n')
    assert device_name(load_config(path)) == "tank-07"



def test_the_agent_refuses_to_start_on_a_policy_that_names_no_profile_signal(
        tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "t1"\n[telemetry.policy.signals]\ntemp_z = "drop"\n')
    profile = tmp_path / "profile.toml"
    profile.write_text(sim_tank_text() + NO_REALTIME)
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--profile", str(profile), "--tcp",
         "127.0.0.1:1", "--config", str(path), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    assert (f"{path}: telemetry.policy.signals.temp_z: the profile has no signal or group "
            f"'temp_z' (did you mean 'temp_c'?)") in done.stderr
    assert "Traceback" not in done.stderr
