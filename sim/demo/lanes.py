"""The lanes of the incident timeline: one drawing function per lane, on one time axis.

Layout constants and colours live here too; :mod:`sim.demo.timeline` arranges the lanes
and adds the header, legend and step list. Every lane is drawn into its own
``<g id="lane-NAME">`` group. Functions are pure drawing: recording in, SVG elements out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.model.profile import Profile
from sim.demo.context import ScenarioResult, Skipped
from sim.demo.judge import held_after, is_output_write, is_safe_write, output_names
from sim.demo.record import Mark, Recording
from sim.demo.svg import Svg

WIDTH = 1500.0
LEFT = 190.0
RIGHT = 40.0
GAP = 16.0
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
MODE_COLOR = {"shadow": "#cfd8dc", "active": "#1e88e5"}
AUTHORITY_COLOR = {"local": "#b0bec5", "returning": "#ffb74d", "remote": "#3949ab"}
FLAG_COLOR = {"agent": "#0d47a1", "program": "#8d6e63"}  # who drives the plant at the PLC
ACCEPT_COLOR = "#2e7d32"
REFUSE_COLOR = "#c62828"
LANES = ("scenarios", "state", "authority", "mode", "temperature", "pressure", "outputs",
         "twin", "writes")


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    h: float


class Axis:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0 = t0
        self.t1 = max(t1, t0 + 1.0)

    def x(self, t: float) -> float:
        frac = (t - self.t0) / (self.t1 - self.t0)
        return LEFT + min(max(frac, 0.0), 1.0) * (WIDTH - LEFT - RIGHT)


def nice_step(span: float, target: int = 12) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def value_range(values: Sequence[float], pad_min: float) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = max(pad_min, 0.15 * (hi - lo))
    return lo - pad, hi + pad


def lane_label(svg: Svg, lane: Lane, title: str, unit: str = "") -> None:
    svg.text(12, lane.y + min(lane.h / 2, 18) + 4, title, font_weight="bold", font_size=13)
    if unit:
        svg.text(12, lane.y + min(lane.h / 2, 18) + 20, unit, font_size=11, fill="#666")


def draw_grid(svg: Svg, ax: Axis, lanes: dict[str, Lane], bottom: float) -> None:
    step = nice_step(ax.t1 - ax.t0)
    top = lanes["state"].y
    t = 0.0
    while ax.t0 + t <= ax.t1 + 1e-9:
        x = ax.x(ax.t0 + t)
        svg.line(x, top, x, bottom - GAP, stroke="#e0e0e0", stroke_width=1)
        t += step
    for name in LANES[1:]:
        if name in ("authority", "mode"):
            continue
        ln = lanes[name]
        svg.rect(LEFT, ln.y, WIDTH - LEFT - RIGHT, ln.h, fill="none", stroke="#9e9e9e",
                 stroke_width=1)


def draw_scenarios(svg: Svg, ax: Axis, lane: Lane, rec: Recording, *,
               results: Sequence[ScenarioResult | Skipped], steps: Sequence[Mark]) -> None:
    svg.open_group(id="lane-scenarios")
    lane_label(svg, lane, "scenario")
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
        for label, size in ((f"{mark} {name}{react}", 12), (f"{mark} {name}", 12),
                            (f"{mark} {name}", 9), (mark, 12)):
            if len(label) * size * 0.6 <= x1 - x0 - 4:
                svg.text((x0 + x1) / 2, lane.y + 15, label, text_anchor="middle",
                         font_size=size, font_weight="bold",
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


def draw_states(svg: Svg, ax: Axis, lanes: dict[str, Lane],
            intervals: Sequence[tuple[float, float, str | None]],
            down: Sequence[tuple[float, float]]) -> None:
    lane = lanes["state"]
    svg.open_group(id="lane-state")
    lane_label(svg, lane, "agent state")
    tint_top = lanes["temperature"].y
    tint_h = lanes["outputs"].y + lanes["outputs"].h - tint_top
    pieces = [(a, b, state) for t_b, t_e, state in intervals
              for a, b in (subtract(t_b, t_e, down) if state is None else [(t_b, t_e)])]
    for t_b, t_e, state in pieces:
        x0, x1 = ax.x(t_b), ax.x(t_e)
        color = STATE_COLOR.get(state or "", NO_STATUS)
        svg.rect(x0, lane.y, x1 - x0, lane.h, fill=color)
        if state is not None:
            svg.rect(x0, tint_top, x1 - x0, tint_h, fill=color, fill_opacity=0.10)
        label = state.upper() if state else "no status"
        for text, size in ((label, 11), (label, 9), (label[:5] + ".", 9)):
            if len(text) * size * 0.68 < x1 - x0 - 2:
                svg.text((x0 + x1) / 2, lane.y + 17, text, text_anchor="middle", font_size=size,
                         fill="white" if state in ("failsafe", "normal") else "#212121",
                         font_weight="bold")
                break
    for t_b, t_e in down:
        x0, x1 = ax.x(t_b), ax.x(t_e)
        svg.rect(x0, lane.y, x1 - x0, lane.h, fill=DOWN_COLOR)
        label = "AGENT DOWN" if (x1 - x0) > 80 else "down"
        if len(label) * 7 < x1 - x0:
            svg.text((x0 + x1) / 2, lane.y + 17, label, text_anchor="middle", font_size=11,
                     fill="white", font_weight="bold")
    svg.close_group()


def subtract(t_b: float, t_e: float, cuts: Sequence[tuple[float, float]]
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


def poly_segments(points: Sequence[tuple[float, float, float]], sx: Callable[[float], float],
                   sy: Callable[[float], float]) -> list[list[tuple[float, float]]]:
    segs: list[list[tuple[float, float]]] = []
    last_t: float | None = None
    for t, _raw, v in points:
        if last_t is None or t - last_t > SAMPLE_GAP_S:
            segs.append([])
        segs[-1].append((sx(t), sy(v)))
        last_t = t
    return segs


def draw_signals(svg: Svg, ax: Axis, lane: Lane, rec: Recording, *, profile: Profile,
             quantity: str) -> None:
    names = bound_signals(profile, quantity)
    unit = profile.signal(names[0]).unit if names else ""
    svg.open_group(id=f"lane-{quantity}")
    lane_label(svg, lane, quantity, unit)
    true = [(s.t, getattr(s, quantity)) for s in rec.samples if getattr(s, quantity) is not None]
    healthy = [v for s in rec.samples for n, v in s.signals.items()
               if n in names and n not in s.faults]
    lo, hi = value_range([v for _t, v in true] + healthy,
                    pad_min=1.0 if quantity == "temperature" else 0.05)

    def sy(v: float) -> float:
        return lane.y + lane.h - (v - lo) / (hi - lo) * lane.h

    y_ticks(svg, lane, lo, hi, sy)
    svg.open_group(clip_path=f"url(#clip-{quantity})")
    first = len(bound_signals(profile, "temperature")) if quantity == "pressure" else 0
    for i, name in enumerate(names):
        color = CHANNEL_COLORS[(first + i) % len(CHANNEL_COLORS)]
        pts = [(s.t, 0.0, s.signals[name]) for s in rec.samples if name in s.signals]
        for seg in poly_segments(pts, ax.x, sy):
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
    for seg in poly_segments(pts_true, ax.x, sy):
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


def bound_signals(profile: Profile, quantity: str) -> list[str]:
    if profile.sim is not None:
        return list(getattr(profile.sim, quantity, ()))
    try:
        return list(profile.group(quantity).signals)
    except KeyError:
        return []


def y_ticks(svg: Svg, lane: Lane, lo: float, hi: float, sy: Callable[[float], float]) -> None:
    step = nice_step(hi - lo, target=4)
    v = math.ceil(lo / step) * step
    while v <= hi:
        y = sy(v)
        svg.line(LEFT - 4, y, LEFT, y, stroke="#616161")
        svg.line(LEFT, y, WIDTH - RIGHT, y, stroke="#f0f0f0")
        svg.text(LEFT - 7, y + 4, f"{v:g}", text_anchor="end", font_size=10, fill="#424242")
        v += step


def draw_outputs(svg: Svg, ax: Axis, lane: Lane, rec: Recording, profile: Profile) -> None:
    svg.open_group(id="lane-outputs")
    lane_label(svg, lane, "outputs at PLC", "%")
    lo = min([o.minimum for o in profile.outputs], default=0.0)
    hi = max([o.maximum for o in profile.outputs], default=100.0)
    lo, hi = lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo)

    def sy(v: float) -> float:
        return lane.y + lane.h - (v - lo) / (hi - lo) * lane.h

    y_ticks(svg, lane, lo, hi, sy)
    svg.open_group(clip_path="url(#clip-outputs)")
    for i, out in enumerate(profile.outputs):
        pts = [(s.t, 0.0, s.outputs[out.name]) for s in rec.samples if out.name in s.outputs]
        for seg in poly_segments(pts, ax.x, sy):
            svg.polyline(seg, stroke=OUTPUT_COLORS[i % len(OUTPUT_COLORS)], stroke_width=1.8)
    svg.close_group()
    svg.close_group()


def draw_twin(svg: Svg, ax: Axis, lane: Lane, rec: Recording) -> None:
    svg.open_group(id="lane-twin")
    lane_label(svg, lane, "twin heartbeats")
    svg.text(12, lane.y + 29, "(sent)", font_size=11, fill="#666")
    for t in rec.heartbeats:
        x = ax.x(t)
        svg.line(x, lane.y + 4, x, lane.y + lane.h - 4, stroke=HB_COLOR, stroke_width=1)
    svg.close_group()


def draw_writes(svg: Svg, ax: Axis, lane: Lane, rec: Recording, profile: Profile) -> None:
    svg.open_group(id="lane-writes")
    svg.text(12, lane.y + 16, "PLC writes", font_weight="bold", font_size=13)
    hb = profile.plc_watchdog.heartbeat_address
    row1, row2 = lane.y + 4, lane.y + lane.h / 2 + 2
    svg.text(LEFT - 7, row1 + 12, "heartbeat", font_size=10, fill="#616161",
             text_anchor="end")
    svg.text(LEFT - 7, row2 + 14, "outputs", font_size=10, fill="#616161", text_anchor="end")
    outs = output_names(profile)
    fallback_t: float | None = None
    held: dict[str, int] = {}
    for r in rec.writes:
        x = ax.x(float(r["t"]))
        safe = is_safe_write(r, profile, held)
        held_after(held, r, profile)
        if r.get("source") == "plc watchdog":
            if fallback_t is None or r["t"] - fallback_t > 0.5:
                fallback_t = float(r["t"])
                cy = row2 + 11
                svg.polygon([(x, cy - 10), (x + 8, cy), (x, cy + 10), (x - 8, cy)],
                            fill=FALLBACK_COLOR, stroke="#000", stroke_width=0.8)
        elif r.get("source") == "modbus" and r.get("address") == hb:
            svg.line(x, row1, x, row1 + lane.h / 2 - 8, stroke="#9e9e9e", stroke_width=0.7)
        elif is_output_write(r, outs):
            full = safe and outs <= set(r.get("names", ()))
            svg.line(x, row2, x, lane.y + lane.h - 3, stroke=SAFE_COLOR if safe else "#1565c0",
                     stroke_width=3 if full else 1.2)
            if full:  # the whole safe set: a safe state was entered (or refreshed)
                svg.polygon([(x - 6, row2 - 4), (x + 6, row2 - 4), (x, row2 + 6)],
                            fill=SAFE_COLOR)
    svg.close_group()


def draw_authority(svg: Svg, ax: Axis, lane: Lane, rec: Recording,
                   intervals: Sequence[tuple[float, float, str | None]], *,
                   remote_value: int | None) -> None:
    """Twin authority as its own band (LOCAL / RETURNING / REMOTE, from the status
    messages), and under it a strip of who drives the plant at the PLC (from the sim PLC's
    samples of the ``[plc_remote]`` flag: at ``remote_value`` the agent's registers, else
    the PLC program; no strip without a flag)."""
    svg.open_group(id="lane-authority")
    lane_label(svg, lane, "twin authority")
    strip_h = 10.0 if remote_value is not None else 0.0
    band_h = lane.h - strip_h - (2.0 if strip_h else 0.0)
    for t_b, t_e, auth in intervals:
        if auth is None:
            continue
        x0, x1 = ax.x(t_b), ax.x(t_e)
        svg.rect(x0, lane.y, x1 - x0, band_h, fill=AUTHORITY_COLOR.get(auth, NO_STATUS))
        if len(auth) * 7 < x1 - x0 - 4:
            svg.text((x0 + x1) / 2, lane.y + band_h / 2 + 4, auth.upper(), font_size=10,
                     text_anchor="middle", font_weight="bold",
                     fill="white" if auth == "remote" else "#263238")
    if remote_value is not None:
        svg.text(LEFT - 7, lane.y + lane.h - 1, "PLC flag", font_size=10, fill="#616161",
                 text_anchor="end")
        pieces: list[tuple[float, float, str]] = []
        last_t: float | None = None
        for smp in rec.samples:
            if smp.plc_remote is None:
                continue
            who = "agent" if smp.plc_remote == remote_value else "program"
            if pieces and pieces[-1][2] == who and last_t is not None \
                    and smp.t - last_t <= SAMPLE_GAP_S:
                pieces[-1] = (pieces[-1][0], smp.t, who)
            else:
                pieces.append((smp.t, smp.t, who))
            last_t = smp.t
        y = lane.y + lane.h - strip_h
        for t_b, t_e, who in pieces:
            x0, x1 = ax.x(t_b), ax.x(t_e)
            svg.rect(x0, y, max(x1 - x0, 1.0), strip_h, fill=FLAG_COLOR[who])
    svg.close_group()


def draw_mode(svg: Svg, ax: Axis, lane: Lane, rec: Recording,
              modes: Sequence[tuple[float, float, str | None]]) -> None:
    """The control mode (shadow/active band, from the status messages) with every
    configuration push (a black tick when the twin sent it) and the agent's answer (a flag
    and its reason; answers close together alternate between two label rows)."""
    svg.open_group(id="lane-mode")
    lane_label(svg, lane, "mode")
    svg.text(12, lane.y + lane.h - 4, "config pushes", font_size=10, fill="#666")
    band_y, band_h = lane.y + 26, lane.h - 26
    for t_b, t_e, mode in modes:
        if mode is None:
            continue
        x0, x1 = ax.x(t_b), ax.x(t_e)
        svg.rect(x0, band_y, x1 - x0, band_h, fill=MODE_COLOR.get(mode, NO_STATUS))
        if len(mode) * 7 < x1 - x0 - 4:
            svg.text(x0 + 4, band_y + band_h - 4, mode.upper(), font_size=10,
                     font_weight="bold", fill="white" if mode == "active" else "#37474f")
    for t in rec.pushes:
        x = ax.x(t)
        svg.line(x, lane.y, x, lane.y + lane.h, stroke="#212121", stroke_width=1.5)
    last_x, row = -1e9, 1
    for c in sorted(rec.config_results, key=lambda c: c.t):
        x = ax.x(c.t)
        row = 1 - row if x - last_x < 150 else 0
        last_x = x
        y = lane.y + 10 + 13 * row
        color = ACCEPT_COLOR if c.accepted else REFUSE_COLOR
        svg.polygon([(x, y - 8), (x + 9, y - 4), (x, y)], fill=color, stroke="#000",
                    stroke_width=0.6)
        mark = "\u2714" if c.accepted else "\u2718"
        label = f"{mark} v{c.version} {c.reason}"
        right = x + 11 + len(label) * 6.2 <= WIDTH - RIGHT  # else left of the flag
        svg.text(x + 11 if right else x - 3, y + 1, label, font_size=10, font_weight="bold",
                 fill=color, text_anchor="start" if right else "end")
    svg.close_group()


def draw_step_lines(svg: Svg, ax: Axis, lanes: dict[str, Lane], steps: Sequence[Mark]) -> None:
    top = lanes["scenarios"].y + 24
    bottom = lanes["writes"].y + lanes["writes"].h
    for m in steps:
        x = ax.x(m.t)
        svg.line(x, top, x, bottom, stroke="#37474f", stroke_width=0.8, stroke_dasharray="3 3",
                 stroke_opacity=0.7)


def draw_time_axis(svg: Svg, ax: Axis, y: float) -> float:
    y -= GAP - 4
    svg.line(LEFT, y, WIDTH - RIGHT, y, stroke="#424242")
    step = nice_step(ax.t1 - ax.t0)
    t = 0.0
    while ax.t0 + t <= ax.t1 + 1e-9:
        x = ax.x(ax.t0 + t)
        svg.line(x, y, x, y + 5, stroke="#424242")
        svg.text(x, y + 18, f"{t:g}", text_anchor="middle", font_size=11)
        t += step
    svg.text((LEFT + WIDTH - RIGHT) / 2, y + 36, "time since the demo started (s)",
             text_anchor="middle", font_size=12)
    return y + 44
