"""A fault drill's report as one self-contained HTML page: a timeline and the table of steps.

No external assets (no script, no font, no stylesheet link): inline CSS and one inline SVG.
The timeline has one lane per axis, on the report's time axis (seconds since the fault
began)::

    plant safety   [ normal ][ failsafe ][ recovering ][ normal ]
    twin authority [ remote ][ local                  ][returning][ remote ]
    twin link      [ alive ][late][ lost ][ alive ]
    green / amber / red LED   off, on (full colour), slow blink (half), fast blink (light)
    would write    one mark per value (red: safe set, blue: authority/shed, purple: the
                   native watchdog), the fault's phases as dashed lines with their number

Each lane is a ``<g id="lane-NAME">``; the steps table is ``<table id="steps">`` with one
row per step (a browser check can count them). :func:`page` is pure: report in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from agent.core.drillreport import DrillReport, Step

STATE_COLOR = {"starting": "#bdbdbd", "normal": "#43a047", "degraded": "#fbc02d",
               "failsafe": "#e53935", "recovering": "#fb8c00"}
AUTHORITY_COLOR = {"local": "#90a4ae", "returning": "#ffd54f", "remote": "#1e88e5"}
LINK_COLOR = {"alive": "#66bb6a", "late": "#ffca28", "lost": "#ef5350", "none": "#e0e0e0"}
LED_COLOR = {"green": "#2e7d32", "amber": "#ff8f00", "red": "#c62828"}
LED_OPACITY = {"off": 0.0, "on": 1.0, "slow blink": 0.55, "fast blink": 0.3}
WRITE_COLOR = {"safe": "#c62828", "watchdog": "#6a1b9a", "other": "#1565c0"}

WIDTH, LEFT, RIGHT, LANE_H, GAP = 1000.0, 140.0, 20.0, 22.0, 6.0
LANES = ("plant safety", "twin authority", "twin link", "green LED", "amber LED", "red LED",
         "would write")

CSS = """body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f0f0f0}td.t{text-align:right;white-space:nowrap}
tr.safety td,tr.watchdog td{background:#fff3f3}tr.operator td{background:#f3f8ff}
tr.fault td{background:#fffbe6;font-weight:bold}.small{color:#555;font-size:.85em}"""


def _leds(text: str) -> dict[str, str]:
    """``green slow blink, amber on, red off: meaning`` -> {"green": "slow blink", ...}."""
    out = {}
    for part in text.split(":", maxsplit=1)[0].split(", "):
        colour, _, mode = part.partition(" ")
        out[colour] = mode
    return out


def _segments(r: DrillReport, value: str) -> list[tuple[float, float, str]]:
    """(from, to, value) of one axis over the drill, from each step's after-state."""
    start = {"state": r.start_state, "authority": r.start_authority, "link": r.start_link}
    current, since = start[value], 0.0
    out = []
    for s in r.steps:
        v = getattr(s, value)
        if v != current:
            out.append((since, s.t, current))
            current, since = v, s.t
    out.append((since, r.duration_s, current))
    return out


def _led_segments(r: DrillReport, colour: str) -> list[tuple[float, float, str]]:
    current, since = _leds(r.start_leds).get(colour, "off"), 0.0
    out = []
    for s in r.steps:
        if s.kind == "leds":
            mode = _leds(s.leds).get(colour, "off")
            if mode != current:
                out.append((since, s.t, current))
                current, since = mode, s.t
    out.append((since, r.duration_s, current))
    return out


def _write_kind(step: Step, why: str) -> str:
    if step.kind == "watchdog":
        return "watchdog"
    return "safe" if why.startswith("safe set") else "other"


def timeline(r: DrillReport) -> str:
    """The timeline as an inline SVG element."""
    span = max(r.duration_s, r.poll_period_s)
    plot = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + plot * t / span

    height = 30 + len(LANES) * (LANE_H + GAP) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH:.0f}" '
             f'height="{height:.0f}" viewBox="0 0 {WIDTH:.0f} {height:.0f}" '
             'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">',
             f'<rect x="0" y="0" width="{WIDTH:.0f}" height="{height:.0f}" fill="white"/>']
    lanes: list[tuple[str, Sequence[tuple[float, float, str]], dict[str, str] | str]] = [
        ("plant safety", _segments(r, "state"), STATE_COLOR),
        ("twin authority", _segments(r, "authority"), AUTHORITY_COLOR),
        ("twin link", _segments(r, "link"), LINK_COLOR),
        *((f"{c} LED", _led_segments(r, c), LED_COLOR[c]) for c in ("green", "amber", "red")),
    ]
    y = 20.0
    for name, segs, colours in lanes:
        parts.append(f'<g id="lane-{name.replace(" ", "-")}">')
        parts.append(f'<text x="{LEFT - 8:.0f}" y="{y + 15:.1f}" text-anchor="end">'
                     f'{escape(name)}</text>')
        for t0, t1, v in segs:
            if isinstance(colours, dict):
                fill, opacity = colours.get(v, "#999"), 1.0
            else:
                fill, opacity = colours, LED_OPACITY.get(v, 1.0)
            parts.append(f'<rect x="{x(t0):.2f}" y="{y:.1f}" width="{max(x(t1) - x(t0), 0.5):.2f}" '
                         f'height="{LANE_H:.0f}" fill="{fill}" fill-opacity="{opacity}" '
                         f'stroke="#999" stroke-width="0.5"><title>{escape(v)} '
                         f'{t0:.3f}-{t1:.3f} s</title></rect>')
            if x(t1) - x(t0) > 7 * len(v):
                parts.append(f'<text x="{x(t0) + 4:.2f}" y="{y + 15:.1f}">{escape(v)}</text>')
        parts.append("</g>")
        y += LANE_H + GAP
    parts.append('<g id="lane-would-write">')
    parts.append(f'<text x="{LEFT - 8:.0f}" y="{y + 15:.1f}" text-anchor="end">would write'
                 '</text>')
    for s in r.steps:
        for w in s.writes:
            colour = WRITE_COLOR[_write_kind(s, w.why)]
            parts.append(f'<line x1="{x(w.t):.2f}" y1="{y:.1f}" x2="{x(w.t):.2f}" '
                         f'y2="{y + LANE_H:.1f}" stroke="{colour}" stroke-width="2">'
                         f'<title>{escape(f"{w.t:.3f} s {w.output}={w.value:g}: {w.why}")}'
                         '</title></line>')
    parts.append("</g>")
    y += LANE_H + GAP
    faults = [s for s in r.steps if s.kind == "fault"]
    for n, s in enumerate(faults, 1):
        parts.append(f'<line x1="{x(s.t):.2f}" y1="14" x2="{x(s.t):.2f}" y2="{y:.1f}" '
                     'stroke="#333" stroke-dasharray="4 3"><title>'
                     f'{escape(s.text)}</title></line>')
        parts.append(f'<text x="{x(s.t) + 3:.2f}" y="12">{n}</text>')
    ticks = _ticks(span)
    for t in ticks:
        parts.append(f'<line x1="{x(t):.2f}" y1="{y:.1f}" x2="{x(t):.2f}" y2="{y + 4:.1f}" '
                     'stroke="#333"/>')
        parts.append(f'<text x="{x(t):.2f}" y="{y + 16:.1f}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{LEFT - 8:.0f}" y="{y + 16:.1f}" text-anchor="end">s since the '
                 'fault</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _ticks(span: float) -> list[float]:
    step = 10 ** len(str(int(span))) / 10 if span >= 1 else 0.1
    while span / step > 12:
        step *= 2
    while span / step < 4:
        step /= 2
    n = int(span / step)
    return [round(i * step, 6) for i in range(n + 1)]


def _row(s: Step) -> str:
    writes = "<br>".join(escape(f"{w.output} = {w.value:g}"
                                + ("" if w.raw is None else f" (raw {_raw(w.raw)})")
                                + f": {w.why}") for w in s.writes[:6])
    if len(s.writes) > 6:
        writes += f"<br>... {len(s.writes) - 6} more (in the JSON report)"
    audit = "<br>".join(escape(a) for a in s.audit)
    return (f'<tr class="{escape(s.kind)}"><td class="t">{s.t:.3f}</td><td>{escape(s.kind)}'
            f"</td><td>{escape(s.text)}</td><td>{escape(s.state)} / {escape(s.authority)} / "
            f"{escape(s.link)}</td><td>{writes}</td><td>{audit}</td></tr>")


def _raw(raw: tuple[int, ...] | bool) -> str:
    return str(raw).lower() if isinstance(raw, bool) else " ".join(str(v) for v in raw)


def page(r: DrillReport) -> str:
    """The whole HTML document (UTF-8 text)."""
    operator = "".join(f"<li>{escape(o)}</li>" for o in r.operator) or \
        "<li>nothing: no operator action is needed</li>"
    assumed = "".join(f"<li>{escape(a)}</li>" for a in r.assumptions)
    rows = "\n".join(_row(s) for s in r.steps)
    title = f"twinguard drill {r.scenario}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(title)}: {escape(r.summary)}</h1>
<p>Rehearsed in the agent's decision core only: <b>nothing was written</b> to the PLC, the
LEDs, the twin or the telemetry spool. Profile {escape(r.profile)}; a poll every
{r.poll_period_s:g} s; mode {escape(r.mode)}.</p>
<p>Start: <b>{escape(r.start_state.upper())}</b>, twin authority
<b>{escape(r.start_authority.upper())}</b>, twin {escape(r.start_link)}. End after
{r.duration_s:g} s: <b>{escape(r.end_state.upper())}</b>, twin authority
<b>{escape(r.end_authority.upper())}</b>, twin {escape(r.end_link)}.</p>
<p id="outcome">{escape(r.outcome)}</p>
{timeline(r)}
<h2>What the operator has to do</h2><ol id="operator">{operator}</ol>
<h2>Steps</h2>
<table id="steps"><thead><tr><th>t (s)</th><th>what</th><th>happening</th>
<th>plant / authority / twin after it</th><th>would write (value, raw, why)</th>
<th>audit records</th></tr></thead><tbody>
{rows}
</tbody></table>
<h2>Assumed</h2><ul class="small">{assumed}</ul>
</body></html>
"""
