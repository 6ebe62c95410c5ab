"""The local status socket, ``twinguard status`` and ``twinguard ack``, over a real Unix socket.

The server runs on the test's asyncio loop; clients are the real blocking client
(``agent.io.status_client``, in a thread), the commands themselves, or raw sockets; the
access test forks children that drop to an unprivileged uid/gid before they connect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import io
import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from agent.cli import main as cli
from agent.cli.status import render
from agent.config.profile.load import load_profile
from agent.core.controller import Controller
from agent.core.minimise import Minimiser
from agent.io.status_client import fetch_status, socket_path
from agent.io.status_socket import StatusServer
from agent.model.errors import ProtocolError, StatusSocketError, StatusSocketInUse
from agent.model.messages import Heartbeat, Origin, Recommend
from agent.model.mode import Mode
from agent.model.policy import Action, DeviceName, Rule, TelemetryPolicy
from agent.model.profile import Recovery, RecoveryPolicy
from agent.model.readings import Quality, Reading
from agent.model.spool import Backlog
from agent.model.status import (
    SCHEMA,
    ClientStats,
    EventEntry,
    ExcludedChannel,
    LoopStatus,
    OutputStatus,
    PlcStatus,
    RecommendationCounts,
    RecommendationStatus,
    SocketStatus,
    SpoolStatus,
    StatusSnapshot,
    TripStatus,
    TwinStatus,
    VoteStatus,
    WatchdogStatus,
    snapshot_from_dict,
)
from agent.runtime.snapshot import EventRing, build_snapshot, policy_status
from firmware_bridge.results import WatchdogStats

NOBODY = 65534


# --- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short path (sockets have a 108-byte limit) whose parent anyone may traverse, so
    only the state directory's and the socket's own permissions decide who gets in."""
    base = Path(tempfile.mkdtemp(prefix="tgst-", dir="/tmp"))
    base.chmod(0o711)
    try:
        yield base / "state"
    finally:
        shutil.rmtree(base)


def sample() -> StatusSnapshot:
    """Every field set, every number distinct, so a field missing from a view shows."""
    return StatusSnapshot(
        schema=SCHEMA, version="9.8.7", pid=4242, wall=1_700_000_000.0, uptime_s=7384.0,
        profile="/etc/twinguard/tank.toml", state="recovering", mode="active",
        cause="twin LOST: heartbeat silence 0.5 s", waiting_for_ack=True, holdoff_left_s=2.5,
        twin=TwinStatus("lost", "heartbeat silence", False, 31, 12.5, 1001, 1002, 1003, 1004,
                        1005),
        votes=(
            VoteStatus("temperature", 71.25, "degraded", ("temp_a", "temp_b"),
                       (ExcludedChannel("temp_c", "out of range", "312.5 > 250"),), "1 of 3 out",
                       0.25),
            VoteStatus("pressure", None, "bad", (),
                       (ExcludedChannel("pressure_a", "stale", "age 3 s"),
                        ExcludedChannel("pressure_b", "comm failure", "")), "no healthy channel",
                       0.75),
        ),
        trips=(TripStatus("overpressure", "pressure", "group pressure BAD"),),
        outputs=(OutputStatus("heater_power", 33.5), OutputStatus("cooling_valve", None)),
        recommendations=(
            RecommendationStatus("rec-heat-81", "heater_power", 41.75, 33.25, 8.5, 30.0, 17.5),
            RecommendationStatus("rec-cool-82", "cooling_valve", 62.5, None, None, 45.0, 44.5),
        ),
        recommendation_counts=RecommendationCounts(8001, 8002, 8003),
        plc=PlcStatus(True, 2001, 2002, 2003, 2004, 2005, 2006, 2007, (17, 19),
                      reachable=True, watchdog_ok=False),
        loop=LoopStatus(3001, 3002, 3003, 0.0375, 3004, 3005, 3006),
        watchdog=WatchdogStatus("native", True, False, 4001, 4002, 4003, 4004, 1.25, 0.5),
        spool=SpoolStatus(5001, 5002, 5003, 5004),
        config_version=6001,
        events=(EventEntry(1_700_000_100.0, "transition", "NORMAL -> FAILSAFE on TWIN_LOST"),
                EventEntry(1_700_000_200.0, "ack", "refused from console: plant not healthy")),
    )


