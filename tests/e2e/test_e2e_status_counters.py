"""``twinguard status`` shows the twin link's counters (PROTOCOL.md §6) and why live
recommendations were dropped (issue 13: 5,263 protocol-error closes were invisible).

A real stack (sim PLC, sim twin, ``twinguard run``): the sim twin sends a live
recommendation, then a frame that is not msgpack; the agent closes the connection (a
protocol error), which ends the session and drops the recommendation, and reconnects.
``twinguard status --json`` and the text view, run as a user runs them, must show it counted.
"""

from __future__ import annotations

from typing import Any

import pytest

from sim.stack import Stack, recommend_script, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

LINK_KEYS = {"connects", "sessions", "disconnects", "failures", "frames_in", "frames_out",
             "malformed", "idle_timeouts", "dropped", "callback_errors", "replies",
             "replies_dropped", "yields", "read_pauses", "ahead", "waiting_max", "discarded",
             "last_error", "endpoint", "switches", "refused"}


def link(snap: dict[str, Any]) -> dict[str, Any]:
    counters: dict[str, Any] = snap["twin"]["link"]
    return counters


def test_a_protocol_error_close_is_counted_in_status() -> None:
    with Stack() as stack:
        stack.wait_state("normal")
        live = stack.wait_status(lambda s: link(s)["sessions"] >= 1, 20, "a twin session")
        assert set(link(live)) == LINK_KEYS
        assert link(live)["malformed"] == 0
        assert link(live)["endpoint"].startswith("127.0.0.1:") and link(live)["switches"] == 0
        assert link(live)["frames_in"] > 0 and link(live)["frames_out"] > 0
        assert live["twin"]["after_bye"] == 0
        assert live["recommendation_counts"]["dropped"]["heartbeat_lost"] == 0
        stack.twin.request(recommend_script([(0.0, "heater_power", 40.0, 60.0)]))
        stack.wait_status(lambda s: bool(s["recommendations"]), 20, "the recommendation live")
        before = stack.twin.stats(last=0)["connections_total"]
        stack.twin.request({"cmd": "garbage", "kind": "bad_msgpack"})
        wait_for(lambda: stack.twin.stats(last=0)["connections_total"] > before, 20,
                 "the agent reconnects")
        after = stack.wait_status(lambda s: link(s)["malformed"] >= 1
                                  and link(s)["sessions"] >= 2, 20, "the close counted")
        text = stack.status_text()
    k = link(after)
    assert k["malformed"] == 1, k  # one garbage frame, one protocol-error close
    assert k["disconnects"] >= 1 and k["connects"] >= 2
    assert k["frames_in"] > link(live)["frames_in"]
    assert "protocol error" in (k["last_error"] or ""), k
    assert after["recommendation_counts"]["dropped"]["heartbeat_lost"] == 1
    assert "protocol-error closes 1," in text, text
    assert "dropped: heartbeat lost 1," in text


def test_without_a_twin_the_link_counters_are_null() -> None:
    with Stack(twin_configured=False) as stack:
        snap = stack.wait_status(lambda s: s["state"] in ("normal", "starting"), 20, "status")
        text = stack.status_text()
    assert snap["twin"]["link"] is None
    row = [line for line in text.splitlines() if "twin link" in line]
    assert len(row) == 1 and "no twin configured" in row[0], text
