"""The twin link's bounded work per loop turn, against the sim twin (real TLS, one loop).

A burst of recommendations in one write is read, routed and delivered in bounded steps,
counted in loop turns (a task that bumps a counter each time it runs once per turn), so
nothing here depends on how fast the machine is:

* at most ``turn_frames`` queued messages are delivered per loop turn;
* a heartbeat behind the burst is delivered ahead of the recommendations still waiting;
* order, origin (session number and epoch) and every message are kept;
* a small inbox makes the link stop reading (backpressure), and still loses nothing;
* replies beyond the per-second budget are dropped and counted, never queued;
* a malformed message in the queue ends the session when the link reaches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from agent.io.pki import PkiPaths, init_pki
from agent.io.twin.link import READ_CHUNK, TwinLink, TwinLinkSettings
from agent.model.messages import (
    Heartbeat,
    Origin,
    Recommend,
    RecommendResult,
    TwinHello,
    TwinMessage,
)
from sim.twin.harness import settings_for, wait_until
from sim.twin.server import SimTwin

pytestmark = pytest.mark.timeout(60)

BURST = 8000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki"), device_id="dev-1")


@dataclass
class Seen:
    """What the link delivered: (message, loop turn, origin), and the session changes."""

    link: TwinLink | None = None
    turn: int = 0
    got: list[tuple[TwinMessage, int, Origin | None]] = field(default_factory=list)
    downs: list[str] = field(default_factory=list)
    reply: bool = False

    def on_message(self, msg: TwinMessage, t: float) -> None:
        assert self.link is not None
        self.got.append((msg, self.turn, self.link.delivering))
        if self.reply and isinstance(msg, Recommend):
            self.link.reply(RecommendResult(msg.id, False, "out_of_limits", None))

    def on_connection(self, up: bool, reason: str, t: float) -> None:
        if not up:
            self.downs.append(reason)

    def recommends(self) -> list[tuple[Recommend, int, Origin | None]]:
        return [(m, n, o) for m, n, o in self.got if isinstance(m, Recommend)]


Scenario = Callable[[SimTwin, TwinLink, Seen], Awaitable[None]]


def drive(pki: PkiPaths, scenario: Scenario, clock: Callable[[], float] | None = None,
          **overrides: object) -> tuple[TwinLink, Seen]:
    async def main() -> tuple[TwinLink, Seen]:
        twin = SimTwin.from_pki(pki, rate_hz=20)
        await twin.start()
        seen = Seen()
        settings: TwinLinkSettings = settings_for(pki, twin.port, idle_timeout_s=5.0,
                                                  **overrides)  # type: ignore[arg-type]
        link = (TwinLink(settings, seen.on_message, seen.on_connection) if clock is None
                else TwinLink(settings, seen.on_message, seen.on_connection, clock=clock))
        seen.link = link

        async def count_turns() -> None:
            while True:
                await asyncio.sleep(0)
                seen.turn += 1

        turns = asyncio.create_task(count_turns())
        task = asyncio.create_task(link.run())
        try:
            await wait_until(lambda: link.connected and any(
                isinstance(m, Heartbeat) for m, _, _ in seen.got), 10, "session up")
            await scenario(twin, link, seen)
        finally:
            link.close()
            await asyncio.wait_for(task, 5)
            turns.cancel()
            await twin.stop()
        return link, seen

    return asyncio.run(main())


def test_a_burst_is_delivered_in_bounded_turns_with_the_heartbeat_ahead(pki: PkiPaths) -> None:
    sent: dict[str, object] = {}

    async def scenario(twin: SimTwin, link: TwinLink, seen: Seen) -> None:
        sent.update(twin.burst(BURST, "heater_power", 150.0, 5.0, heartbeat=True))
        await wait_until(lambda: len(seen.recommends()) >= BURST, 40, "all delivered")

    link, seen = drive(pki, scenario)
    recs = seen.recommends()
    assert [m.id for m, _, _ in recs] == [f"b1-{i:06d}" for i in range(BURST)], "order kept"
    per_turn: dict[int, int] = {}
    for _, turn, _ in recs:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= link.settings.turn_frames, "bounded per loop turn"
    assert len(per_turn) >= BURST // link.settings.turn_frames
    # the heartbeat written behind the 8,000 was delivered before they were all through
    order = [m for m, _, _ in seen.got]
    hb = next(i for i, m in enumerate(order)
              if isinstance(m, Heartbeat) and m.seq == sent["heartbeat_seq"])
    last = max(i for i, m in enumerate(order) if isinstance(m, Recommend))
    assert hb < last, "the heartbeat jumped the queue"
    assert link.counters.ahead >= 1 and link.counters.yields > 0
    # every one carries where it came from: this session, the hello's epoch
    hello = next(m for m, _, _ in seen.got if isinstance(m, TwinHello))
    assert {o for _, _, o in recs} == {Origin(hello_session(seen), hello.epoch)}
    assert link.counters.waiting_max <= link.settings.inbox_frames
    assert link.counters.read_pauses == 0 and link.counters.discarded == 0


def hello_session(seen: Seen) -> int:
    origin = next(o for m, _, o in seen.got if isinstance(m, TwinHello))
    assert origin is not None
    return origin.session


def test_a_full_inbox_stops_reading_and_loses_nothing(pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, seen: Seen) -> None:
        twin.burst(BURST, "heater_power", 150.0, 5.0)
        await wait_until(lambda: len(seen.recommends()) >= BURST, 40, "all delivered")

    link, seen = drive(pki, scenario, inbox_frames=200)
    assert [m.id for m, _, _ in seen.recommends()] == [f"b1-{i:06d}" for i in range(BURST)]
    assert link.counters.read_pauses > 0
    frame = 4 + 60  # header + body: no recommend frame of the burst is smaller
    assert link.counters.waiting_max <= 200 + READ_CHUNK // frame, "the bound plus one read"
    assert seen.downs == ["closed"], "backpressure, not a dropped connection (until close)"


def test_replies_over_the_budget_are_dropped_and_counted(pki: PkiPaths) -> None:
    answers: list[int] = []

    async def scenario(twin: SimTwin, link: TwinLink, seen: Seen) -> None:
        seen.reply = True
        twin.burst(50, "heater_power", 150.0, 5.0)
        await wait_until(lambda: len(seen.recommends()) >= 50, 20, "50 delivered")
        await wait_until(lambda: len(twin.results) >= 10, 10, "10 answers")
        await wait_until(lambda: link.counters.replies_dropped >= 40, 10, "40 dropped")
        await asyncio.sleep(0.2)  # (a dropped reply is not queued: nothing more comes)
        answers.append(len(twin.results))

    # the link's clock stands still: the budget (10/s, a burst of 10) never refills
    link, _ = drive(pki, scenario, clock=lambda: 1000.0, reply_rate=10.0)
    assert link.counters.replies == 10 and answers == [10]
    assert link.counters.replies_dropped == 40


def test_a_malformed_message_in_the_queue_ends_the_session_when_reached(
        pki: PkiPaths) -> None:
    async def scenario(twin: SimTwin, link: TwinLink, seen: Seen) -> None:
        twin.burst(500, "heater_power", 150.0, 5.0)
        twin.garbage("bad_recommend")
        twin.burst(500, "heater_power", 150.0, 5.0)
        await wait_until(lambda: seen.downs, 20, "the session ended")

    link, seen = drive(pki, scenario)
    assert [m.id for m, _, _ in seen.recommends()] == [f"b1-{i:06d}" for i in range(500)]
    assert seen.downs[0].startswith("protocol error: recommend.id")
    assert link.counters.malformed == 1
