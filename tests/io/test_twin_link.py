"""The twin link against the simulated twin: real TLS, real sockets, generated certificates."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.io.pki import PkiPaths, Role, init_pki, issue_expired_cert
from agent.io.twin.link import TwinLink, TwinLinkSettings, make_client_context
from agent.model.messages import Bye, Heartbeat, Origin, Recommend, Status, TwinHello, TwinMessage
from sim.twin.harness import Recorder, settings_for, wait_until
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki"), device_id="dev-1")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    """A second, unrelated CA with its own device and twin certificates."""
    return init_pki(tmp_path_factory.mktemp("other"), device_id="dev-1")


@pytest.fixture(scope="module")
def expired(pki: PkiPaths, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("expired")
    issue_expired_cert(pki, d / "dev.crt", d / "dev.key", common_name="dev-1")
    return d / "dev.crt", d / "dev.key"


Scenario = Callable[[SimTwin, TwinLink, Recorder], Awaitable[None]]


def drive(
    twin: SimTwin, settings: Callable[[int], TwinLinkSettings], scenario: Scenario
) -> tuple[TwinLink, Recorder]:
    """Start the twin, run a link against it through ``scenario``, tear both down."""

    async def main() -> tuple[TwinLink, Recorder]:
        await twin.start()
        rec = Recorder()
        link = TwinLink(settings(twin.port), rec.on_message, rec.on_connection)
        task = asyncio.create_task(link.run())
        try:
            await scenario(twin, link, rec)
        finally:
            link.close()
            await asyncio.wait_for(task, 5)  # run() returns after close(), never raises
            await twin.stop()
        return link, rec

    return asyncio.run(main())


def test_connects_and_receives_heartbeats_in_order(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 5, what="5 heartbeats")
        assert link.connected
        assert await link.send(Status("NORMAL", "shadow", 1))
        await wait_until(lambda: len(twin.statuses) == 1, what="status at the twin")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    first, t0 = rec.messages[0]
    assert (
        isinstance(first, TwinHello) and first.epoch == twin.epoch and first.twin_id == "sim-twin"
    )
    hbs = rec.heartbeats()
    assert [h.seq for h in hbs] == sorted({h.seq for h in hbs})  # strictly increasing
    assert all(h.epoch == first.epoch and h.healthy for h in hbs)
    times = [t for _, t in rec.messages]
    assert times == sorted(times) and t0 > 0
    assert rec.connection[0][0] is True
    assert rec.connection[-1][:2] == (False, "closed")
    # the hello announces the heartbeat timing (the link's defaults: sim-tank's [timing])
    assert twin.agent_hellos[0][2:] == ("dev-1", "0.1.0", 500, 250)
    assert (twin.statuses[0].state, twin.statuses[0].mode, twin.statuses[0].seq) == (
        "NORMAL",
        "shadow",
        1,
    )
    c = link.counters
    assert (c.connects, c.sessions, c.malformed, c.failures) == (1, 1, 0, 0)
    assert c.frames_in == len(rec.messages) and c.frames_out == 2


def test_hello_announces_the_heartbeat_timing_it_was_given(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: rec.ups() == 1, what="first session")
        twin.restart()
        await wait_until(lambda: rec.ups() == 2, what="second session")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    drive(twin, lambda port: settings_for(pki, port, heartbeat_timeout_s=1.2,
                                          heartbeat_late_s=0.3005), scenario)
    # every connection's hello carries them (rounded to whole milliseconds)
    assert len(twin.agent_hellos) >= 2
    assert {h[4:] for h in twin.agent_hellos} == {(1200, 300)}
    assert twin.stats()["agent_timing"] == {"heartbeat_timeout_ms": 1200,
                                            "heartbeat_late_ms": 300}


def test_reconnects_after_twin_restart_with_higher_epoch(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 2)
        old = twin.epoch
        assert twin.restart() > old
        await wait_until(lambda: any(h.epoch > old for h in rec.heartbeats()), what="new epoch")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    hellos = [m for m, _ in rec.messages if isinstance(m, TwinHello)]
    assert len(hellos) == 2 and hellos[1].epoch > hellos[0].epoch
    new = [h for h in rec.heartbeats() if h.epoch == hellos[1].epoch]
    assert new[0].seq == 1
    assert rec.downs()[0] == "closed by twin"
    assert link.counters.sessions == 2 and link.counters.disconnects == 2


@pytest.mark.parametrize(
    "kind",
    [
        "zero_length",
        "bad_msgpack",
        "oversize",
        "not_map",
        "unknown_type",
        "wrong_types",
        "trailing",
        "bad_recommend",
    ],
)
def test_garbage_frame_closes_and_reconnects(pki: PkiPaths, kind: str) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 2)
        twin.garbage(kind)
        await wait_until(lambda: rec.ups() == 2 and len(rec.heartbeats()) >= 4, what="reconnect")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    assert link.counters.malformed == 1
    assert rec.downs()[0].startswith("protocol error")
    assert link.counters.connects == 2


def test_half_open_twin_detected_by_idle_timeout(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 2)
        assert twin.half_open() == 1
        await wait_until(lambda: rec.ups() == 2, what="reconnect after idle timeout")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, rec = drive(twin, lambda port: settings_for(pki, port, idle_timeout_s=0.3), scenario)
    assert rec.downs()[0].startswith("idle timeout")
    assert link.counters.idle_timeouts == 1


def test_bye_replay_and_unhealthy_are_passed_through(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 3)
        twin.replay(2)
        twin.set_healthy(False)
        await wait_until(lambda: not rec.heartbeats()[-1].healthy, what="unhealthy heartbeat")
        twin.bye("maintenance")
        await wait_until(lambda: rec.ups() == 2, what="reconnect after bye")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    msgs = [m for m, _ in rec.messages]
    assert isinstance(msgs[0], TwinHello)
    epoch0 = msgs[0].epoch
    first_epoch = [m.seq for m in msgs if isinstance(m, Heartbeat) and m.epoch == epoch0]
    assert first_epoch.count(1) == 2 and first_epoch.count(2) == 2  # seq 1, 2 replayed as-is
    assert first_epoch[first_epoch.index(1, 1) + 1] == 2
    byes = [m for m in msgs if isinstance(m, Bye)]
    hellos = [m for m in msgs if isinstance(m, TwinHello)]
    assert byes == [Bye(hellos[0].epoch, "maintenance")]
    assert hellos[1].epoch > hellos[0].epoch
    assert link.counters.malformed == 0  # replays are the heartbeat monitor's business


def refused(
    twin: SimTwin, settings: Callable[[int], TwinLinkSettings]
) -> tuple[TwinLink, Recorder]:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(
            lambda: (
                link.counters.failures + link.counters.disconnects >= 2 or twin.tls_failures >= 2
            ),
            what="two refused attempts",
        )

    link, rec = drive(twin, settings, scenario)
    assert rec.messages == [] and rec.connection == []
    assert link.counters.sessions == 0 and link.counters.last_error
    return link, rec


def test_client_cert_from_another_ca_refused_by_twin(pki: PkiPaths, other: PkiPaths) -> None:
    twin = SimTwin.from_pki(pki, rate_hz=100)
    refused(
        twin, lambda p: settings_for(pki, p, cert_file=other.device_cert, key_file=other.device_key)
    )
    assert twin.tls_failures >= 1 and twin.connections_total == 0


def test_expired_client_cert_refused_by_twin(pki: PkiPaths, expired: tuple[Path, Path]) -> None:
    twin = SimTwin.from_pki(pki, rate_hz=100)
    refused(twin, lambda p: settings_for(pki, p, cert_file=expired[0], key_file=expired[1]))
    assert twin.tls_failures >= 1 and twin.connections_total == 0


def test_twin_cert_from_another_ca_refused_by_agent(pki: PkiPaths, other: PkiPaths) -> None:
    twin = SimTwin(pki.ca_cert, other.twin_cert, other.twin_key, rate_hz=100)
    link, _ = refused(twin, lambda p: settings_for(pki, p))
    assert "CERTIFICATE_VERIFY_FAILED" in str(link.counters.last_error)
    assert link.counters.failures >= 1


def test_expired_twin_cert_refused_by_agent(pki: PkiPaths, tmp_path: Path) -> None:
    issue_expired_cert(pki, tmp_path / "t.crt", tmp_path / "t.key", role=Role.SERVER)
    twin = SimTwin(pki.ca_cert, tmp_path / "t.crt", tmp_path / "t.key", rate_hz=100)
    link, _ = refused(twin, lambda p: settings_for(pki, p))
    assert "expired" in str(link.counters.last_error)


def test_twin_name_mismatch_refused_by_agent(pki: PkiPaths) -> None:
    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, _ = refused(twin, lambda p: settings_for(pki, p, server_name="twin.example.com"))
    assert "Hostname mismatch" in str(link.counters.last_error) or "match" in str(
        link.counters.last_error
    )


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_twin_refused_by_agent(pki: PkiPaths) -> None:
    # the same twin completes a TLS 1.1 handshake with a permissive client (checked by hand)
    twin = SimTwin.from_pki(
        pki, rate_hz=100, min_tls=ssl.TLSVersion.TLSv1, max_tls=ssl.TLSVersion.TLSv1_1
    )
    link, _ = refused(twin, lambda p: settings_for(pki, p))
    assert link.counters.failures >= 1  # never got past the handshake


def test_client_context_is_pinned_and_modern(pki: PkiPaths) -> None:
    ctx = make_client_context(settings_for(pki, 1))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1  # only our CA, no system roots


def test_send_without_session_is_dropped_not_raised(pki: PkiPaths) -> None:
    async def main() -> tuple[bool, int]:
        link = TwinLink(settings_for(pki, 1), Recorder().on_message, Recorder().on_connection)
        return await link.send(Status("STARTING", "shadow", 0)), link.counters.dropped

    assert asyncio.run(main()) == (False, 1)


def test_no_twin_listening_backs_off_and_keeps_trying(pki: PkiPaths) -> None:
    async def main() -> TwinLink:
        import socket

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        link = TwinLink(settings_for(pki, port), Recorder().on_message, Recorder().on_connection)
        task = asyncio.create_task(link.run())
        await wait_until(lambda: link.counters.failures >= 3, what="3 failed attempts")
        link.close()
        await asyncio.wait_for(task, 5)
        return link

    link = asyncio.run(main())
    assert "ConnectionRefusedError" in str(link.counters.last_error)


def test_callback_errors_do_not_stop_the_link(pki: PkiPaths) -> None:
    calls: list[Any] = []

    def bad(msg: Any, t: float) -> None:
        calls.append(msg)
        raise RuntimeError("runtime bug")

    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        link._on_message = bad
        await wait_until(lambda: len(calls) >= 3)

    twin = SimTwin.from_pki(pki, rate_hz=100)
    link, _ = drive(twin, lambda port: settings_for(pki, port), scenario)
    assert link.counters.callback_errors >= 3 and link.counters.sessions == 1


def test_settings_refuse_nonsense(pki: PkiPaths) -> None:
    base = settings_for(pki, 1)
    with pytest.raises(ValueError, match="idle_timeout_s"):
        replace(base, idle_timeout_s=0)
    with pytest.raises(ValueError, match="backoff_max_s"):
        replace(base, backoff_max_s=0.001)
    with pytest.raises(ValueError, match="port"):
        replace(base, port=0)
    with pytest.raises(ValueError, match="heartbeat_late_s <= heartbeat_timeout_s"):
        replace(base, heartbeat_timeout_s=0.2, heartbeat_late_s=0.3)
    with pytest.raises(ValueError, match="1 ms <= heartbeat_late_s"):
        replace(base, heartbeat_late_s=0.0004)  # 0 ms in the hello: nothing a twin can use
    with pytest.raises(ValueError, match="heartbeat_timeout_s must be finite"):
        replace(base, heartbeat_timeout_s=float("inf"))
    with pytest.raises(ValueError, match="heartbeat_late_s must be finite"):
        replace(base, heartbeat_late_s=float("nan"))
    hello = replace(base, heartbeat_timeout_s=0.001, heartbeat_late_s=0.001).hello()
    assert (hello.heartbeat_timeout_ms, hello.heartbeat_late_ms) == (1, 1)
    with pytest.raises(FileNotFoundError):
        TwinLink(
            replace(base, cert_file=Path("/nonexistent.crt")),
            Recorder().on_message,
            Recorder().on_connection,
        )


def test_trickling_bytes_without_a_frame_do_not_keep_the_link_alive(pki: PkiPaths) -> None:
    from agent.protocol.twin.frames import encode
    from agent.protocol.twin.schema import to_wire
    from sim.twin.server import make_server_context

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode(to_wire(TwinHello(1, "slow", 9))) + b"\x00\x00\x10\x00")
        for _ in range(200):  # one byte of a 4 KiB body every 20 ms: never a whole frame
            await asyncio.sleep(0.02)
            writer.write(b"\x00")
            await writer.drain()

    async def main() -> tuple[TwinLink, Recorder]:
        ctx = make_server_context(pki.ca_cert, pki.twin_cert, pki.twin_key)
        server = await asyncio.start_server(trickle, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        rec = Recorder()
        link = TwinLink(
            settings_for(pki, port, idle_timeout_s=0.3), rec.on_message, rec.on_connection
        )
        task = asyncio.create_task(link.run())
        await wait_until(lambda: link.counters.idle_timeouts >= 1, what="idle timeout")
        link.close()
        await asyncio.wait_for(task, 5)
        server.close()
        return link, rec

    _link, rec = asyncio.run(main())
    assert [type(m) for m, _ in rec.messages][:1] == [TwinHello]
    assert rec.downs()[0].startswith("idle timeout")


def test_each_session_has_its_own_number_and_every_message_its_origin(pki: PkiPaths) -> None:
    """What recommendations are bound to (PROTOCOL.md §7.1.1): the UP session's number, unique
    in the process and never reused, and the epoch in force where the message was read."""
    origins: list[tuple[TwinMessage, Origin | None, Origin | None]] = []
    link_box: list[TwinLink] = []

    def on_message(msg: TwinMessage, t: float) -> None:
        origins.append((msg, link_box[0].delivering, link_box[0].session))

    async def main() -> TwinLink:
        twin = SimTwin.from_pki(pki, rate_hz=100)
        await twin.start()
        link = TwinLink(settings_for(pki, twin.port), on_message, lambda up, r, t: None)
        link_box.append(link)
        task = asyncio.create_task(link.run())
        try:
            await wait_until(lambda: sum(isinstance(m, Heartbeat) for m, _, _ in origins) >= 2)
            twin.recommend("heater_power", 10.0, 5.0)
            await wait_until(lambda: any(isinstance(m, Recommend) for m, _, _ in origins))
            twin.restart()
            await wait_until(lambda: sum(isinstance(m, TwinHello) for m, _, _ in origins) == 2
                             and isinstance(origins[-1][0], Heartbeat))
            twin.recommend("heater_power", 20.0, 5.0)
            await wait_until(lambda: sum(isinstance(m, Recommend) for m, _, _ in origins) == 2)
        finally:
            link.close()
            await asyncio.wait_for(task, 5)
            await twin.stop()
        assert link.session is None and link.delivering is None, "nothing outside a session"
        return link

    asyncio.run(main())
    hellos = [(m, d) for m, d, _ in origins if isinstance(m, TwinHello)]
    (h1, o1), (h2, o2) = hellos
    assert o1 is not None and o2 is not None and o2.session > o1.session
    assert (o1.epoch, o2.epoch) == (h1.epoch, h2.epoch)
    for _msg, delivering, session in origins:
        assert delivering == session, "every message of a session carries it"
        assert delivering in (o1, o2)
    recs = [d for m, d, _ in origins if isinstance(m, Recommend)]
    assert recs == [o1, o2]


@pytest.mark.parametrize("version", [1, 2])
def test_a_twin_of_either_protocol_version_is_served(pki: PkiPaths, version: int) -> None:
    """PROTOCOL.md §3.4: the agent takes a twin hello of 1 or 2 and remembers which, so that
    version-2 fields (status.authority) reach only a version-2 twin."""
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: len(rec.heartbeats()) >= 2)

    twin = SimTwin.from_pki(pki, rate_hz=100)
    twin.hello_protocol = version
    link, _rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    assert link.twin_protocol == version and link.counters.malformed == 0


def test_a_twin_hello_of_an_unknown_protocol_version_is_refused(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, rec: Recorder) -> None:
        await wait_until(lambda: link.counters.malformed >= 1, what="the hello refused")

    twin = SimTwin.from_pki(pki, rate_hz=100)
    twin.hello_protocol = 3
    link, rec = drive(twin, lambda port: settings_for(pki, port), scenario)
    assert rec.ups() == 0 and "hello.protocol: twin speaks 3" in link.counters.last_error