async def accept_all(source: str, who: str) -> tuple[bool, str]:
    return True, f"acknowledged from {source} by {who}"


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def raw_exchange(path: Path, data: bytes, shut: bool = True) -> dict[str, Any]:
    """Send raw bytes, read the reply object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    result: dict[str, Any] = json.loads(reply)
    return result


def serve(state_dir: Path, body: Callable[[StatusServer], Awaitable[None]],
          snapshot: Callable[[], StatusSnapshot] = sample,
          ack: Callable[[str, str], Awaitable[tuple[bool, str]]] = accept_all,
          **kw: Any) -> None:
    async def main() -> None:
        async with StatusServer(socket_path(state_dir), snapshot, ack, **kw) as server:
            await body(server)

    asyncio.run(main())


def rendered(snap: StatusSnapshot) -> str:
    out = io.StringIO()
    Console(file=out, width=240, color_system=None).print(render(snap))
    return out.getvalue()


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


# --- the snapshot model ----------------------------------------------------------------------

def test_snapshot_survives_json_both_ways() -> None:
    snap = sample()
    assert snapshot_from_dict(json.loads(snap.to_json())) == snap


def test_non_finite_values_travel_as_null() -> None:
    vote = dataclasses.replace(sample().votes[0], value=math.nan)
    snap = dataclasses.replace(sample(), votes=(vote,), holdoff_left_s=math.inf)
    back = snapshot_from_dict(json.loads(snap.to_json()))
    assert back.votes[0].value is None
    assert back.holdoff_left_s is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["twin"].pop("state"), "status.twin.state: missing"),
    (lambda d: d["votes"][1]["excluded"][0].update(channel=7),
     "status.votes[1].excluded[0].channel: expected str"),
    (lambda d: d.update(pid=True), "status.pid: expected int"),
    (lambda d: d.update(votes={}), "status.votes: expected a list"),
    (lambda d: d.update(schema=SCHEMA + 1), "schema"),
    (lambda d: d.update(schema=1), "schema 1, this client reads schema 2"),
    (lambda d: d["recommendations"][0].update(actual="33"),
     "status.recommendations[0].actual: expected float"),
    (lambda d: d["recommendations"][1].pop("valid_left_s"),
     "status.recommendations[1].valid_left_s: missing"),
    (lambda d: d.pop("recommendation_counts"), "status.recommendation_counts: missing"),
])
def test_a_malformed_snapshot_names_the_bad_key(change: Callable[[dict[str, Any]], Any],
                                                message: str) -> None:
    data = sample().to_dict()
    change(data)
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        snapshot_from_dict(data)


def test_event_ring_keeps_the_last_50() -> None:
    ring = EventRing()
    for i in range(60):
        ring.add(1000.0 + i, "event", f"number {i}")
    entries = ring.entries()
    assert len(entries) == 50
    assert entries[0].text == "number 10"
    assert entries[-1] == EventEntry(1059.0, "event", "number 59")


def good_readings(now: float, temp_c: float = 50.4, hot: float | None = None
                  ) -> dict[str, Reading]:
    values = {"temp_a": 50.0, "temp_b": 50.2, "temp_c": temp_c,
              "pressure_a": 2.0, "pressure_b": 2.1}
    if hot is not None:
        values.update(temp_a=hot, temp_b=hot, temp_c=hot)
    return {k: Reading(k, None, v, Quality.GOOD, now) for k, v in values.items()}


def manual_controller() -> tuple[Controller, EventRing, list[float]]:
    """A real controller (sim-tank, manual recovery) brought to RECOVERING, waiting for an
    ack: a trip at start (all temperatures at 100 degC: FAILSAFE, the safe set confirmed),
    then twin ALIVE (3 heartbeats), PLC answering, the temperatures back (3 s later: within
    the channels' rate limit) with temp_c out of range (excluded). A start under the manual
    policy goes NORMAL by itself (issue 12): only a hazard latches."""
    profile = dataclasses.replace(load_profile("sim-tank"),
                                  recovery=Recovery(RecoveryPolicy.MANUAL, 3.0))
    ctl = Controller(profile)
    ring = EventRing()
    clock = [97.0]
    trip = ctl.tick(good_readings(clock[0], hot=100.0), clock[0], plc_reachable=True,
                    plc_watchdog_ok=True)
    ring.decision(trip, 1_700_000_000.0 + clock[0])
    assert ctl.machine.state.value == "failsafe"
    ctl.written(trip.writes)
    clock[0] = 100.0
    for seq in range(3):
        clock[0] += 0.1
        ring.decision(ctl.on_heartbeat(Heartbeat(epoch=7, seq=seq, healthy=True), clock[0]),
                      1_700_000_000.0 + clock[0])
    ring.decision(ctl.tick(good_readings(clock[0], temp_c=300.0), clock[0],
                           plc_reachable=True, plc_watchdog_ok=True), 1_700_000_000.0 + clock[0])
    return ctl, ring, clock


def snapshot_of(ctl: Controller, ring: EventRing, now: float) -> StatusSnapshot:
    stats = LoopStatus(ticks=12, overruns=1, faults=0, worst_tick_s=0.02, safe_writes=0,
                       write_failures=0, io_budget_overruns=0)
    watchdog = WatchdogStats(armed=True, fired=False, kicks=12, fires=0, feeds=3,
                             feed_errors=0, worst_lateness_ns=1_500_000, last_lateness_ns=0,
                             last_fire_results=None)
    plc = ClientStats(connected=True, requests=40, errors=1, timeouts=1, exception_replies=0,
                      reconnects=0, disconnects=0, skipped=0, backed_off_units=())
    return build_snapshot(
        ctl, now=now, wall=1_700_000_000.0 + now, started=100.0, plc=plc, loop=stats,
        watchdog=watchdog, watchdog_kind="native", backlog=Backlog(4, 10, 13, 512),
        config_version=3, events=ring, twin_connected=True)


def test_build_snapshot_from_a_real_controller() -> None:
    ctl, ring, clock = manual_controller()
    snap = snapshot_of(ctl, ring, clock[0] + 0.05)

    assert (snap.state, snap.mode, snap.waiting_for_ack) == ("recovering", "shadow", True)
    assert "plant degraded" in snap.cause  # how it got to RECOVERING (temp_c out)
    assert "waiting for an ack" in rendered(snap)
    temperature = next(v for v in snap.votes if v.group == "temperature")
    assert temperature.used == ("temp_a", "temp_b")
    assert [(e.channel, e.reason) for e in temperature.excluded] == [("temp_c", "out of range")]
    assert temperature.age_s == pytest.approx(0.05)
    assert (snap.twin.state, snap.twin.epoch, snap.twin.accepted) == ("alive", 7, 3)
    assert snap.twin.last_seen_age_s == pytest.approx(0.05)
    assert snap.outputs == (OutputStatus("heater_power", 0.0),
                            OutputStatus("cooling_valve", 100.0),
                            OutputStatus("plc_remote", 1.0))  # the flag with the safe set
    assert snap.plc.requests == 40 and snap.plc.reachable and snap.plc.watchdog_ok
    assert snap.loop.ticks == 12 and snap.loop.worst_tick_s == 0.02
    assert snap.watchdog is not None and snap.watchdog.worst_lateness_ms == 1.5
    assert snap.spool == SpoolStatus(4, 10, 13, 512)
    assert snap.uptime_s == pytest.approx(clock[0] + 0.05 - 100.0)
    kinds = [e.kind for e in snap.events]
    assert "link" in kinds and "transition" in kinds
    assert any("STARTING -> FAILSAFE" in e.text for e in snap.events)
    assert any("FAILSAFE -> RECOVERING" in e.text for e in snap.events)
    assert snap.recommendations == ()
    assert snap.recommendation_counts == RecommendationCounts(0, 0, 0)
    assert snapshot_from_dict(json.loads(snap.to_json())) == snap


def test_build_snapshot_reports_live_recommendations_and_their_shadow() -> None:
    """Shadow mode, a real controller: what would have been written, against what the PLC
    held at the last comparison of that very recommendation, with the validity left."""
    ctl, ring, clock = manual_controller()
    book, t0 = ctl.recommendations, clock[0]
    assert ctl.machine.mode is Mode.SHADOW
    assert snapshot_of(ctl, ring, t0).recommendations == ()
    origin = Origin(1, 7)  # the twin link session they arrive on (epoch 7, as the heartbeats)
    book.session_up(origin)
    assert book.offer(Recommend("cool-1", "cooling_valve", 60.0, 10.0), t0, origin).accepted
    assert book.offer(Recommend("heat-1", "heater_power", 40.0, 30.0), t0, origin).accepted
    assert not book.offer(Recommend("heat-x", "heater_power", 140.0, 30.0), t0,
                          origin).accepted
    book.shadow({"heater_power": 35.0, "cooling_valve": None}, t0 + 0.5)

    snap = snapshot_of(ctl, ring, t0 + 1.0)
    assert snap.recommendations == (  # in the profile's output order, not arrival order
        RecommendationStatus("heat-1", "heater_power", 40.0, 35.0, 5.0, 30.0,
                             pytest.approx(29.0)),
        RecommendationStatus("cool-1", "cooling_valve", 60.0, None, None, 10.0,
                             pytest.approx(9.0)),
    )
    assert snap.recommendation_counts == RecommendationCounts(2, 1, 0)
    assert snapshot_from_dict(json.loads(snap.to_json())) == snap

    # a replacement not compared yet shows no comparison (the old one's is not its own)
    assert book.offer(Recommend("heat-2", "heater_power", 45.0, 20.0), t0 + 2.0,
                      origin).accepted
    heat = snapshot_of(ctl, ring, t0 + 3.0).recommendations[0]
    assert (heat.id, heat.value, heat.actual, heat.divergence) == ("heat-2", 45.0, None, None)
    assert heat.valid_left_s == pytest.approx(19.0)
    book.shadow({"heater_power": 47.5, "cooling_valve": 58.0}, t0 + 3.5)
    snap = snapshot_of(ctl, ring, t0 + 4.0)
    assert [(r.id, r.actual, r.divergence) for r in snap.recommendations] == [
        ("heat-2", 47.5, -2.5), ("cool-1", 58.0, 2.0)]

    # validity over (not dropped yet by a decision): left out; active mode: no comparison
    assert [r.id for r in snapshot_of(ctl, ring, t0 + 10.0).recommendations] == ["heat-2"]
    # a mode change drops the live ones (PROTOCOL.md §7.1.1); new ones show no comparison
    ctl.set_mode(Mode.ACTIVE)
    assert snapshot_of(ctl, ring, t0 + 4.0).recommendations == ()
    assert book.offer(Recommend("heat-3", "heater_power", 45.0, 20.0), t0 + 4.0,
                      origin).accepted
    book.shadow({"heater_power": 47.5, "cooling_valve": 58.0}, t0 + 4.5)  # (not in active)
    snap = snapshot_of(ctl, ring, t0 + 5.0)
    assert [(r.id, r.actual, r.divergence) for r in snap.recommendations] == [
        ("heat-3", None, None)]
    assert "heat-3" in rendered(snap)


# --- the server over a real socket ------------------------------------------------------------

@pytest.mark.timeout(10)
def test_status_over_the_socket(state_dir: Path) -> None:
    path = socket_path(state_dir)

    async def body(server: StatusServer) -> None:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o750
        assert os.listdir(state_dir) == ["twinguard.sock"]  # no temporary left behind
        raw, snap = await in_thread(fetch_status, path)
        assert snap == dataclasses.replace(sample(), socket=SocketStatus(1, 1))
        assert raw == snap.to_dict()
        assert server.stats == SocketStatus(connections=1, status_requests=1)

    serve(state_dir, body)
    assert not path.exists()  # removed on close


@pytest.mark.timeout(10)
def test_a_wide_state_dir_is_tightened(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o777)
    state_dir.chmod(0o777)

    async def body(server: StatusServer) -> None:
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o750

    serve(state_dir, body)


@pytest.mark.timeout(10)
def test_ack_reaches_the_controller_with_the_peer_credentials(
        state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Wired as the runtime will: accepted in RECOVERING (-> NORMAL), then refused."""
    ctl, ring, clock = manual_controller()
    seen: list[str] = []

    async def ack(source: str, who: str) -> tuple[bool, str]:
        seen.append(who)
        decision, refused = ctl.ack(clock[0], source)
        ring.decision(decision, 1_700_000_000.0 + clock[0])
        return refused is None, refused or "acknowledged: " + ctl.machine.cause

    async def body(server: StatusServer) -> None:
        args = ["ack", "--state-dir", str(state_dir)]
        assert await in_thread(cli.main, args) == 0
        assert ctl.machine.state.value == "normal"
        assert capsys.readouterr().out.startswith("accepted: acknowledged: ack from console")
        assert await in_thread(cli.main, args) == 1
        assert capsys.readouterr().out == (
            "refused: nothing to acknowledge in NORMAL; twin authority is LOCAL: nothing to "
            "acknowledge\n")
        assert server.stats.acks == 2

    serve(state_dir, body, snapshot=lambda: snapshot_of(ctl, ring, clock[0]), ack=ack)
    assert seen[0] == seen[1]
    assert f"pid={os.getpid()} uid={os.getuid()}" in seen[0]
    assert f"gid={os.getgid()}" in seen[0]


BAD_REQUESTS = [
    (b"not json\n", "not UTF-8 JSON"),
    (b"\xff\xfe{}\n", "not UTF-8 JSON"),
    (b"[1, 2]\n", "JSON object"),
    (b"\n", "empty request"),
    (b'{"cmd": "reboot"}\n', "unknown cmd 'reboot'"),
    (b'{"cmd": 5}\n', "unknown cmd 5"),
    (b'{"source": "console"}\n', "unknown cmd None"),
    (b'{"cmd": "status", "verbose": true}\n', "unknown key.*verbose"),
    (b'{"cmd": "ack", "source": "button"}\n', "not the client's to choose"),
    (b'{"cmd": "ack", "source": "Console; rm -rf /"}\n', "not the client's to choose"),
    (b'{"cmd": "ack", "source": 5}\n', "not the client's to choose"),
    (b'{"cmd": "status", "pad": "' + b"x" * 2000 + b'"}\n', "longer than 1024 bytes"),
    (b"[" * 5000, "longer than 1024 bytes"),
    (b"[" * 500 + b"]" * 500 + b"\n", "JSON object"),
]


@pytest.mark.timeout(20)
def test_bad_requests_are_answered_counted_and_survived(state_dir: Path) -> None:
    path = socket_path(state_dir)
    acks: list[str] = []

    async def ack(source: str, who: str) -> tuple[bool, str]:
        acks.append(source)
        return True, "ok"

    async def body(server: StatusServer) -> None:
        for data, message in BAD_REQUESTS:
            reply = await in_thread(raw_exchange, path, data)
            assert list(reply) == ["error"], data[:40]
            assert re.search(message, reply["error"]), (data[:40], reply)
        silent = await in_thread(raw_exchange, path, b"", False)  # connects, says nothing
        assert "no request within" in silent["error"]
        reply = await in_thread(raw_exchange, path, b'{"cmd": "status"}')  # no newline: ok
        assert reply["state"] == "recovering"
        assert server.stats.bad_requests == len(BAD_REQUESTS) + 1
        assert server.stats.status_requests == 1
        assert acks == []  # nothing bad ever reached the ack

    serve(state_dir, body, ack=ack, request_timeout_s=0.3)


@pytest.mark.timeout(10)
def test_a_bug_in_the_provider_is_an_error_reply_not_a_crash(
        state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = [0]

    def flaky() -> StatusSnapshot:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("provider bug")
        return sample()

    async def body(server: StatusServer) -> None:
        args = ["status", "--state-dir", str(state_dir)]
        assert await in_thread(cli.main, args) == 1
        assert "internal error in the agent" in capsys.readouterr().err
        assert await in_thread(cli.main, [*args, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["pid"] == 4242
        assert server.stats.errors == 1

    serve(state_dir, body, snapshot=flaky)


@pytest.mark.timeout(10)
def test_too_many_clients_are_told_busy(state_dir: Path) -> None:
    path = socket_path(state_dir)

    async def body(server: StatusServer) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
            holder.connect(str(path))  # holds the only slot, says nothing yet
            for _ in range(500):
                if server.stats.connections == 1:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(ProtocolError, match="busy"):
                await in_thread(fetch_status, path)
            holder.sendall(b'{"cmd": "status"}\n')
            reply = json.loads(await in_thread(holder.recv, 65536))
            assert reply["state"] == "recovering"
        assert server.stats.busy == 1

    serve(state_dir, body, max_clients=1)


@pytest.mark.timeout(10)
def test_a_live_agent_is_never_displaced_and_a_stale_socket_is(state_dir: Path) -> None:
    path = socket_path(state_dir)
    state_dir.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # a dead agent's socket: nobody listens

    async def body(server: StatusServer) -> None:
        second = StatusServer(path, sample, accept_all)
        with pytest.raises(StatusSocketInUse, match="another agent"):
            await second.start()
        assert (await in_thread(fetch_status, path))[1].pid == 4242

    serve(state_dir, body)


@pytest.mark.timeout(10)
def test_a_file_in_the_way_is_not_touched(state_dir: Path) -> None:
    state_dir.mkdir()
    socket_path(state_dir).write_text("precious\n")

    async def main() -> None:
        with pytest.raises(StatusSocketError, match="not a socket"):
            await StatusServer(socket_path(state_dir), sample, accept_all).start()

    asyncio.run(main())
    assert socket_path(state_dir).read_text() == "precious\n"


CLIENT = """
import json, socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(5)
    sock.connect(sys.argv[1])
    sock.sendall(sys.argv[2].encode() + b"\\n")
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
print(reply.decode().strip())
"""


def client_process(path: Path, request: str) -> tuple[int, dict[str, Any]]:
    """Another process sends ``request``: (its pid, the agent's reply)."""
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(path), request],
                             stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 0
    reply: dict[str, Any] = json.loads(out)
    return child.pid, reply


@pytest.mark.timeout(20)
def test_the_ack_source_is_the_transport_not_the_client(state_dir: Path) -> None:
    """A client claiming to be the reset button is refused; a plain ack is "console", with
    the sending process's pid and uid from SO_PEERCRED."""
    acks: list[tuple[str, str]] = []

    async def ack(source: str, who: str) -> tuple[bool, str]:
        acks.append((source, who))
        return True, "ok"

    async def body(server: StatusServer) -> None:
        path = socket_path(state_dir)
        _, reply = await in_thread(client_process, path, '{"cmd": "ack", "source": "button"}')
        assert "not the client's to choose" in reply["error"] and acks == []
        pid, reply = await in_thread(client_process, path, '{"cmd": "ack"}')
        assert reply == {"accepted": True, "reason": "ok"}
        older, reply = await in_thread(client_process, path,
                                       '{"cmd": "ack", "source": "console"}')
        assert reply["accepted"] is True
        assert [source for source, _ in acks] == ["console", "console"]
        assert acks[0][1].startswith(f"pid={pid} uid={os.getuid()}")
        assert acks[1][1].startswith(f"pid={older} ")
        assert server.stats.acks == 2 and server.stats.bad_requests == 1

    serve(state_dir, body, ack=ack)


def test_a_socket_path_too_long_is_a_clear_error(state_dir: Path) -> None:
    deep = state_dir / ("d" * (120 - len(str(state_dir))))

    async def main() -> None:
        with pytest.raises(StatusSocketError, match="too long"):
            await StatusServer(socket_path(deep), sample, accept_all).start()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_no_agent_means_exit_3(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--state-dir", str(state_dir)]) == 3
    assert "not running (no socket" in capsys.readouterr().err
    state_dir.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path(state_dir)))
    assert cli.main(["ack", "--state-dir", str(state_dir)]) == 3
    assert "not running (nothing listens" in capsys.readouterr().err


# --- access control --------------------------------------------------------------------------

def as_user(uid: int, gid: int, state_dir: Path, command: str) -> int:
    """Fork a child that drops to ``uid``/``gid`` (no supplementary groups), then either
    connects (``command`` "connect": exit 0, or the errno) or runs
    ``twinguard COMMAND --state-dir D`` (its exit code)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if command == "connect":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    try:
                        sock.connect(str(socket_path(state_dir)))
                        code = 0
                    except OSError as exc:
                        code = exc.errno or 98
            else:
                code = cli.main([command, "--state-dir", str(state_dir)])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.timeout(20)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to fork a child as another user")
def test_a_user_without_access_is_refused(state_dir: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    async def body(server: StatusServer) -> None:
        # nobody:nogroup: the 0750 state directory stops the connect (EACCES) ...
        assert await in_thread(as_user, NOBODY, NOBODY, state_dir, "connect") == errno.EACCES
        # ... and `twinguard ack` says so plainly
        assert await in_thread(as_user, NOBODY, NOBODY, state_dir, "ack") == 1
        assert "permission denied on" in capfd.readouterr().err
        # even with the directory opened up, the socket's own 0660 stops it
        os.chmod(state_dir, 0o755)
        assert await in_thread(as_user, NOBODY, NOBODY, state_dir, "connect") == errno.EACCES
        os.chmod(state_dir, 0o750)
        assert server.stats.connections == 0 and server.stats.acks == 0
        # a member of the agent's group is let in: owner/group is the rule, not root only
        assert await in_thread(as_user, NOBODY, os.getgid(), state_dir, "status") == 0
        assert server.stats.status_requests == 1

    serve(state_dir, body)


# --- the readable view -----------------------------------------------------------------------

def test_every_field_is_rendered() -> None:
    snap = dataclasses.replace(sample(), socket=SocketStatus(7001, 7002, 7003, 7004, 7005,
                                                             7006))
    text = rendered(snap)
    for leaf in leaves(snap.to_dict()):
        if isinstance(leaf, str):
            assert leaf.upper() in text or leaf in text, leaf
        elif isinstance(leaf, int) and not isinstance(leaf, bool) and leaf != snap.wall:
            assert str(leaf) in text, leaf
    for piece in ("71.25", "33.5", "2.5 s", "12.5 s ago", "2 h 3 min", "37.5 ms", "1.250 ms",
                  "0.500 ms", "0.2 s", "0.8 s",
                  "2023-11-14", "waiting for an ack", "disconnected", "answering",
                  "NOT verified", "armed", "not fired", "17, 19", "seq 5002..5003",
                  "accepted 8001, rejected 8002, expired 8003"):
        assert piece in text, piece


def test_recommendations_are_rendered_as_a_table() -> None:
    """One row per live recommendation, in the columns the operator reads: output,
    recommended, PLC holds, divergence, valid for, id (a dash where nothing is known)."""
    lines = [" ".join(line.split()) for line in rendered(sample()).splitlines()]
    lines = [line for line in lines if line]
    title = lines.index("recommendations (active: written within limits)")
    assert lines[title + 1] == "output recommended PLC holds divergence valid for id"
    assert "heater_power 41.75 33.25 +8.5 17.5 s (of 30.0 s) rec-heat-81" in lines
    assert "cooling_valve 62.5 \N{EM DASH} \N{EM DASH} 44.5 s (of 45.0 s) rec-cool-82" in lines
    shadow = rendered(dataclasses.replace(sample(), mode="shadow"))
    assert "recommendations (shadow: would have written)" in shadow


def test_rendering_the_quiet_cases() -> None:
    snap = dataclasses.replace(
        sample(), waiting_for_ack=False, holdoff_left_s=None, trips=(), watchdog=None,
        spool=None, events=(), recommendations=(),
        twin=dataclasses.replace(sample().twin, connected=None, last_seen_age_s=None,
                                 epoch=None))
    text = rendered(snap)
    assert "waiting for an ack" not in text and "auto recovery" not in text
    for piece in ("trips    none", "watchdog       not armed", "no spool (no twin configured)",
                  "no twin configured", "last heartbeat never", "recent events (0)"):
        assert " ".join(piece.split()) in " ".join(text.split()), piece
    assert re.search(r"recommendations \(active: written within limits\)\s+output .* id\s+─+\s+"
                     r"none\s+counters", text), text


@pytest.mark.timeout(10)
def test_status_command_prints_the_view(state_dir: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")

    async def body(server: StatusServer) -> None:
        assert await in_thread(cli.main, ["status", "--state-dir", str(state_dir)]) == 0

    serve(state_dir, body)
    out = capsys.readouterr().out
    assert "RECOVERING" in out and "temp_c: out of range (312.5 > 250)" in out
    assert "NORMAL -> FAILSAFE on TWIN_LOST" in out


def test_the_telemetry_policy_in_force_is_in_the_status_and_its_json() -> None:
    policy = TelemetryPolicy({"temp_b": Rule(Action.DROP),
                              "pressure": Rule(Action.AGGREGATE, window_s=60.0),
                              "temp_a": Rule(Action.SEND)}, DeviceName.PSEUDONYM)
    status = policy_status(policy, Minimiser(policy, "p-0123"))
    assert status.id == policy.header()["id"] and status.sent_as == "p-0123"
    assert [(r.name, r.action, r.window_s) for r in status.rules] == [
        ("pressure", "aggregate", 60.0), ("temp_b", "drop", None)]
    assert policy_status(policy, None).sent_as == ""  # telemetry off
    snap = dataclasses.replace(sample(), telemetry_policy=status)
    assert snapshot_from_dict(json.loads(snap.to_json())) == snap
    assert snap.to_dict()["telemetry_policy"]["rules"][1] == {
        "name": "temp_b", "action": "drop", "window_s": None, "step": None}
    out = io.StringIO()
    Console(file=out, width=250).print(render(snap))
    assert (f"{status.id}: device pseudonym (as p-0123); pressure aggregate 60 s, temp_b drop"
            in out.getvalue())


def test_what_the_fleet_link_ignored_travels_and_is_rendered_by_reason() -> None:
    from agent.model.status import LinkStatus, RefusedCount

    link = LinkStatus(endpoint="broker-a:8883",
                      refused=(RefusedCount("replayed", 7102), RefusedCount("unsigned", 7101)))
    snap = dataclasses.replace(sample(), twin=dataclasses.replace(sample().twin, link=link))
    assert snapshot_from_dict(json.loads(snap.to_json())) == snap
    assert "ignored: replayed 7102, unsigned 7101" in rendered(snap)
