"""The campaign's report: frozen data, its JSON, and one self-contained HTML page.

JSON (:meth:`CampaignReport.to_json`)::

    {"passed": bool, "seed": S, "faults": N, "date": "YYYY-MM-DD", "wall_s": W,
     "clock_origin": T0,
     "sequence": [kind, ...],
     "restarts": {"agent": n, "twin": n}, "not_covered": [why, ...],
     "results": [{"index", "kind", "layer", "expected", "seen", "t", "deadline",
                  "reaction_ms", "budget_ms", "verdict", "recovered", "recovery_s",
                  "data_kept", "params", "notes"}, ...],
     "totals": {KIND: {"layer", "count", "ok", "missed", "late", "false",
                       "reaction_ms": {"p50", "p99", "max"}}, ...,
                "all": {...}}}

``t`` and ``deadline`` are seconds since the campaign's plant was up (``clock_origin``,
CLOCK_MONOTONIC as the sim PLC's write log stamps), ``reaction_ms`` the expected action
past its deadline. The HTML page (:func:`html`) has no external asset: the timeline (one
lane per layer, each fault a mark in its verdict's colour, and what the PLC's write log
shows: sheds, safe sets, PLC watchdog fallbacks) as inline SVG drawn with
:mod:`sim.demo.svg`, the totals (``<tr data-kind=KIND>`` per kind), and a table per fault
kind with its figures (``<table class="kind" data-kind=KIND>``) and its faults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from sim.demo.lanes import FALLBACK_COLOR, LEFT, RIGHT, SAFE_COLOR, WIDTH, Axis
from sim.demo.svg import Svg
from sim.drill.judge import VERDICTS, percentile

LAYERS = ("twin", "link", "sensor", "plc", "python", "agent")
VERDICT_COLOR = {"ok": "#2e7d32", "missed": "#6a1b9a", "late": "#ef6c00", "false": "#c62828"}
SHED_COLOR = "#3949ab"


@dataclass(frozen=True)
class FaultResult:
    index: int
    kind: str
    layer: str
    expected: str
    seen: str
    t: float | None
    deadline: float | None
    reaction_ms: float | None
    budget_ms: float
    verdict: str
    recovered: bool
    recovery_s: float | None
    data_kept: bool | None
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "layer": self.layer,
                "expected": self.expected, "seen": self.seen, "t": self.t,
                "deadline": self.deadline, "reaction_ms": self.reaction_ms,
                "budget_ms": self.budget_ms, "verdict": self.verdict,
                "recovered": self.recovered, "recovery_s": self.recovery_s,
                "data_kept": self.data_kept, "params": dict(self.params),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class CampaignReport:
    seed: int
    faults: int
    sequence: tuple[str, ...]
    results: tuple[FaultResult, ...]
    totals: Mapping[str, Mapping[str, Any]]
    wall_s: float
    restarts: Mapping[str, int] = field(default_factory=dict)
    not_covered: tuple[str, ...] = ()
    catalogue: tuple[tuple[str, str, str, str], ...] = ()  # (kind, layer, expected, what)
    marks: tuple[tuple[float, str], ...] = ()  # (t, shed|safe|fallback) from the write log
    clock_origin: float = 0.0  # CLOCK_MONOTONIC of t = 0 (the plant up, before the 1st fault)
    date: str = ""  # the day the campaign started (ISO 8601, UTC): the safety case cites it

    @property
    def passed(self) -> bool:
        """Every fault ok (0 missed, late, false)."""
        return bool(self.results) and all(r.verdict == "ok" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "seed": self.seed, "faults": self.faults,
                "date": self.date, "wall_s": self.wall_s, "clock_origin": self.clock_origin,
                "sequence": list(self.sequence),
                "restarts": dict(self.restarts), "not_covered": list(self.not_covered),
                "results": [r.to_json() for r in self.results],
                "totals": {k: dict(v) for k, v in self.totals.items()}}


def _counts(results: Sequence[FaultResult]) -> dict[str, Any]:
    reactions = [r.reaction_ms for r in results if r.reaction_ms is not None]
    out: dict[str, Any] = {"count": len(results)}
    for v in VERDICTS:
        out[v] = sum(1 for r in results if r.verdict == v)
    out["reaction_ms"] = {"p50": percentile(reactions, 0.5), "p99": percentile(reactions, 0.99),
                          "max": max(reactions, default=None)}
    return out


def summarise(results: Sequence[FaultResult]) -> dict[str, dict[str, Any]]:
    """Totals per kind (in order of first appearance) and over ``all``."""
    kinds: dict[str, list[FaultResult]] = {}
    for r in results:
        kinds.setdefault(r.kind, []).append(r)
    totals = {k: {"layer": rs[0].layer, "expected": rs[0].expected, **_counts(rs)}
              for k, rs in kinds.items()}
    totals["all"] = {"layer": "", "expected": "", **_counts(results)}
    return totals


def dumps(report: CampaignReport) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


# --- the HTML page ---------------------------------------------------------------------------

def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def timeline_svg(report: CampaignReport) -> str:
    """One lane per layer, a mark per fault (its verdict's colour, a bar to its deadline's
    reaction), and a lane of what the PLC's write log shows."""
    ts = [r.t for r in report.results if r.t is not None]
    t_end = max([1.0, *ts, *(t for t, _ in report.marks)]) + 1.0
    ax = Axis(0.0, t_end)
    lane_h, top = 28.0, 40.0
    rows = [*LAYERS, "PLC writes"]
    height = top + lane_h * len(rows) + 60.0
    svg = Svg(WIDTH, height)
    svg.text(10, 22, f"drill campaign: seed {report.seed}, {report.faults} faults, "
             f"{report.wall_s:g} s", font_size=15, font_weight="bold")
    for i, name in enumerate(rows):
        y = top + i * lane_h
        svg.open_group(id=f"lane-{name.replace(' ', '-')}")
        svg.rect(LEFT, y + 2, WIDTH - LEFT - RIGHT, lane_h - 4, fill="#f5f5f5")
        svg.text(10, y + lane_h / 2 + 4, name)
        if name in LAYERS:
            for r in report.results:
                if r.layer != name or r.t is None:
                    continue
                x = ax.x(r.t)
                svg.open_group(class_=f"fault verdict-{r.verdict}")
                svg.title(f"#{r.index} {r.kind} at {r.t:.1f} s: {r.verdict}; expected "
                          f"{r.expected}, seen {r.seen}; reaction {_num(r.reaction_ms, 2)} ms")
                svg.rect(x - 2, y + 5, 4, lane_h - 10, fill=VERDICT_COLOR.get(r.verdict, "#000"))
                svg.close_group()
        else:
            colours = {"shed": SHED_COLOR, "safe": SAFE_COLOR, "fallback": FALLBACK_COLOR}
            for t, what in report.marks:
                x = ax.x(t)
                svg.line(x, y + 4, x, y + lane_h - 4, stroke=colours.get(what, "#000"),
                         stroke_width=1.5)
        svg.close_group()
    y = top + lane_h * len(rows) + 14
    for s in range(0, int(t_end) + 1, max(1, int(t_end // 12) or 1)):
        svg.line(ax.x(s), top, ax.x(s), y - 10, stroke="#e0e0e0")
        svg.text(ax.x(s), y + 2, f"{s} s", text_anchor="middle", font_size=10)
    x = LEFT
    legend = [(VERDICT_COLOR[v], v) for v in VERDICTS] + [
        (SHED_COLOR, "shed (flag local)"), (SAFE_COLOR, "safe set"),
        (FALLBACK_COLOR, "PLC watchdog fallback")]
    for colour, text in legend:
        svg.rect(x, y + 14, 12, 12, fill=colour)
        svg.text(x + 16, y + 24, text)
        x += 30 + 8 * len(text)
    return svg.to_string().split("\n", 1)[1]  # no XML declaration inside HTML


STYLE = """body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:20px;color:#212121}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 7px;
font-size:13px;text-align:right}th{background:#eceff1}td.l,th.l{text-align:left}
.ok{color:#2e7d32}.missed{color:#6a1b9a}.late{color:#ef6c00}.false{color:#c62828;font-weight:bold}
h2{margin-top:28px}svg{max-width:100%;height:auto}"""


def _kind_table(kind: str, tot: Mapping[str, Any], results: Sequence[FaultResult],
                what: str) -> str:
    rx = tot["reaction_ms"]
    head = (f'<h3 id="kind-{escape(kind)}">{escape(kind)}</h3><p>{escape(what)} '
            f'(layer {escape(str(tot["layer"]))}; expected: {escape(str(tot["expected"]))})</p>')
    rows = "".join(
        f'<tr><td>{r.index}</td><td>{_num(r.t)}</td><td class="l">{escape(r.seen)}</td>'
        f'<td>{_num(r.reaction_ms, 2)}</td><td>{_num(r.budget_ms, 0)}</td>'
        f'<td>{_num(r.recovery_s, 2)}</td><td>{_num(r.data_kept)}</td>'
        f'<td class="{escape(r.verdict)}">{escape(r.verdict)}</td>'
        f'<td class="l">{escape("; ".join(r.notes))}</td></tr>' for r in results)
    return (head + f'<table class="kind" data-kind="{escape(kind)}"><tr><th>count</th>'
            f'<th>ok</th><th>missed</th><th>late</th><th>false</th><th>reaction p50 ms</th>'
            f'<th>p99 ms</th><th>max ms</th></tr><tr><td>{tot["count"]}</td><td>{tot["ok"]}'
            f'</td><td>{tot["missed"]}</td><td>{tot["late"]}</td><td>{tot["false"]}</td>'
            f'<td>{_num(rx["p50"], 2)}</td><td>{_num(rx["p99"], 2)}</td>'
            f'<td>{_num(rx["max"], 2)}</td></tr></table>'
            '<table class="faults"><tr><th>#</th><th>t s</th><th class="l">seen</th>'
            '<th>reaction ms</th><th>budget ms</th><th>recovery s</th><th>data kept</th>'
            f'<th>verdict</th><th class="l">notes</th></tr>{rows}</table>')


def _totals_table(report: CampaignReport) -> str:
    """One row per fault kind (``<tr data-kind=KIND>``) and one for all of them."""
    rows = []
    for kind, tot in report.totals.items():
        rx = tot["reaction_ms"]
        bad = tot["missed"] + tot["late"] + tot["false"]
        name = escape(kind) if kind == "all" else (
            f'<a href="#kind-{escape(kind)}">{escape(kind)}</a>')
        rows.append(
            f'<tr data-kind="{escape(kind)}"><td class="l">{name}'
            f'</td><td class="l">{escape(str(tot["layer"]))}</td>'
            f'<td class="l">{escape(str(tot["expected"]))}</td><td>{tot["count"]}</td>'
            f'<td>{tot["ok"]}</td><td>{tot["missed"]}</td><td>{tot["late"]}</td>'
            f'<td class="{"false" if bad else "ok"}">{tot["false"]}</td>'
            f'<td>{_num(rx["p50"], 2)}</td><td>{_num(rx["p99"], 2)}</td>'
            f'<td>{_num(rx["max"], 2)}</td></tr>')
    return ('<table class="totals"><tr><th class="l">kind</th><th class="l">layer</th>'
            '<th class="l">expected</th><th>count</th><th>ok</th><th>missed</th><th>late</th>'
            '<th>false</th><th>reaction p50 ms</th><th>p99 ms</th><th>max ms</th></tr>'
            + "".join(rows) + "</table>")


def html(report: CampaignReport) -> str:
    """The self-contained page (see the module docstring)."""
    whats = {k: w for k, _layer, _exp, w in report.catalogue}
    allt = report.totals.get("all", {})
    verdict = "PASSED" if report.passed else "FAILED"
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>twinguard drill: seed {report.seed}</title><style>{STYLE}</style></head><body>",
        f"<h1>twinguard drill --sim: <span class=\"{'ok' if report.passed else 'false'}\">"
        f"{verdict}</span></h1>",
        f"<p>seed {report.seed}, {report.faults} faults, {report.wall_s:g} s wall time; "
        f"{allt.get('ok', 0)} ok, {allt.get('missed', 0)} missed, {allt.get('late', 0)} late, "
        f"{allt.get('false', 0)} false; restarts: "
        + ", ".join(f"{k} {v}" for k, v in report.restarts.items()) + "</p>",
        "<p>Every fault is judged at the simulated PLC: its write log (when each write "
        "arrived) and its process state; reactions are past each deadline.</p>",
        timeline_svg(report),
        "<h2>Totals</h2>",
        _totals_table(report),
        "<h2>Per fault kind</h2>",
    ]
    for kind, tot in report.totals.items():
        if kind == "all":
            continue
        parts.append(_kind_table(kind, tot, [r for r in report.results if r.kind == kind],
                                 whats.get(kind, "")))
    if report.not_covered:
        parts.append("<h2>Not covered</h2><ul>" + "".join(
            f"<li>{escape(n)}</li>" for n in report.not_covered) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
