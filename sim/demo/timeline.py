"""The incident timeline picture: one SVG of the whole demo run, drawn by hand.

Lanes, top to bottom, on one time axis (seconds since the demo started)::

    scenarios      | shadow ✔ | twin-outage ✔ 3.1 ms | sensor-fail ✔ ... |   numbered steps
    agent state    [ normal ][failsafe][recovering][ normal ] (from its 1 Hz status messages)
    temperature    per-channel served values, true process value (dashed), off-scale marks
    pressure       per-channel served values, true process value (dashed)
    outputs        heater_power / cooling_valve at the PLC (%)
    twin link      one tick per heartbeat the twin sent
    PLC writes     heartbeat register | output writes (safe-state writes red, PLC watchdog
                   fallback orange)
    time axis, legend, the numbered steps with their times

The signal lanes are tinted by the agent state. Each lane is a ``<g id="lane-NAME">`` so a
test can find it. :func:`render` is pure (a recording in, SVG text out); :func:`write`
puts it in a file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.profile.model import Profile
from sim.demo.record import Mark, Recording
from sim.demo.scenarios import (
    ScenarioResult,
    Skipped,
    is_output_write,
    is_safe_write,
    output_names,
)
from sim.demo.svg import Svg

WIDTH = 1500.0
LEFT = 190.0
RIGHT = 40.0
GAP = 16.0
STATUS_STALE_S = 2.5  # status messages come every second; a longer silence is "no status"
SAMPLE_GAP_S = 0.6  # break a line where samples are missing

STATE_COLOR = {"starting": "#9e9e9e", "normal": "#43a047", "degraded": "#fbc02d",
               "failsafe": "#e53935", "recovering": "#29b6f6"}
NO_STATUS = "#eeeeee"
DOWN_COLOR = "#263238"
CHANNEL_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
OUTPUT_COLORS = ("#d62728", "#17becf", "#bcbd22", "#7f7f7f")
SAFE_COLOR = "#d50000"
FALLBACK_COLOR = "#ff6d00"
HB_COLOR = "#7e57c2"
LANES = ("scenarios", "state", "temperature", "pressure", "outputs", "twin", "writes")


@dataclass(frozen=True)
class _Lane:
    name: str
    y: float
    h: float


class _Axis:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0 = t0
        self.t1 = max(t1, t0 + 1.0)

    def x(self, t: float) -> float:
        frac = (t - self.t0) / (self.t1 - self.t0)
        return LEFT + min(max(frac, 0.0), 1.0) * (WIDTH - LEFT - RIGHT)


def _nice_step(span: float, target: int = 12) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _range(values: Sequence[float], pad_min: float) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = max(pad_min, 0.15 * (hi - lo))
    return lo - pad, hi + pad


def state_intervals(rec: Recording, t_end: float, down: Sequence[tuple[float, float]] = ()
                    ) -> list[tuple[float, float, str | None]]:
    """(start, end, state) from the status messages; None where no status came in time.

    A status holds until the next one, for at most ``STATUS_STALE_S``, and never past the
    start of a period in ``down`` (the agent process was not running).
    """
    out: list[tuple[float, float, str | None]] = []
    sts = sorted(rec.statuses, key=lambda s: s.t)
    if not sts:
        return [(rec.t0, t_end, None)]
    if sts[0].t > rec.t0:
        out.append((rec.t0, sts[0].t, None))
    for i, st in enumerate(sts):
        nxt = sts[i + 1].t if i + 1 < len(sts) else t_end
        stale = st.t + STATUS_STALE_S
        stale = min([stale] + [d0 for d0, _d1 in down if d0 > st.t])
        out.append((st.t, min(nxt, stale), st.state))
        if nxt > stale:
            out.append((stale, nxt, None))
    merged: list[tuple[float, float, str | None]] = []
    for t_b, t_e, state in out:
        if merged and merged[-1][2] == state and abs(merged[-1][1] - t_b) < 1e-6:
            merged[-1] = (merged[-1][0], t_e, state)
        else:
            merged.append((t_b, t_e, state))
    return merged


def down_intervals(rec: Recording, t_end: float) -> list[tuple[float, float]]:
    """Periods when the agent process was not running (as sampled from outside)."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, alive in rec.agent_alive:
        if not alive and start is None:
            start = t
        elif alive and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, t_end))
    return out


