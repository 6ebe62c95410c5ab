"""``twinguard status`` and ``twinguard ack``: ask the running agent over its status socket.

The socket is ``STATE_DIR/twinguard.sock`` (``--state-dir``, default as ``twinguard run``:
``$STATE_DIRECTORY`` or ``/var/lib/twinguard``); the protocol is in :mod:`agent.status`,
the snapshot model in :mod:`agent.statusmodel`.

Exit codes: ``status`` 0 when the agent answered; ``ack`` 0 when the ack was accepted,
1 when the agent refused it (the reason is printed). Both: 3 when the agent is not running
(no socket, or nothing listens on it); 1 for no access (not the agent's user or group), a
timeout or a reply that makes no sense.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.io.status_socket import socket_path
from agent.model.errors import AgentNotRunning, ProtocolError
from agent.model.status import StatusSnapshot, snapshot_from_dict

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3
CLIENT_TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 4 << 20

STATE_STYLE = {"normal": "bold green", "degraded": "bold yellow", "starting": "bold yellow",
               "recovering": "bold red", "failsafe": "bold white on red"}
QUALITY_STYLE = {"good": "green", "degraded": "yellow", "bad": "bold red"}
LINK_STYLE = {"alive": "green", "late": "yellow", "lost": "bold red"}


def state_dir_from(args: argparse.Namespace) -> Path:
    from agent.runcmd import DEFAULT_STATE_DIR  # noqa: PLC0415 - one default for all commands

    given: Path | None = args.state_dir
    return given or Path(os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR)


# --- the client ------------------------------------------------------------------------------

def request(path: Path, payload: Mapping[str, Any],
            timeout_s: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the agent's reply object.

    Raises :class:`AgentNotRunning`, ``PermissionError`` (no access to the socket or its
    directory), ``TimeoutError``, or ``ProtocolError`` (the agent answered with an error,
    or with something that is not one JSON object).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            why = "no socket" if isinstance(exc, FileNotFoundError) else "nothing listens"
            raise AgentNotRunning(f"the agent is not running ({why} at {path})") from exc
        # the agent may answer without reading (busy): its reply is waiting below
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps(dict(payload)).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes")
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ProtocolError(f"reply is not JSON: {exc}") from exc
    if not isinstance(reply, dict):
        raise ProtocolError("reply is not a JSON object")
    if "error" in reply:
        raise ProtocolError(f"the agent says: {reply['error']}")
    return reply


def fetch_status(path: Path) -> tuple[dict[str, Any], StatusSnapshot]:
    """The raw reply and the parsed snapshot; raises as :func:`request`."""
    raw = request(path, {"cmd": "status"})
    return raw, snapshot_from_dict(raw)


def send_ack(path: Path, source: str = "console") -> tuple[bool, str]:
    """``(accepted, reason)``; raises as :func:`request`."""
    reply = request(path, {"cmd": "ack", "source": source})
    accepted, reason = reply.get("accepted"), reply.get("reason")
    if not isinstance(accepted, bool) or not isinstance(reason, str):
        raise ProtocolError("ack reply needs 'accepted' (bool) and 'reason' (str)")
    return accepted, reason


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
    return Text(value.upper(), style=styles.get(value, ""))


def _header(s: StatusSnapshot) -> Panel:
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
    link = _styled(s.twin.state, LINK_STYLE)
    conn = {None: "no twin configured", True: "connected", False: "disconnected"}
    link.append(f"  {conn[s.twin.connected]}, {s.twin.cause}; last heartbeat "
                f"{_dur(s.twin.last_seen_age_s)}{'' if s.twin.last_seen_age_s is None else ' ago'}"
                f", epoch {_num(s.twin.epoch)}")
    grid.add_row("twin", link)
    p = s.plc
    grid.add_row("PLC", f"{'connected' if p.connected else 'DISCONNECTED'}, "
                        f"{'answering' if p.reachable else 'NOT answering'}, comm watchdog "
                        f"{'verified' if p.watchdog_ok else 'NOT verified'}")
    grid.add_row("trips", "; ".join(f"{t.name} ({t.group}): {t.cause}" for t in s.trips)
                 or "none")
    grid.add_row("outputs", ", ".join(f"{o.name}={_num(o.value)}" for o in s.outputs)
                 or "none")
    grid.add_row("config", f"version {s.config_version}, profile {s.profile}")
    grid.add_row("agent", f"twinguard {s.version}, pid {s.pid}, up {_dur(s.uptime_s)}, "
                          f"as of {_when(s.wall)}")
    return Panel(grid, title="twinguard status", border_style=STATE_STYLE.get(s.state, ""))


def _votes(s: StatusSnapshot) -> Table:
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
    table = Table(title="counters", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("part")
    table.add_column("counters")
    t, p, lp = s.twin, s.plc, s.loop
    table.add_row("twin heartbeats", f"accepted {t.accepted}, duplicates {t.duplicates}, "
                  f"out of order {t.out_of_order}, stale epoch {t.stale_epoch}, "
                  f"unhealthy {t.unhealthy}")
    rc = s.recommendation_counts
    table.add_row("twin recommendations", f"accepted {rc.accepted}, rejected {rc.rejected}, "
                  f"expired {rc.expired}")
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
    k = s.socket
    table.add_row("status socket", f"connections {k.connections}, status {k.status_requests}, "
                  f"acks {k.acks}, bad requests {k.bad_requests}, busy {k.busy}, "
                  f"errors {k.errors}")
    return table


def _events(s: StatusSnapshot) -> Table:
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
    return Group(_header(snap), _votes(snap), _recommendations(snap), _counters(snap),
                 _events(snap))


# --- the commands ----------------------------------------------------------------------------

def _run(command: str, args: argparse.Namespace, what: Any) -> int:
    """Call ``what(path)`` and turn the client's errors into a message and an exit code."""
    path = socket_path(state_dir_from(args))
    try:
        result: int = what(path)
    except AgentNotRunning as exc:
        print(f"twinguard {command}: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"twinguard {command}: permission denied on {path}: run as the agent's user "
              "or a member of its group", file=sys.stderr)
        return EXIT_FAILED
    except (ProtocolError, OSError) as exc:  # TimeoutError is an OSError
        print(f"twinguard {command}: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return result


def status_main(args: argparse.Namespace) -> int:
    """Show the running agent's state, votes, recommendations, counters and recent events."""
    def show(path: Path) -> int:
        if getattr(args, "json", False):  # as the agent sent it, whatever its schema
            print(json.dumps(request(path, {"cmd": "status"}), indent=2))
        else:
            Console().print(render(fetch_status(path)[1]))
        return EXIT_OK

    return _run("status", args, show)


def ack_main(args: argparse.Namespace) -> int:
    """Acknowledge a latched FAILSAFE (the console equivalent of the reset button)."""
    def ack(path: Path) -> int:
        accepted, reason = send_ack(path, "console")
        print(f"{'accepted' if accepted else 'refused'}: {reason}")
        return EXIT_OK if accepted else EXIT_FAILED

    return _run("ack", args, ack)
