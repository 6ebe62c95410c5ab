"""The agent configuration file: strict like a profile, every problem named by key path."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path

import pytest

from agent.config.agentconfig import AgentConfig, Role, load_config, parse_config
from agent.model.errors import ConfigError
from agent.model.mode import Mode
from agent.model.spool import Overflow

pytestmark = pytest.mark.timeout(10)

KEY = base64.b64encode(bytes(range(32))).decode()

GOOD = f"""
device_id = "tank-01"
mode = "active"

[twin]
host = "twin.example.net"
port = 17443
ca = "pki/ca.crt"
cert = "/etc/twinguard/device.crt"
key = "pki/device.key"

[telemetry]
every_n_polls = 2

[spool]
overflow = "stop"
max_records = 5000

[overrides.outputs.heater_power]
maximum = 80.0

[[trust]]
id = "alice"
role = "engineer"
public_key = "{KEY}"
"""


def parse(text: str) -> AgentConfig:
    return parse_config(tomllib.loads(text), "agent.toml", Path("/etc/twinguard"))


def test_a_full_configuration_parses() -> None:
    cfg = parse(GOOD)
    assert cfg.mode is Mode.ACTIVE
    assert cfg.twin is not None
    assert cfg.twin.ca_file == Path("/etc/twinguard/pki/ca.crt")
    assert cfg.twin.cert_file == Path("/etc/twinguard/device.crt")
    assert cfg.twin.server_name == "twin.example.net"
    assert cfg.telemetry.every_n_polls == 2
    assert cfg.spool.overflow is Overflow.STOP
    assert cfg.overrides.outputs == {"heater_power": {"maximum": 80.0}}
    assert cfg.trust[0].role is Role.ENGINEER and cfg.trust[0].public_key == bytes(range(32))


def test_defaults_are_shadow_and_no_twin() -> None:
    cfg = load_config(None)
    assert cfg.mode is Mode.SHADOW and cfg.twin is None


TWIN = "[twin]\nhost = 'x'\nport = 1\nca = 'a'\ncert = 'b'\nkey = 'c'\n"


def test_backup_endpoints_follow_the_first_in_order() -> None:
    cfg = parse(TWIN + "server_name = 'twin.example'\nbackups = ['b.example:2', '[fd00::7]:3', "
                "{host = '10.0.0.9', port = 4, server_name = 'c.example'}]")
    assert cfg.twin is not None
    assert [(e.host, e.port, e.server_name) for e in cfg.twin.endpoints] == [
        ("x", 1, "twin.example"), ("b.example", 2, "b.example"), ("fd00::7", 3, "fd00::7"),
        ("10.0.0.9", 4, "c.example")]
    assert [str(e) for e in cfg.twin.endpoints] == ["x:1", "b.example:2", "[fd00::7]:3",
                                                     "10.0.0.9:4"]
    assert parse(TWIN).twin.backups == ()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ('mod = "active"', "mod", "did you mean 'mode'"),
        ('mode = "activ"', "mode", "expected one of"),
        ("[twin]\nhost = 'x'\nport = 0", "twin.port", "between 1 and 65535"),
        ("[twin]\nport = 1\nca='a'\ncert='b'\nkey='c'", "twin.host", "missing required key"),
        ("[spool]\noverflow = 'drop'", "spool.overflow", "expected one of"),
        ("[telemetry]\nrate = 1", "telemetry.rate", "unknown key"),
        ("[overrides.outputs.heater_power]\nsafe_valu = 1.0",
         "overrides.outputs.heater_power.safe_valu", "did you mean 'safe_value'"),
        ("[overrides.timing]\npoll_period_s = 'fast'", "overrides.timing.poll_period_s",
         "expected a number"),
        (TWIN + "backups = 'b:1'", "twin.backups", "must be a list"),
        (TWIN + "backups = ['b']", "twin.backups[0]", "is not host:port"),
        (TWIN + "backups = ['b:99999']", "twin.backups[0]", "port must be in 1..65535"),
        (TWIN + "backups = ['::1:5']", "twin.backups[0]", "[address]:port"),
        (TWIN + "backups = ['x:1']", "twin.backups[0]", "x:1 is already an endpoint"),
        (TWIN + "backups = ['b:2', 'b:2']", "twin.backups[1]", "b:2 is already an endpoint"),
        (TWIN + "backups = [{host = 'b'}]", "twin.backups[0].port", "missing required key"),
        (TWIN + "backups = [{host = 'b', port = 2, sni = 'c'}]", "twin.backups[0].sni",
         "unknown key"),
        (TWIN + "backups = [7]", "twin.backups[0]", "string or a {host, port} table"),
        ("[[trust]]\nid = 'a'\nrole = 'boss'\npublic_key = 'AAAA'", "trust[0].role",
         "expected one of"),
        ("[[trust]]\nid = 'a'\nrole = 'safety'\npublic_key = 'AAAA'", "trust[0].public_key",
         "32 bytes"),
        ("[[trust]]\nid = 'a'\nrole = 'safety'\npublic_key = '!!'", "trust[0].public_key",
         "base64"),
    ],
)
def test_each_problem_names_its_key(text: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert any(p.path == path and reason in p.reason for p in err.value.problems), \
        err.value.problems


def test_a_missing_file_and_bad_syntax_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("mode = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(bad)
