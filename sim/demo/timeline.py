"""The incident timeline picture: one SVG of the whole demo run, drawn by hand.

Lanes, top to bottom, on one time axis (seconds since the demo started)::

    scenarios      | shadow ✔ | ... | active-twin-outage ✔ 3.1 ms | ... | steps
    agent state    [ normal ][failsafe][recovering][ normal ] (from its 1 Hz status messages)
    twin authority [ LOCAL       ][RETURNING][ REMOTE ][ LOCAL ]   (status messages)
                   PLC flag strip: the PLC program / the agent's registers drive the plant
    mode           [ SHADOW ][ ACTIVE          ]  | push ▶ ✔ v1 accepted  | ▶ ✘ v2 unknown_key
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
from pathlib import Path

from agent.model.profile import Profile
from sim.demo.context import ScenarioResult, Skipped
from sim.demo.lanes import (
    ACCEPT_COLOR,
    AUTHORITY_COLOR,
    CHANNEL_COLORS,
    DOWN_COLOR,
    FALLBACK_COLOR,
    FLAG_COLOR,
    GAP,
    HB_COLOR,
    LANES,
    LEFT,
    MODE_COLOR,
    NO_STATUS,
    OUTPUT_COLORS,
    REFUSE_COLOR,
    RIGHT,
    SAFE_COLOR,
    STATE_COLOR,
    WIDTH,
    Axis,
    Lane,
    bound_signals,
    draw_authority,
    draw_grid,
    draw_mode,
    draw_outputs,
    draw_scenarios,
    draw_signals,
    draw_states,
    draw_step_lines,
    draw_time_axis,
    draw_twin,
    draw_writes,
)
from sim.demo.record import Mark, Recording, StatusSeen
from sim.demo.svg import Svg

__all__ = ["ACCEPT_COLOR", "AUTHORITY_COLOR", "FALLBACK_COLOR", "FLAG_COLOR", "LANES",
           "MODE_COLOR", "REFUSE_COLOR",
           "SAFE_COLOR", "STATE_COLOR", "STATUS_STALE_S", "down_intervals", "render",
           "state_intervals", "write"]

STATUS_STALE_S = 2.5  # status messages come every second; a longer silence is "no status"


def state_intervals(rec: Recording, t_end: float, down: Sequence[tuple[float, float]] = (),
                    what: Callable[[StatusSeen], str] = lambda s: s.state,
                    ) -> list[tuple[float, float, str | None]]:
    """(start, end, state) from the status messages; None where no status came in time.

    A status holds until the next one, for at most ``STATUS_STALE_S``, and never past the
    start of a period in ``down`` (the agent process was not running). ``what`` picks the
    field (the safety state by default; ``lambda s: s.mode`` for the control authority).
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
        out.append((st.t, min(nxt, stale), what(st)))
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
    ax = Axis(rec.t0, t_end)
    heights = {"scenarios": 66.0, "state": 26.0, "authority": 32.0, "mode": 44.0,
               "temperature": 250.0,
               "pressure": 110.0, "outputs": 90.0, "twin": 28.0, "writes": 54.0}
    lanes: dict[str, Lane] = {}
    y = 76.0
    for name in LANES:
        lanes[name] = Lane(name, y, heights[name])
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
    draw_grid(svg, ax, lanes, y)
    draw_scenarios(svg, ax, lanes["scenarios"], rec, results=results, steps=steps)
    draw_states(svg, ax, lanes, intervals, down)
    remote = None if profile.plc_remote is None else profile.plc_remote.remote_value
    draw_authority(svg, ax, lanes["authority"], rec,
                   state_intervals(rec, t_end, down, what=lambda s: s.authority),
                   remote_value=remote)
    draw_mode(svg, ax, lanes["mode"], rec,
              state_intervals(rec, t_end, down, what=lambda s: s.mode))
    draw_signals(svg, ax, lanes["temperature"], rec, profile=profile, quantity="temperature")
    draw_signals(svg, ax, lanes["pressure"], rec, profile=profile, quantity="pressure")
    draw_outputs(svg, ax, lanes["outputs"], rec, profile)
    draw_twin(svg, ax, lanes["twin"], rec)
    draw_writes(svg, ax, lanes["writes"], rec, profile)
    draw_step_lines(svg, ax, lanes, steps)
    y = draw_time_axis(svg, ax, y)
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


def _legend(svg: Svg, y: float, profile: Profile) -> float:
    items: list[tuple[str, str, str]] = []  # (kind, color, label)
    names = bound_signals(profile, "temperature") + bound_signals(profile, "pressure")
    for name in bound_signals(profile, "temperature"):
        items.append(("line", CHANNEL_COLORS[names.index(name) % len(CHANNEL_COLORS)],
                      f"{name} (served)"))
    for name in bound_signals(profile, "pressure"):
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
    items += [("box", c, f"authority {a}") for a, c in AUTHORITY_COLOR.items()]
    if profile.plc_remote is not None:
        items += [("box", FLAG_COLOR["agent"], "PLC flag remote: the agent's registers"),
                  ("box", FLAG_COLOR["program"], "PLC flag local: the PLC program")]
    items += [("box", c, f"mode {m}") for m, c in MODE_COLOR.items()]
    items += [("push", "#212121", "config pushed by the twin"),
              ("flag", ACCEPT_COLOR, "config accepted"), ("flag", REFUSE_COLOR, "refused")]
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
        elif kind == "push":
            svg.line(x + 10, cy - 8, x + 10, cy + 8, stroke=color, stroke_width=1.5)
        elif kind == "flag":
            svg.polygon([(x + 6, cy - 6), (x + 15, cy - 2), (x + 6, cy + 2)], fill=color,
                        stroke="#000", stroke_width=0.6)
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
