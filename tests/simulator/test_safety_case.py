"""The generated safety case (issue 16 item 3): every hazard's evidence exists, every drill
fault kind answers some hazard, a failed fault shows as a failure, and the README's table is
the one the latest committed campaign gives."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from sim.bench import safety_case as sc
from sim.drill.faults import BY_NAME

pytestmark = pytest.mark.timeout(30)


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_test_named_as_evidence_exists() -> None:
    named = [t for h in sc.HAZARDS for t in h.tests]
    assert named
    for test in named:
        file, func = test.split("::")
        path = sc.ROOT / file
        assert path.is_file(), test
        assert func in _functions(path), test


def test_every_drill_kind_answers_exactly_one_hazard() -> None:
    kinds = [k for h in sc.HAZARDS for k in h.kinds]
    assert sorted(kinds) == sorted(BY_NAME), set(kinds) ^ set(BY_NAME)
    undrilled = [h for h in sc.HAZARDS if not h.kinds]
    assert all(h.elsewhere for h in undrilled), "a hazard no drill makes says where else"


def _totals(**per_kind: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for kind, over in per_kind.items():
        t = {"layer": "x", "count": 4, "ok": 4, "missed": 0, "late": 0, "false": 0,
             "reaction_ms": {"p50": 1.0, "p99": 3.0, "max": 3.5}}
        t.update(over)
        out[kind.replace("_", "-")] = t
    return {"seed": 9, "totals": out}


def test_a_late_fault_is_a_failed_row_and_exit_1(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    report = _totals(twin_frozen={"late": 1, "ok": 3,
                                  "reaction_ms": {"p50": 2.0, "p99": 41.0, "max": 41.0}},
                     twin_killed={}, python_hang={"count": 2, "ok": 2})
    table = sc.rows(report, "2026-12-01")
    twin = next(r for r in table if "twin-frozen" in r.hazard.kinds)
    assert (twin.faults, twin.late, twin.held, twin.p99_ms) == (8, 1, False, 41.0)
    hang = next(r for r in table if "python-hang" in r.hazard.kinds)
    assert (hang.faults, hang.held, hang.max_ms) == (2, True, 3.5)
    text = sc.markdown(table, 9)
    assert "**FAILED**: 0 missed, 1 late, 0 false" in text and "p99 41.0 ms" in text
    assert "only on a real Pi" in text
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    assert sc.main(["--drill", str(path), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["held"] for r in rows if r["faults"]] == [False, True]


def test_bad_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sc.main(["--drill", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": []}')
    assert sc.main(["--drill", str(bad)]) == 2
    assert "not a `python -m sim drill --json` report" in capsys.readouterr().err
    assert sc.main(["-o", str(tmp_path / "no-dir" / "case.md")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_the_readme_shows_the_latest_committed_run() -> None:
    report, date = sc.load(sc.LATEST)
    expected = sc.markdown(sc.rows(report, date), report.get("seed"))
    assert sc.readme_block(sc.README.read_text()) == expected, (
        "README's safety case differs from sim/bench/results/drill-latest.json: "
        "python -m sim.bench safety-case --readme")
