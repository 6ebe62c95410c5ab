"""The drill campaign's judge, catalogue and report on hand-made write logs (no processes).

The logs are written here record by record as the sim PLC logs them (sim-tank: heater_power
and cooling_valve at holding 100..101, the [plc_remote] flag at coil 1, the PLC watchdog
heartbeat at holding 200); each test states the times and what the verdict must be.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser_kit import load_page, needs_browser

from agent.config.profile.load import read_toml
from agent.config.profile.parse import parse_profile
from agent.model.profile import Profile
from sim.drill.campaign import campaign_profile_text
from sim.drill.faults import BY_NAME, KINDS, draw
from sim.drill.judge import Times, judge, percentile
from sim.drill.report import CampaignReport, FaultResult, html, summarise

pytestmark = pytest.mark.timeout(30)

PROFILE: Profile = parse_profile(read_toml(campaign_profile_text(), "campaign"), "campaign")


def hb(t: float) -> dict[str, Any]:
    return {"t": t, "fc": 6, "table": "holding", "address": 200, "values": [int(t * 100) & 0xFFFF],
            "names": ["heartbeat"], "accepted": True, "source": "modbus"}


def flag(t: float, value: int) -> dict[str, Any]:
    return {"t": t, "fc": 5, "table": "coil", "address": 1, "values": [value],
            "names": ["plc_remote"], "accepted": True, "source": "modbus"}


def outputs(t: float, heater_raw: int, cooling_raw: int) -> dict[str, Any]:
    return {"t": t, "fc": 16, "table": "holding", "address": 100,
            "values": [heater_raw, cooling_raw], "names": ["heater_power", "cooling_valve"],
            "accepted": True, "source": "modbus"}


def safe_set(t: float) -> list[dict[str, Any]]:
    """The agent's full safe set: the flag remote first, then heater 0 %, cooling 100 %."""
    return [flag(t, 1), outputs(t + 0.002, 0, 1000)]


def fallback(t: float) -> dict[str, Any]:
    return {"t": t, "fc": 0, "table": "holding", "address": 0, "values": [], "names": [],
            "accepted": True, "source": "plc watchdog"}


def beats(t0: float, t1: float, period: float = 0.05) -> list[dict[str, Any]]:
    n = round((t1 - t0) / period)
    return [hb(t0 + i * period) for i in range(n + 1)]


