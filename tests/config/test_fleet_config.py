"""``[twin] transport = "mqtt"`` and the ``[fleet]`` table (issue 15): parsed strictly,
every problem named by file, key path and reason; the role table's rows for them."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path

import pytest

from agent.config.agentconfig import AgentConfig, Role, Transport, parse_config
from agent.config.roles import owner
from agent.model.endpoint import Endpoint
from agent.model.errors import ConfigError

pytestmark = pytest.mark.timeout(10)

KEY = base64.b64encode(bytes(range(32))).decode()
TWIN = """
device_id = "tank-01"
[twin]
transport = "mqtt"
ca = "pki/ca.crt"
cert = "pki/device.crt"
key = "pki/device.key"
"""
FLEET = f"""
[fleet]
servers = ["mqtts://broker-a.example.net:8883", "mqtts://[::1]:8884"]
group = "plant"
host_id = "twin"
twin_keys = ["{KEY}"]
"""


def parse(text: str) -> AgentConfig:
    return parse_config(tomllib.loads(text), "agent.toml", Path("/etc/twinguard"))


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert all(p.file == "agent.toml" for p in err.value.problems)
    return [(p.path, p.reason) for p in err.value.problems]


def test_mqtt_with_a_fleet_table_parses_without_host_or_port() -> None:
    cfg = parse(TWIN + FLEET)
    assert cfg.twin is not None and cfg.twin.transport is Transport.MQTT
    fleet = cfg.twin.fleet
    assert fleet is not None
    assert fleet.servers == (Endpoint("broker-a.example.net", 8883, "broker-a.example.net"),
                             Endpoint("::1", 8884, "::1"))
    assert (fleet.group, fleet.host_id, fleet.twin_keys) == ("plant", "twin", (bytes(range(32)),))
    assert (fleet.keepalive_s, fleet.echo_timeout_s) == (10, 3.0)
    assert cfg.twin.ca_file == Path("/etc/twinguard/pki/ca.crt")


def test_the_default_transport_is_tls_and_needs_no_fleet() -> None:
    cfg = parse('[twin]\nhost = "h"\nport = 1\nca = "a"\ncert = "b"\nkey = "c"\n')
    assert cfg.twin is not None and cfg.twin.transport is Transport.TLS
    assert cfg.twin.fleet is None


def test_mqtt_without_fleet_is_an_error() -> None:
    assert problems(TWIN) == [("fleet", 'missing: [twin] transport = "mqtt" needs a '
                                          "[fleet] table")]


def test_fleet_without_mqtt_is_an_error() -> None:
    text = '[twin]\nhost = "h"\nport = 1\nca = "a"\ncert = "b"\nkey = "c"\n' + FLEET
    assert problems(text) == [("fleet", 'only with [twin] transport = "mqtt"')]


def test_host_and_port_are_refused_with_mqtt() -> None:
    found = problems(TWIN.replace('transport = "mqtt"', 'transport = "mqtt"\nhost = "x"\n'
                                  "port = 8883") + FLEET)
    assert [p for p, _ in found] == ["twin.host", "twin.port"]
    assert "[fleet] servers" in found[0][1]


@pytest.mark.parametrize(("change", "path", "reason"), [
    ('transport = "amqp"', "twin.transport", "expected one of 'tls', 'mqtt'"),
    ("servers = []", "fleet.servers", "non-empty array"),
    ('servers = ["tcp://a:1"]', "fleet.servers[0]", "mqtts://host:port (TLS only)"),
    ('servers = ["mqtts://a"]', "fleet.servers[0]", "is not host:port"),
    ("servers = [1]", "fleet.servers[0]", "expected a string, got an integer (1)"),
    ('servers = ["mqtts://a:1", "mqtts://a:1"]', "fleet.servers[1]", "listed twice"),
    ('group = "a/b"', "fleet.group", "one topic level"),
    ('host_id = "+"', "fleet.host_id", "one topic level"),
    ('twin_keys = ["bm90IGEga2V5"]', "fleet.twin_keys[0]", "raw 32-byte Ed25519"),
    ('twin_keys = ["!!"]', "fleet.twin_keys[0]", "raw 32-byte Ed25519"),
    ("keepalive_s = 0", "fleet.keepalive_s", "between 1 and 65535"),
    ("echo_timeout_s = 0", "fleet.echo_timeout_s", "greater than 0"),
    ("hb_topic = 1", "fleet.hb_topic", "unknown key"),
])
def test_each_fleet_problem_is_named(change: str, path: str, reason: str) -> None:
    key = change.split(" = ", maxsplit=1)[0]
    if key == "transport":
        text = TWIN.replace('transport = "mqtt"', change) + FLEET
    else:
        lines = [ln for ln in FLEET.splitlines() if not ln.startswith(key + " ")]
        text = TWIN + "\n".join(lines) + "\n" + change + "\n"
    found = problems(text)
    assert any(p == path and reason in r for p, r in found), found


def test_missing_required_fleet_keys_are_each_named() -> None:
    found = problems(TWIN + "[fleet]\n")
    assert {p for p, _ in found} == {"fleet.servers", "fleet.group", "fleet.host_id",
                                     "fleet.twin_keys"}
    assert all(r == "missing required key" for _, r in found)


def test_who_may_change_the_fleet_keys() -> None:
    assert owner("fleet.twin_keys") is Role.SAFETY  # it decides who makes the twin ALIVE
    assert owner("fleet.servers") is Role.ENGINEER
    assert owner("fleet.echo_timeout_s") is Role.SAFETY  # loss detection, like the timeouts
    assert owner("fleet.keepalive_s") is Role.ENGINEER
    assert owner("twin.transport") is Role.ENGINEER


def test_mqtt_without_the_fleet_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No traceback: ``twinguard run`` prints a ConfigError naming twin.transport."""
    import sys

    from agent.runtime.loop import fleet_link_classes

    monkeypatch.setitem(sys.modules, "aiomqtt", None)  # import aiomqtt -> ImportError
    monkeypatch.delitem(sys.modules, "agent.io.fleet.link", raising=False)
    with pytest.raises(ConfigError) as err:
        fleet_link_classes("agent.toml")
    (problem,) = err.value.problems
    assert (problem.file, problem.path) == ("agent.toml", "twin.transport")
    assert "aiomqtt is not installed" in problem.reason
    assert "twinguard[fleet]" in problem.reason
