"""``twinguard status [--json]``: ask the running agent over its status socket and show it.

The socket is ``STATE_DIR/twinguard.sock`` (``--state-dir``, default as ``twinguard run``:
``$STATE_DIRECTORY`` or ``/var/lib/twinguard``); the protocol is in
:mod:`agent.io.status_socket`, its client in :mod:`agent.io.status_client`, the snapshot
model in :mod:`agent.model.status`.

Exit codes: 0 when the agent answered; 3 when the agent is not running (no socket, or
nothing listens on it); 1 for no access (not the agent's user or group), a timeout or a
reply that makes no sense.

rich is imported where the view is drawn, not at the top: ``twinguard run`` builds the same
parser, and rich must stay out of the running agent's memory (RSS matters on a Pi).
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.common import EXIT_OK, ask_agent, json_option, state_dir_option
from agent.io.status_client import fetch_status, request
from agent.model.status import RealtimeStatus, StatusSnapshot, ThreadSchedStatus

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

STATE_STYLE = {"normal": "bold green", "degraded": "bold yellow", "starting": "bold yellow",
               "recovering": "bold red", "failsafe": "bold white on red"}
QUALITY_STYLE = {"good": "green", "degraded": "yellow", "bad": "bold red"}
LINK_STYLE = {"alive": "green", "late": "yellow", "lost": "bold red"}


EXIT_CODES = """exit status:
  0  the agent answered (whatever its state)
  1  no access to its socket (not the agent's user or group), a timeout or a reply that
     makes no sense
  2  bad usage
  3  the agent is not running (no socket in the state directory, or nothing listens on it)"""

# --- rendering -------------------------------------------------------------------------------

def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "\N{EM DASH}"
    if isinstance(value, int):  # counters, epochs and sequence numbers: every digit
        return f"{value}{unit}"
    return f"{value:.6g}{unit}"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _when(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


def _styled(value: str, styles: Mapping[str, str]) -> Text:
    from rich.text import Text  # noqa: PLC0415 - rich: see the module docstring

    return Text(value.upper(), style=styles.get(value, ""))


def _header(s: StatusSnapshot) -> Panel:
    from rich.panel import Panel  # noqa: PLC0415 - rich: see the module docstring
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    state = _styled(s.state, STATE_STYLE)
    if s.waiting_for_ack:
        state.append("  waiting for an ack (reset button or `twinguard ack`)", style="bold")
    if s.holdoff_left_s is not None:
        state.append(f"  auto recovery in {_dur(s.holdoff_left_s)}")
    grid.add_row("state", state)
    grid.add_row("cause", s.cause)
    if not s.safe_set.confirmed:
        since = "" if s.safe_set.since_wall is None else f" since {_when(s.safe_set.since_wall)}"
        grid.add_row("safe set", Text(f"not confirmed{since}: "
                                      f"{', '.join(s.safe_set.unconfirmed)} (written again "
                                      "every tick)", style="bold red"))
    grid.add_row("mode", s.mode.upper())
    grid.add_row("authority", _authority(s))
    link = _styled(s.twin.state, LINK_STYLE)
    conn = {None: "no twin configured", True: "connected", False: "disconnected"}
    link.append(f"  {conn[s.twin.connected]}, {s.twin.cause}; last heartbeat "
                f"{_dur(s.twin.last_seen_age_s)}{'' if s.twin.last_seen_age_s is None else ' ago'}"
                f", epoch {_num(s.twin.epoch)}")
    grid.add_row("twin", link)
    p = s.plc
    fell = ", FELL BACK (latched)" if p.watchdog_latched else ""
    held = ("" if p.watchdog_timeout_ms is None
            else f" (PLC holds {p.watchdog_timeout_ms} ms, profile expects "
                 f"{p.watchdog_expected_ms} ms{fell})")
    grid.add_row("PLC", f"{'connected' if p.connected else 'DISCONNECTED'}, "
                        f"{'answering' if p.reachable else 'NOT answering'}, comm watchdog "
                        f"{'verified' if p.watchdog_ok else 'NOT verified'}{held}")
    grid.add_row("trips", "; ".join(f"{t.name} ({t.group}): {t.cause}" for t in s.trips)
                 or "none")
    grid.add_row("outputs", ", ".join(f"{o.name}={_num(o.value)}" for o in s.outputs)
                 or "none")
    if s.realtime is not None:
        grid.add_row("real time", _realtime(s.realtime))
    grid.add_row("config", f"version {s.config_version}, profile {s.profile}")
    grid.add_row("agent", f"twinguard {s.version}, pid {s.pid}, up {_dur(s.uptime_s)}, "
                          f"as of {_when(s.wall)}")
    return Panel(grid, title="twinguard status", border_style=STATE_STYLE.get(s.state, ""))


def _authority(s: StatusSnapshot) -> Text:
    """Who decides the outputs: ``REMOTE (the twin)``, or ``LOCAL since T: reason``."""
    from rich.text import Text  # noqa: PLC0415 - rich: see the module docstring

    a = s.authority
    if a.state == "remote":
        return Text("REMOTE  the twin decides the outputs (within limits)", style="bold green")
    since = "" if a.shed_since_wall is None else f" since {_when(a.shed_since_wall)}"
    text = Text(f"{a.state.upper()}{since}: {a.shed_reason or 'local control'}")
    if a.state == "returning":
        text.append("; the twin regains authority "
                    + ("on an ack (reset button or `twinguard ack`)" if a.waiting_for_ack
                       else f"in {_dur(a.holdoff_left_s)}"), style="bold")
    return text


def _sched(t: ThreadSchedStatus) -> str:
    """``FIFO 40``; a time-sharing policy has no priority: ``OTHER``."""
    return f"{t.policy.upper()} {t.priority}" if t.policy in ("fifo", "rr") else t.policy.upper()


def _realtime(r: RealtimeStatus) -> Text:
    """As the kernel grants it: ``loop FIFO 40, watchdog FIFO 45, 3 more threads at FIFO 40;
    memory locked (VmLck ..., VmRSS ...)``, and what was refused."""
    from rich.text import Text  # noqa: PLC0415 - rich: see the module docstring

    loop = (r.loop.policy, r.loop.priority)
    rest = [t for t in r.threads
            if t.tid != r.loop.tid and (r.watchdog is None or t.tid != r.watchdog.tid)]
    unlike = [t for t in rest if (t.policy, t.priority) != loop]
    text = Text(f"loop {_sched(r.loop)}, watchdog "
                f"{'not armed' if r.watchdog is None else _sched(r.watchdog)}, "
                f"{len(rest) - len(unlike)} more thread{'' if len(rest) == 1 else 's'} at "
                f"{_sched(r.loop)}")
    if unlike:
        text.append(", NOT like the loop: " + ", ".join(f"{t.name} {_sched(t)}"
                                                        for t in unlike), style="bold yellow")
    text.append(f"; memory locked (VmLck {r.vmlck_kib} kB, VmRSS {r.vmrss_kib} kB)"
                if r.memory_locked else f"; memory not locked (VmRSS {r.vmrss_kib} kB)")
    if r.fallback:
        text.append(f"\nREFUSED (asked: scheduling {r.scheduling}, lock_memory "
                    f"{str(r.lock_memory).lower()}): {r.fallback}", style="bold yellow")
    return text


def _votes(s: StatusSnapshot) -> Table:
    from rich import box  # noqa: PLC0415 - rich: see the module docstring
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(title="votes", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("group", "value", "quality", "used", "excluded", "reason", "age"):
        table.add_column(name)
    for v in s.votes:
        excluded = "\n".join(f"{e.channel}: {e.reason} ({e.detail})" if e.detail
                             else f"{e.channel}: {e.reason}" for e in v.excluded)
        table.add_row(v.group, _num(v.value), _styled(v.quality, QUALITY_STYLE),
                      ", ".join(v.used) or "none", Text(excluded or "none",
                                                        style="yellow" if excluded else ""),
                      v.reason, _dur(v.age_s))
    return table


def _recommendations(s: StatusSnapshot) -> Table:
    from rich import box  # noqa: PLC0415 - rich: see the module docstring
    from rich.table import Table  # noqa: PLC0415

    what = {"shadow": "shadow: would have written", "active": "active: written within limits"}
    table = Table(title=f"recommendations ({what.get(s.mode, s.mode)})",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("output", "recommended", "PLC holds", "divergence", "valid for", "id"):
        table.add_column(name)
    for r in s.recommendations:
        table.add_row(r.output, _num(r.value), _num(r.actual),
                      "\N{EM DASH}" if r.divergence is None else f"{r.divergence:+.6g}",
                      f"{_dur(r.valid_left_s)} (of {_dur(r.valid_s)})", r.id)
    if not s.recommendations:
        table.add_row("none")
    return table


def _counters(s: StatusSnapshot) -> Table:
    from rich import box  # noqa: PLC0415 - rich: see the module docstring
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="counters", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("part")
    table.add_column("counters")
    t, p, lp = s.twin, s.plc, s.loop
    table.add_row("twin heartbeats", f"accepted {t.accepted}, duplicates {t.duplicates}, "
                  f"out of order {t.out_of_order}, stale epoch {t.stale_epoch}, "
                  f"unhealthy {t.unhealthy}, after bye {t.after_bye}")
    k = t.link
    table.add_row("twin link", "no twin configured" if k is None else
                  f"endpoint {k.endpoint or '-'} (switches {k.switches}), "
                  f"frames in {k.frames_in}, out {k.frames_out}, protocol-error closes "
                  f"{k.malformed}, idle timeouts {k.idle_timeouts}, connects {k.connects}, "
                  f"sessions {k.sessions}, disconnects {k.disconnects}, failed attempts "
                  f"{k.failures}, discarded {k.discarded}, replies {k.replies} (dropped "
                  f"{k.replies_dropped}), sends while down {k.dropped}, yields {k.yields}, "
                  f"read pauses {k.read_pauses}, ahead {k.ahead}, most waiting "
                  f"{k.waiting_max}, callback errors {k.callback_errors}"
                  + ("; ignored: " + ", ".join(f"{r.reason} {r.count}" for r in k.refused)
                     if k.refused else "")
                  + (f"; last error: {k.last_error}" if k.last_error else ""))
    rc, dr = s.recommendation_counts, s.recommendation_counts.dropped
    table.add_row("twin recommendations", f"accepted {rc.accepted}, rejected {rc.rejected}, "
                  f"expired {rc.expired}; dropped: heartbeat lost {dr.heartbeat_lost}, epoch "
                  f"changed {dr.epoch_changed}, left normal {dr.left_normal}, mode changed "
                  f"{dr.mode_changed}, authority shed {dr.authority_shed}")
    backed = ", ".join(str(u) for u in p.backed_off_units) or "none"
    table.add_row("PLC client", f"requests {p.requests}, errors {p.errors}, timeouts "
                  f"{p.timeouts}, exception replies {p.exception_replies}, malformed replies "
                  f"{p.malformed}, late replies {p.late_replies}, reconnects "
                  f"{p.reconnects}, disconnects {p.disconnects}, skipped {p.skipped}, "
                  f"backed-off units {backed}"
                  + (f"; last error: {p.last_error}" if p.last_error else ""))
    table.add_row("loop", f"ticks {lp.ticks}, overruns {lp.overruns}, worst tick "
                  f"{lp.worst_tick_s * 1000:.1f} ms, faults {lp.faults}, safe writes "
                  f"{lp.safe_writes}, safe write failures {lp.safe_write_failures}, write "
                  f"failures {lp.write_failures}, stale writes refused {lp.stale_refused}, "
                  f"I/O budget overruns {lp.io_budget_overruns}")
    w = s.watchdog
    table.add_row("watchdog", "not armed" if w is None else
                  f"{w.kind}, {'armed' if w.armed else 'DISARMED'}, "
                  f"{'FIRED' if w.fired else 'not fired'}, kicks {w.kicks}, fires {w.fires}, "
                  f"hw feeds {w.feeds}, feed errors {w.feed_errors}, worst lateness "
                  f"{w.worst_lateness_ms:.3f} ms, last {w.last_lateness_ms:.3f} ms")
    sp = s.spool
    table.add_row("spool backlog", "no spool (no twin configured)" if sp is None else
                  f"{sp.count} records, {sp.bytes} bytes, seq {_num(sp.first_seq)}.."
                  f"{_num(sp.last_seq)}")
    table.add_row("telemetry policy", _policy(s))
    so = s.socket
    table.add_row("status socket", f"connections {so.connections}, status "
                  f"{so.status_requests}, acks {so.acks}, bad requests {so.bad_requests}, "
                  f"busy {so.busy}, errors {so.errors}")
    return table


def _policy(s: StatusSnapshot) -> str:
    p = s.telemetry_policy
    if p is None:
        return "not reported"
    rules = ", ".join(
        f"{r.name} {r.action}" + (f" {r.window_s:g} s" if r.window_s is not None else "")
        + (f" step {r.step:g}" if r.step is not None else "") for r in p.rules)
    named = f"as {p.sent_as}" if p.sent_as else "telemetry off"
    return (f"{p.id}: device {p.device} ({named}); {rules or 'send all'}"
            + (f"; {p.windows_open} windows open" if p.windows_open else ""))


def _events(s: StatusSnapshot) -> Table:
    from rich import box  # noqa: PLC0415 - rich: see the module docstring
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"recent events ({len(s.events)})", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for name in ("time", "kind", "event"):
        table.add_column(name)
    for e in s.events:
        table.add_row(_when(e.wall), e.kind, e.text)
    return table


def render(snap: StatusSnapshot) -> RenderableType:
    """The readable view: a panel (state, mode, link, PLC), votes, the twin's live
    recommendations, counters, events."""
    from rich.console import Group  # noqa: PLC0415 - rich: see the module docstring

    return Group(_header(snap), _votes(snap), _recommendations(snap), _counters(snap),
                 _events(snap))


def options(parser: argparse.ArgumentParser) -> None:
    state_dir_option(parser)
    json_option(parser)


def status(args: argparse.Namespace) -> int:
    """Show the running agent's state, votes, counters and recent events."""
    def show(path: Path) -> int:
        if getattr(args, "json", False):  # as the agent sent it, whatever its schema
            print(json.dumps(request(path, {"cmd": "status"}), indent=2))
        else:
            from rich.console import Console  # noqa: PLC0415 - rich: see the module docstring

            Console().print(render(fetch_status(path)[1]))
        return EXIT_OK

    return ask_agent("status", args.state_dir, show)
