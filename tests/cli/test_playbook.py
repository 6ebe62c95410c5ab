"""``twinguard playbook`` (issue 17, item 2): for every shipped profile, with a configuration
the test writes (a trust store, an override, active mode), every output, trip and group of
the profile appears with its values, taken from the loaded profile object; the HTML page
loads clean in a real headless browser and shows every output; bad input is a clear error
naming the file, never a traceback."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from browser_kit import load_page, needs_browser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli.main import main
from agent.config.profile.load import list_profiles, load_profile
from agent.core.leds import Indication, pattern_for
from agent.model.profile import Profile, TripCondition, TwinLossPolicy

pytestmark = pytest.mark.timeout(30)

PROFILES = list_profiles()


def _config(tmp_path: Path, profile: Profile) -> tuple[Path, dict[str, str], dict[str, float]]:
    """An active configuration with two keys and a tightened trip limit; returns the file,
    the keys' fingerprints by id, and the overridden limits by trip name."""
    fingerprints, lines = {}, ['device_id = "line-7"', 'mode = "active"', "", "[twin]",
                               'host = "twin.example.net"', "port = 17443",
                               'server_name = "twin.example.net"', 'ca = "pki/ca.crt"',
                               'cert = "pki/device.crt"', 'key = "pki/device.key"', ""]
    limits: dict[str, float] = {}
    trip = next((t for t in profile.trips if t.condition is TripCondition.ABOVE), None)
    if trip is not None and trip.limit is not None:
        limits[trip.name] = trip.limit - 1.0
        lines += [f"[overrides.trips.{trip.name}]", f"limit = {trip.limit - 1.0}", ""]
    for key_id, role in (("alice", "engineer"), ("sam", "safety")):
        raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
        fingerprints[key_id] = f"SHA256:{digest}"
        lines += ["[[trust]]", f'id = "{key_id}"', f'role = "{role}"',
                  f'public_key = "{base64.b64encode(raw).decode()}"', ""]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines))
    return path, fingerprints, limits


@pytest.mark.parametrize("name", PROFILES)
def test_every_output_trip_and_group_appears_with_its_values(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = load_profile(name)
    config, fingerprints, limits = _config(tmp_path, profile)
    assert main(["playbook", "--profile", name, "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "line-7" in text and "mode **active**" in text
    for o in profile.writes:
        assert f"| {o.name} | {o.safe_value:g} {o.unit} |" in text, o.name
    for o in profile.outputs:
        assert f"| {o.name} | {o.on_twin_loss.value} |" in text, o.name
        assert o.failsafe.value in text
        if o.on_twin_loss is TwinLossPolicy.LOCAL:
            assert f"to its local value {o.local_value:g} {o.unit}" in text, o.name
    for t in profile.trips:
        assert f"### trip {t.name}:" in text, t.name
        if t.limit is not None:
            limit = limits.get(t.name, t.limit)
            assert f"{t.condition.value} {limit:g}" in text, t.name
    assert limits and all(f"{v:g}" in text for v in limits.values()), "the override applies"
    for g in profile.groups:
        assert f"### group {g.name}:" in text, g.name
        assert f"voted {g.voting}, at least {g.min_healthy} healthy" in text, g.name
        assert f"further than {g.discrepancy:g}" in text, g.name
        assert all(s in text for s in g.signals), g.name
    assert f"{profile.recovery.holdoff_s:g} s" in text
    assert f"after {profile.authority.return_holdoff_s:g} s of continuous healthy" in text
    assert f"{profile.plc_watchdog.expected_timeout_ms} ms" in text
    assert f"{profile.timing.watchdog_deadline_s:g} s" in text
    if profile.board.reset_button is not None:
        assert (f"reset button (GPIO {profile.board.reset_button}) for "
                f"{profile.board.reset_hold_s:g} s") in text
    for key_id, print_ in fingerprints.items():
        assert f"{key_id} `{print_}`" in text
    assert "red fast blink" in text and "twinguard ack" in text
    assert f"no heartbeat for {profile.timing.heartbeat_timeout_s:g} s" in text
    lost = pattern_for(Indication("normal", "active", "lost", False, True, "local"))
    assert (f"twin not heard: green {lost.green.value}, amber {lost.amber.value}, "
            f"red {lost.red.value}") in text, "the agent's own LED table"


@needs_browser
@pytest.mark.timeout(60)
def test_the_page_loads_clean_and_shows_every_output(tmp_path: Path) -> None:
    profile = load_profile("sim-tank")
    config, _, _ = _config(tmp_path, profile)
    path = tmp_path / "playbook.html"
    assert main(["playbook", "--profile", "sim-tank", "--config", str(config),
                 "-o", str(path)]) == 0
    html = path.read_text()
    assert all(t not in html for t in ("<script", "src=", "href=", "url(", "@import"))
    seen = load_page(path, {
        "safe": "[...document.querySelectorAll('#safe-set tr[data-output]')]"
                ".map(r => r.dataset.output)",
        "loss": "[...document.querySelectorAll('#twin-loss tr[data-output]')]"
                ".map(r => r.dataset.output)",
        "cases": "document.querySelectorAll('div.case').length",
        "visible": "document.querySelector('#safe-set').getBoundingClientRect().height",
    })
    assert seen.problems == (), seen.problems
    assert seen.values["safe"] == [o.name for o in profile.writes], seen.values
    assert seen.values["loss"] == [o.name for o in profile.outputs], seen.values
    assert seen.values["cases"] == len(profile.trips) + len(profile.groups) + 4, seen.values
    assert seen.values["visible"] > 20, seen.values


def test_a_missing_profile_names_the_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["playbook", "--profile", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err and "Traceback" not in err


def test_a_profile_error_names_the_file_and_key(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    source = Path(load_profile("sim-tank").source).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(source.replace("reset_hold_s = 2.0", 'reset_hold_s = "two"', 1))
    assert 'reset_hold_s = "two"' in bad.read_text()
    assert main(["playbook", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: board.reset_hold_s" in err, err
    assert "twinguard check" in err and "Traceback" not in err


def test_a_missing_config_names_the_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "agent.toml"
    assert main(["playbook", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_an_output_file_of_another_kind_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbook", "-o", str(tmp_path / "book.pdf")]) == 2
    assert ".md or .html" in capsys.readouterr().err
    assert not (tmp_path / "book.pdf").exists()