def render(rec: Recording, profile: Profile,
           results: Sequence[ScenarioResult | Skipped] = ()) -> str:
    """The timeline of ``rec`` as SVG text (see the module docstring)."""
    t_end = max([rec.t0 + 1.0] + [s.t for s in rec.samples] + [m.t for m in rec.marks])
    ax = _Axis(rec.t0, t_end)
    heights = {"scenarios": 66.0, "state": 26.0, "temperature": 250.0, "pressure": 120.0,
               "outputs": 70.0, "twin": 28.0, "writes": 54.0}
    lanes: dict[str, _Lane] = {}
    y = 76.0
    for name in LANES:
        lanes[name] = _Lane(name, y, heights[name])
        y += heights[name] + GAP
    steps = [m for m in rec.marks if m.kind == "step"]
    step_rows = math.ceil(len(steps) / 2)
    height = y + 40 + 60 + 22 + step_rows * 17 + 20
    svg = Svg(WIDTH, height)
    _header(svg, rec, profile, results, t_end)
    svg.raw("<defs>" + "".join(
        f'<clipPath id="clip-{n}"><rect x="{LEFT}" y="{lanes[n].y}" '
        f'width="{WIDTH - LEFT - RIGHT}" height="{lanes[n].h}"/></clipPath>'
        for n in ("temperature", "pressure", "outputs")) + "</defs>")
    down = down_intervals(rec, t_end)
    intervals = state_intervals(rec, t_end, down)
    _grid(svg, ax, lanes, y)
    _scenarios(svg, ax, lanes["scenarios"], rec, results=results, steps=steps)
    _states(svg, ax, lanes, intervals, down)
    _signals(svg, ax, lanes["temperature"], rec, profile=profile, quantity="temperature")
    _signals(svg, ax, lanes["pressure"], rec, profile=profile, quantity="pressure")
    _outputs(svg, ax, lanes["outputs"], rec, profile)
    _twin(svg, ax, lanes["twin"], rec)
    _writes(svg, ax, lanes["writes"], rec, profile)
    _step_lines(svg, ax, lanes, steps)
    y = _time_axis(svg, ax, y)
    y = _legend(svg, y + 8, profile)
    _step_list(svg, y + 6, rec, steps)
    return svg.to_string()