def sorted_log(*parts: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    recs = [r for p in parts for r in (p if isinstance(p, list) else [p])]
    recs.sort(key=lambda r: r["t"])
    return [{**r, "seq": i} for i, r in enumerate(recs)]


# --- twin loss: a shed past the heartbeat deadline --------------------------------------------

FROZEN = BY_NAME["twin-frozen"]  # deadline: the twin's last heartbeat + 0.5 s, budget 250 ms


def frozen_times(base: float = 10.0) -> Times:
    return Times(t_fault=10.02, t_clear=11.6, t_end=14.0, base_t=base)


def test_a_shed_within_its_budget_is_ok_with_its_reaction() -> None:
    log = sorted_log(beats(9.0, 14.0), outputs(9.5, 300, 200), flag(10.503, 0), flag(13.0, 1))
    j = judge(FROZEN, PROFILE, log, frozen_times(), recovered=True)
    assert j.verdict == "ok", j
    assert j.reaction_s == pytest.approx(0.003, abs=1e-9)
    assert j.deadline_t == pytest.approx(10.5) and j.seen.startswith("shed")


def test_a_shed_past_its_budget_is_late() -> None:
    log = sorted_log(beats(9.0, 14.0), flag(10.5 + 0.251, 0))
    j = judge(FROZEN, PROFILE, log, frozen_times(), recovered=True)
    assert j.verdict == "late" and j.reaction_s == pytest.approx(0.251)


def test_a_safe_set_where_only_a_shed_was_due_is_false() -> None:
    log = sorted_log(beats(9.0, 14.0), flag(10.504, 0), safe_set(10.6))
    j = judge(FROZEN, PROFILE, log, frozen_times(), recovered=True)
    assert j.verdict == "false" and "a safe set with no hazard" in j.notes


def test_a_shed_before_the_heartbeat_deadline_is_false() -> None:
    log = sorted_log(beats(9.0, 14.0), flag(10.3, 0))
    j = judge(FROZEN, PROFILE, log, frozen_times(), recovered=True)
    assert j.verdict == "false" and any("before its deadline" in n for n in j.notes)


def test_no_shed_is_missed_and_so_is_a_plant_that_did_not_recover() -> None:
    assert judge(FROZEN, PROFILE, sorted_log(beats(9.0, 14.0)), frozen_times(),
                 recovered=True).verdict == "missed"
    on_time = sorted_log(beats(9.0, 14.0), flag(10.503, 0))
    j = judge(FROZEN, PROFILE, on_time, frozen_times(), recovered=False)
    assert j.verdict == "missed" and any("not recovered" in n for n in j.notes)


def test_a_plc_watchdog_fallback_while_the_agent_ran_is_false() -> None:
    log = sorted_log(beats(9.0, 10.4), flag(10.503, 0), fallback(11.4))
    assert judge(FROZEN, PROFILE, log, frozen_times(), recovered=True).verdict == "false"


# --- nothing due ------------------------------------------------------------------------------

STUCK = BY_NAME["sensor-stuck"]


def test_recommendations_are_not_an_action_but_a_shed_or_a_safe_set_is_false() -> None:
    times = Times(t_fault=20.0, t_clear=22.5, t_end=23.0)
    quiet = sorted_log(beats(19.0, 23.0), outputs(20.5, 310, 200), outputs(21.0, 320, 200))
    j = judge(STUCK, PROFILE, quiet, times, recovered=True)
    assert j.verdict == "ok" and j.seen == "nothing" and j.reaction_s is None
    assert judge(STUCK, PROFILE, sorted_log(quiet, flag(21.0, 0)), times,
                 recovered=True).verdict == "false"
    assert judge(STUCK, PROFILE, sorted_log(quiet, safe_set(21.0)), times,
                 recovered=True).verdict == "false"


# --- hazards: the full safe set ---------------------------------------------------------------

LOST = BY_NAME["sensor-2oo3-lost"]  # deadline: the fault, budget one poll + 100 ms


def test_the_safe_set_counts_when_complete_and_not_before() -> None:
    times = Times(t_fault=30.0, t_clear=30.5, t_end=33.0)
    log = sorted_log(beats(29.0, 33.0), safe_set(30.06))
    j = judge(LOST, PROFILE, log, times, recovered=True)
    assert j.verdict == "ok" and j.reaction_s == pytest.approx(0.062)  # the second write
    # the heater alone at 0 % is a recommendation, not the safe set: missed
    alone = sorted_log(beats(29.0, 33.0), outputs(30.06, 0, 1000))
    assert judge(LOST, PROFILE, alone, times, recovered=True).verdict == "missed"
    late = sorted_log(beats(29.0, 33.0), safe_set(30.2))
    assert judge(LOST, PROFILE, late, times, recovered=True).verdict == "late"


# --- the native watchdog and the PLC's own watchdog -------------------------------------------

def test_the_native_safe_set_is_measured_from_the_last_heartbeat() -> None:
    times = Times(t_fault=40.01, t_clear=40.6, t_end=44.0)
    log = sorted_log(beats(39.0, 40.0), safe_set(40.201))  # last beat 40.0 + 0.2 s deadline
    j = judge(BY_NAME["python-hang"], PROFILE, log, times, recovered=True)
    assert j.verdict == "ok" and j.reaction_s == pytest.approx(0.003)
    late = sorted_log(beats(39.0, 40.0), safe_set(40.26))
    assert judge(BY_NAME["python-hang"], PROFILE, late, times, recovered=True).verdict == "late"


def test_the_plc_fallback_after_a_kill_and_the_data_it_kept() -> None:
    kill = BY_NAME["agent-kill9"]
    times = Times(t_fault=50.02, t_clear=51.3, t_end=55.0)
    log = sorted_log(beats(49.0, 50.0), fallback(51.004))
    j = judge(kill, PROFILE, log, times, recovered=True, data_kept=True)
    assert j.verdict == "ok" and j.reaction_s == pytest.approx(0.004)
    lost = judge(kill, PROFILE, log, times, recovered=True, data_kept=False)
    assert lost.verdict == "missed" and "committed telemetry lost" in lost.notes
    slow = sorted_log(beats(49.0, 50.0), fallback(51.2))
    assert judge(kill, PROFILE, slow, times, recovered=True).verdict == "late"


# --- the catalogue and the report -------------------------------------------------------------

def test_a_seed_gives_one_sequence_with_every_kind_first() -> None:
    a, b = draw(200, 1), draw(200, 1)
    assert a == b and draw(200, 2) != a
    assert {k.name for k in a[:len(KINDS)]} == {k.name for k in KINDS}
    small = draw(7, 3)
    assert len({k.name for k in small}) == 7 and small == draw(7, 3)
    with pytest.raises(ValueError, match=">= 0"):
        draw(-1, 1)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def _result(i: int, kind: str, verdict: str, reaction: float | None) -> FaultResult:
    k = BY_NAME[kind]
    return FaultResult(i, kind, k.layer, k.expect.value, "shed", float(i), float(i) + 0.5,
                       reaction, 250.0, verdict, True, 1.0, None)


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.kind_tables: list[str] = []
        self.kind_rows: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "kind":
            self.kind_tables.append(str(a.get("data-kind")))
        if tag == "tr" and "data-kind" in a:
            self.kind_rows.append(str(a["data-kind"]))
        for key in ("src", "href"):
            if a.get(key) and not str(a[key]).startswith("#"):
                self.external.append(str(a[key]))


def test_the_page_has_a_table_per_kind_the_totals_and_nothing_external() -> None:
    results = [_result(0, "twin-bye", "ok", 2.0), _result(1, "twin-bye", "late", 300.0),
               _result(2, "sensor-stuck", "ok", None), _result(3, "agent-kill9", "false", 1.0)]
    totals = summarise(results)
    assert totals["twin-bye"]["count"] == 2 and totals["twin-bye"]["late"] == 1
    assert totals["twin-bye"]["reaction_ms"] == {"p50": 2.0, "p99": 300.0, "max": 300.0}
    assert totals["all"]["false"] == 1 and totals["all"]["ok"] == 2
    report = CampaignReport(seed=5, faults=4, sequence=tuple(r.kind for r in results),
                            results=tuple(results), totals=totals, wall_s=12.0,
                            marks=((0.5, "shed"), (3.1, "fallback")))
    assert not report.passed and report.to_json()["totals"]["all"]["late"] == 1
    page = html(report)
    parsed = _Tables()
    parsed.feed(page)
    assert parsed.kind_tables == ["twin-bye", "sensor-stuck", "agent-kill9"]
    assert parsed.kind_rows == ["twin-bye", "sensor-stuck", "agent-kill9", "all"]
    assert not parsed.external, parsed.external
    assert page.count("<svg") == 1 and re.search(r'class="fault verdict-false"', page)


@needs_browser
@pytest.mark.timeout(90)
def test_the_page_loads_clean_in_a_real_browser(tmp_path: Path) -> None:
    results = [_result(i, kind, "ok", 2.0 + i) for i, kind in enumerate(BY_NAME)]
    report = CampaignReport(seed=5, faults=len(results), sequence=tuple(BY_NAME),
                            results=tuple(results), totals=summarise(results), wall_s=60.0,
                            marks=((0.5, "shed"), (3.1, "safe"), (9.0, "fallback")))
    path = tmp_path / "campaign.html"
    path.write_text(html(report))
    seen = load_page(path, {
        "tables": "[...document.querySelectorAll('table.kind')].map(t => t.dataset.kind)",
        "rows": "[...document.querySelectorAll('tr[data-kind]')].map(r => r.dataset.kind)",
        "faults": "document.querySelectorAll('svg .fault').length",
    })
    assert seen.problems == (), seen.problems
    assert seen.values["tables"] == list(BY_NAME), seen.values
    assert seen.values["rows"] == [*BY_NAME, "all"], seen.values
    assert seen.values["faults"] == len(BY_NAME), seen.values
