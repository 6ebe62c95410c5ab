"""The drill page in a real headless browser (issue 16): it loads with nothing on the
console, draws the timeline's lanes and has one table row per step of the report. The kit
itself is shown to catch a page that does log an error, and one that loads a missing file."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_kit import load_page, needs_browser
from core_kit import profile, remote

from agent.cli.drillpage import page
from agent.core.rehearsal import Hooks, Rehearsal
from agent.io.audit import transition_record
from agent.io.guard import guard_values
from agent.protocol.modbus.codec import encode_output

pytestmark = [needs_browser, pytest.mark.timeout(90)]

LANES = ("lane-plant-safety", "lane-twin-authority", "lane-twin-link", "lane-green-LED",
         "lane-amber-LED", "lane-red-LED", "lane-would-write")


def test_the_drill_page_loads_clean_and_shows_every_step(tmp_path: Path) -> None:
    p = remote(profile())
    hooks = Hooks(encode=encode_output, audit_kind=lambda *a: transition_record(*a)[0].value,
                  hang_values=guard_values(p.profile, p.c.last_written))
    report = Rehearsal(p.c, "sensor-fail", p.now, hooks=hooks).play()
    path = tmp_path / "drill.html"
    path.write_text(page(report))
    lanes = ",".join(f"'{lane}'" for lane in LANES)
    seen = load_page(path, {
        "rows": "document.querySelectorAll('table#steps tbody tr').length",
        "lanes": f"[{lanes}].filter(id => document.querySelector('svg#timeline g#' + id))"
                 ".length",
        "outcome": "document.querySelector('p#outcome').textContent",
        "width": "document.querySelector('svg#timeline').getBoundingClientRect().width",
    })
    assert seen.problems == (), seen.problems
    assert seen.values["rows"] == len(report.steps) > 0, seen.values
    assert seen.values["lanes"] == len(LANES), seen.values
    assert seen.values["outcome"].strip(), seen.values
    assert seen.values["width"] > 100, "the timeline is drawn at a visible size"


def test_the_kit_reports_console_errors_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.html"
    path.write_text('<!doctype html><title>bad</title><img src="missing.png">'
                    '<script>console.error("boom"); undefined_name();</script>')
    seen = load_page(path, {"title": "document.title"})
    assert seen.values["title"] == "bad"
    text = "\n".join(seen.problems)
    assert "console.error: boom" in text and "undefined_name" in text, seen.problems
    assert "missing.png" in text, seen.problems