def write(path: Path, rec: Recording, profile: Profile,
          results: Sequence[ScenarioResult | Skipped] = ()) -> Path:
    """Render and write the timeline to ``path`` (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(rec, profile, results), encoding="utf-8")
    return path


# --- pieces ----------------------------------------------------------------------------------

def _header(svg: Svg, rec: Recording, profile: Profile,
            results: Sequence[ScenarioResult | Skipped], t_end: float) -> None:
    ran = [r for r in results if isinstance(r, ScenarioResult)]
    verdict = ("PASSED" if ran and all(r.passed for r in ran) else "FAILED") if ran else ""
    svg.text(LEFT, 28, "twinguard demo - incident timeline", font_size=20, font_weight="bold")
    tm = profile.timing
    sub = (f"{len(ran)} scenario(s) run, {len(results) - len(ran)} skipped, "
           f"{t_end - rec.t0:.1f} s  |  twin heartbeat timeout {tm.heartbeat_timeout_s:g} s, "
           f"native watchdog {tm.watchdog_deadline_s:g} s, PLC watchdog "
           f"{profile.plc_watchdog.expected_timeout_ms} ms, recovery "
           f"{profile.recovery.policy.value} after {profile.recovery.holdoff_s:g} s")
    svg.text(LEFT, 46, sub, font_size=12, fill="#555")
    svg.text(LEFT, 61, "everything observed from outside the agent: the sim PLC (true values, "
             "write log) and the sim twin (heartbeats sent, the agent's status messages)",
             font_size=11, fill="#777")
    if verdict:
        svg.text(WIDTH - RIGHT, 28, verdict, font_size=20, font_weight="bold",
                 text_anchor="end", fill="#2e7d32" if verdict == "PASSED" else SAFE_COLOR)


def _label(svg: Svg, lane: _Lane, title: str, unit: str = "") -> None:
    svg.text(12, lane.y + min(lane.h / 2, 18) + 4, title, font_weight="bold", font_size=13)
    if unit:
        svg.text(12, lane.y + min(lane.h / 2, 18) + 20, unit, font_size=11, fill="#666")


def _grid(svg: Svg, ax: _Axis, lanes: dict[str, _Lane], bottom: float) -> None:
    step = _nice_step(ax.t1 - ax.t0)
    top = lanes["state"].y
    t = 0.0
    while ax.t0 + t <= ax.t1 + 1e-9:
        x = ax.x(ax.t0 + t)
        svg.line(x, top, x, bottom - GAP, stroke="#e0e0e0", stroke_width=1)
        t += step
    for name in LANES[1:]:
        ln = lanes[name]
        svg.rect(LEFT, ln.y, WIDTH - LEFT - RIGHT, ln.h, fill="none", stroke="#9e9e9e",
                 stroke_width=1)


def _scenarios(svg: Svg, ax: _Axis, lane: _Lane, rec: Recording, *,
               results: Sequence[ScenarioResult | Skipped], steps: Sequence[Mark]) -> None:
    svg.open_group(id="lane-scenarios")
    _label(svg, lane, "scenario")
    ran = {r.name: r for r in results if isinstance(r, ScenarioResult)}
    begins = {m.scenario: m.t for m in rec.marks if m.kind == "begin" and m.scenario in ran}
    ends = {m.scenario: m.t for m in rec.marks if m.kind == "end"}
    for name, t_b in sorted(begins.items(), key=lambda kv: kv[1]):
        x0, x1 = ax.x(t_b), ax.x(ends.get(name, ax.t1))
        r = ran[name]
        mark = "\u2714" if r.passed else "\u2718"
        react = "" if r.reaction_ms is None else f" {r.reaction_ms:+.1f} ms"
        svg.rect(x0, lane.y, x1 - x0, 22, fill="#e8f5e9" if r.passed else "#ffcdd2",
                 stroke="#757575", stroke_width=1, rx=3)
        for label in (f"{mark} {name}{react}", f"{mark} {name}", mark):
            if len(label) * 7.2 <= x1 - x0 - 4:
                svg.text((x0 + x1) / 2, lane.y + 15, label, text_anchor="middle",
                         font_size=12, font_weight="bold",
                         fill="#1b5e20" if r.passed else "#b71c1c")
                break
        svg.line(x0, lane.y, x0, lane.y + lane.h, stroke="#424242", stroke_width=1.5)
    last_x = [-100.0, -100.0, -100.0]  # per row: x of the last circle drawn there
    for n, m in enumerate(steps, start=1):
        x = ax.x(m.t)
        free = [r for r, lx in enumerate(last_x) if x - lx >= 15]
        row = free[0] if free else min(range(len(last_x)), key=lambda r: last_x[r])
        last_x[row] = x
        cy = lane.y + 31 + 14 * row
        svg.circle(x, cy, 7, fill="#37474f", stroke="white", stroke_width=0.8)
        svg.text(x, cy + 3.5, str(n), text_anchor="middle", font_size=9, fill="white",
                 font_weight="bold")
    svg.close_group()


def _states(svg: Svg, ax: _Axis, lanes: dict[str, _Lane],
            intervals: Sequence[tuple[float, float, str | None]],
            down: Sequence[tuple[float, float]]) -> None:
    lane = lanes["state"]
    svg.open_group(id="lane-state")
    _label(svg, lane, "agent state")
    tint_top = lanes["temperature"].y
    tint_h = lanes["outputs"].y + lanes["outputs"].h - tint_top
    pieces = [(a, b, state) for t_b, t_e, state in intervals
              for a, b in (_subtract(t_b, t_e, down) if state is None else [(t_b, t_e)])]
    for t_b, t_e, state in pieces:
        x0, x1 = ax.x(t_b), ax.x(t_e)
        color = STATE_COLOR.get(state or "", NO_STATUS)
        svg.rect(x0, lane.y, x1 - x0, lane.h, fill=color)
        if state is not None:
            svg.rect(x0, tint_top, x1 - x0, tint_h, fill=color, fill_opacity=0.10)
        label = state.upper() if state else "no status"
        if len(label) * 7.5 < x1 - x0:
            svg.text((x0 + x1) / 2, lane.y + 17, label, text_anchor="middle", font_size=11,
                     fill="white" if state in ("failsafe", "normal") else "#212121",
                     font_weight="bold")
    for t_b, t_e in down:
        x0, x1 = ax.x(t_b), ax.x(t_e)
        svg.rect(x0, lane.y, x1 - x0, lane.h, fill=DOWN_COLOR)
        label = "AGENT DOWN" if (x1 - x0) > 80 else "down"
        if len(label) * 7 < x1 - x0:
            svg.text((x0 + x1) / 2, lane.y + 17, label, text_anchor="middle", font_size=11,
                     fill="white", font_weight="bold")
    svg.close_group()


def _subtract(t_b: float, t_e: float, cuts: Sequence[tuple[float, float]]
              ) -> list[tuple[float, float]]:
    """[t_b, t_e] without the periods in ``cuts`` (sorted, non-overlapping)."""
    out, start = [], t_b
    for c0, c1 in cuts:
        if c1 <= start or c0 >= t_e:
            continue
        if c0 > start:
            out.append((start, c0))
        start = max(start, c1)
    if start < t_e:
        out.append((start, t_e))
    return out


def _poly_segments(points: Sequence[tuple[float, float, float]], sx: Callable[[float], float],
                   sy: Callable[[float], float]) -> list[list[tuple[float, float]]]:
    segs: list[list[tuple[float, float]]] = []
    last_t: float | None = None
    for t, _raw, v in points:
        if last_t is None or t - last_t > SAMPLE_GAP_S:
            segs.append([])
        segs[-1].append((sx(t), sy(v)))
        last_t = t
    return segs


def _signals(svg: Svg, ax: _Axis, lane: _Lane, rec: Recording, *, profile: Profile,
             quantity: str) -> None:
    names = _bound_signals(profile, quantity)
    unit = profile.signal(names[0]).unit if names else ""
    svg.open_group(id=f"lane-{quantity}")
    _label(svg, lane, quantity, unit)
    true = [(s.t, getattr(s, quantity)) for s in rec.samples if getattr(s, quantity) is not None]
    healthy = [v for s in rec.samples for n, v in s.signals.items()
               if n in names and n not in s.faults]
    lo, hi = _range([v for _t, v in true] + healthy,
                    pad_min=1.0 if quantity == "temperature" else 0.05)

    def sy(v: float) -> float:
        return lane.y + lane.h - (v - lo) / (hi - lo) * lane.h

    _y_ticks(svg, lane, lo, hi, sy)
    svg.open_group(clip_path=f"url(#clip-{quantity})")
    first = len(_bound_signals(profile, "temperature")) if quantity == "pressure" else 0
    for i, name in enumerate(names):
        color = CHANNEL_COLORS[(first + i) % len(CHANNEL_COLORS)]
        pts = [(s.t, 0.0, s.signals[name]) for s in rec.samples if name in s.signals]
        for seg in _poly_segments(pts, ax.x, sy):
            svg.polyline(seg, stroke=color, stroke_width=1.6)
        off = [(t, ax.x(t), v) for t, _r, v in pts if v > hi or v < lo]
        for _t, x, v in off[:: max(1, len(off) // 40)]:
            yy = lane.y + 5 if v > hi else lane.y + lane.h - 5
            d = 5 if v > hi else -5
            svg.polygon([(x - 4, yy + d), (x + 4, yy + d), (x, yy - d)], fill=color)
        labelled: list[float] = []
        for t, x, v in off:  # label the first point of each off-scale run
            if not labelled or t - labelled[-1] > SAMPLE_GAP_S:
                yy = lane.y + 24 + 14 * i if v > hi else lane.y + lane.h - 12 - 14 * i
                svg.text(x + 4, yy, f"{name} {v:.4g} {unit}", font_size=10, fill=color,
                         font_weight="bold")
            labelled.append(t)
    pts_true = [(t, 0.0, v) for t, v in true]
    for seg in _poly_segments(pts_true, ax.x, sy):
        svg.polyline(seg, stroke="#000", stroke_width=1.4, stroke_dasharray="6 3")
    svg.close_group()
    limits = [tr for tr in profile.trips if tr.group == quantity and tr.limit is not None]
    for tr in limits:
        assert tr.limit is not None
        where = "" if lo <= tr.limit <= hi else " (off scale)"
        if not where:
            svg.line(LEFT, sy(tr.limit), WIDTH - RIGHT, sy(tr.limit), stroke=SAFE_COLOR,
                     stroke_dasharray="2 3")
        svg.text(WIDTH - RIGHT - 4, lane.y + 13, f"trip {tr.name}: {tr.condition.value} "
                 f"{tr.limit:g} {unit}{where}", text_anchor="end", font_size=10, fill=SAFE_COLOR)
    svg.close_group()


def _bound_signals(profile: Profile, quantity: str) -> list[str]:
    if profile.sim is not None:
        return list(getattr(profile.sim, quantity, ()))
    try:
        return list(profile.group(quantity).signals)
    except KeyError:
        return []


def _y_ticks(svg: Svg, lane: _Lane, lo: float, hi: float, sy: Callable[[float], float]) -> None:
    step = _nice_step(hi - lo, target=4)
    v = math.ceil(lo / step) * step
    while v <= hi:
        y = sy(v)
        svg.line(LEFT - 4, y, LEFT, y, stroke="#616161")
        svg.line(LEFT, y, WIDTH - RIGHT, y, stroke="#f0f0f0")
        svg.text(LEFT - 7, y + 4, f"{v:g}", text_anchor="end", font_size=10, fill="#424242")
        v += step


def _outputs(svg: Svg, ax: _Axis, lane: _Lane, rec: Recording, profile: Profile) -> None:
    svg.open_group(id="lane-outputs")
    _label(svg, lane, "outputs at PLC", "%")
    lo = min([o.minimum for o in profile.outputs], default=0.0)
    hi = max([o.maximum for o in profile.outputs], default=100.0)
    lo, hi = lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo)

    def sy(v: float) -> float:
        return lane.y + lane.h - (v - lo) / (hi - lo) * lane.h

    _y_ticks(svg, lane, lo, hi, sy)
    svg.open_group(clip_path="url(#clip-outputs)")
    for i, out in enumerate(profile.outputs):
        pts = [(s.t, 0.0, s.outputs[out.name]) for s in rec.samples if out.name in s.outputs]
        for seg in _poly_segments(pts, ax.x, sy):
            svg.polyline(seg, stroke=OUTPUT_COLORS[i % len(OUTPUT_COLORS)], stroke_width=1.8)
    svg.close_group()
    svg.close_group()


def _twin(svg: Svg, ax: _Axis, lane: _Lane, rec: Recording) -> None:
    svg.open_group(id="lane-twin")
    _label(svg, lane, "twin heartbeats")
    svg.text(12, lane.y + 29, "(sent)", font_size=11, fill="#666")
    for t in rec.heartbeats:
        x = ax.x(t)
        svg.line(x, lane.y + 4, x, lane.y + lane.h - 4, stroke=HB_COLOR, stroke_width=1)
    svg.close_group()


def _writes(svg: Svg, ax: _Axis, lane: _Lane, rec: Recording, profile: Profile) -> None:
    svg.open_group(id="lane-writes")
    svg.text(12, lane.y + 16, "PLC writes", font_weight="bold", font_size=13)
    hb = profile.plc_watchdog.heartbeat_address
    row1, row2 = lane.y + 4, lane.y + lane.h / 2 + 2
    svg.text(LEFT - 7, row1 + 12, "heartbeat", font_size=10, fill="#616161",
             text_anchor="end")
    svg.text(LEFT - 7, row2 + 14, "outputs", font_size=10, fill="#616161", text_anchor="end")
    outs = output_names(profile)
    fallback_t: float | None = None
    for r in rec.writes:
        x = ax.x(float(r["t"]))
        if r.get("source") == "plc watchdog":
            if fallback_t is None or r["t"] - fallback_t > 0.5:
                fallback_t = float(r["t"])
                cy = row2 + 11
                svg.polygon([(x, cy - 10), (x + 8, cy), (x, cy + 10), (x - 8, cy)],
                            fill=FALLBACK_COLOR, stroke="#000", stroke_width=0.8)
        elif r.get("source") == "modbus" and r.get("address") == hb:
            svg.line(x, row1, x, row1 + lane.h / 2 - 8, stroke="#9e9e9e", stroke_width=0.7)
        elif is_output_write(r, outs):
            safe = is_safe_write(r, profile)
            svg.line(x, row2, x, lane.y + lane.h - 3, stroke=SAFE_COLOR if safe else "#1565c0",
                     stroke_width=3 if safe else 1.5)
            if safe:
                svg.polygon([(x - 6, row2 - 4), (x + 6, row2 - 4), (x, row2 + 6)],
                            fill=SAFE_COLOR)
    svg.close_group()


def _step_lines(svg: Svg, ax: _Axis, lanes: dict[str, _Lane], steps: Sequence[Mark]) -> None:
    top = lanes["scenarios"].y + 24
    bottom = lanes["writes"].y + lanes["writes"].h
    for m in steps:
        x = ax.x(m.t)
        svg.line(x, top, x, bottom, stroke="#37474f", stroke_width=0.8, stroke_dasharray="3 3",
                 stroke_opacity=0.7)


def _time_axis(svg: Svg, ax: _Axis, y: float) -> float:
    y -= GAP - 4
    svg.line(LEFT, y, WIDTH - RIGHT, y, stroke="#424242")
    step = _nice_step(ax.t1 - ax.t0)
    t = 0.0
    while ax.t0 + t <= ax.t1 + 1e-9:
        x = ax.x(ax.t0 + t)
        svg.line(x, y, x, y + 5, stroke="#424242")
        svg.text(x, y + 18, f"{t:g}", text_anchor="middle", font_size=11)
        t += step
    svg.text((LEFT + WIDTH - RIGHT) / 2, y + 36, "time since the demo started (s)",
             text_anchor="middle", font_size=12)
    return y + 44


def _legend(svg: Svg, y: float, profile: Profile) -> float:
    items: list[tuple[str, str, str]] = []  # (kind, color, label)
    names = _bound_signals(profile, "temperature") + _bound_signals(profile, "pressure")
    for name in _bound_signals(profile, "temperature"):
        items.append(("line", CHANNEL_COLORS[names.index(name) % len(CHANNEL_COLORS)],
                      f"{name} (served)"))
    for name in _bound_signals(profile, "pressure"):
        items.append(("line", CHANNEL_COLORS[names.index(name) % len(CHANNEL_COLORS)],
                      f"{name} (served)"))
    items.append(("dash", "#000", "true process value"))
    for i, out in enumerate(profile.outputs):
        items.append(("line", OUTPUT_COLORS[i % len(OUTPUT_COLORS)], out.name))
    items += [("tick", HB_COLOR, "twin heartbeat sent"), ("tick", "#9e9e9e",
                                                          "agent heartbeat-register write"),
              ("tick", "#1565c0", "output write"), ("tri", SAFE_COLOR, "safe-state write"),
              ("dia", FALLBACK_COLOR, "PLC watchdog fallback"),
              ("tri", "#757575", "value off scale")]
    items += [("box", c, s) for s, c in STATE_COLOR.items()]
    items += [("box", NO_STATUS, "no status message"), ("box", DOWN_COLOR, "agent not running")]
    x, row_h = LEFT, 20.0
    svg.open_group(id="legend")
    svg.text(12, y + 12, "legend", font_weight="bold", font_size=13)
    for kind, color, label in items:
        w = 30 + len(label) * 6.6
        if x + w > WIDTH - RIGHT:
            x, y = LEFT, y + row_h
        cy = y + 8
        if kind in ("line", "dash"):
            svg.line(x, cy, x + 20, cy, stroke=color, stroke_width=2,
                     stroke_dasharray="6 3" if kind == "dash" else None)
        elif kind == "tick":
            svg.line(x + 10, cy - 7, x + 10, cy + 7, stroke=color, stroke_width=2)
        elif kind == "tri":
            svg.polygon([(x + 4, cy - 5), (x + 16, cy - 5), (x + 10, cy + 6)], fill=color)
        elif kind == "dia":
            svg.polygon([(x + 10, cy - 7), (x + 17, cy), (x + 10, cy + 7), (x + 3, cy)],
                        fill=color)
        else:
            svg.rect(x + 2, cy - 7, 16, 14, fill=color, stroke="#9e9e9e")
        svg.text(x + 25, cy + 4, label, font_size=11)
        x += w
    svg.close_group()
    return y + row_h + 4


def _step_list(svg: Svg, y: float, rec: Recording, steps: Sequence[Mark]) -> None:
    svg.open_group(id="steps")
    svg.text(12, y + 12, "steps", font_weight="bold", font_size=13)
    half = math.ceil(len(steps) / 2)
    col_w = (WIDTH - LEFT - RIGHT) / 2
    for n, m in enumerate(steps, start=1):
        col, row = divmod(n - 1, half) if half else (0, 0)
        x, yy = LEFT + col * col_w, y + 12 + row * 17
        t = m.t - rec.t0
        svg.circle(x + 7, yy - 4, 7, fill="#37474f")
        svg.text(x + 7, yy - 0.5, str(n), text_anchor="middle", font_size=9, fill="white",
                 font_weight="bold")
        svg.text(x + 20, yy, f"{t:6.2f} s  [{m.scenario}] {m.text}", font_size=11)
    svg.close_group()
