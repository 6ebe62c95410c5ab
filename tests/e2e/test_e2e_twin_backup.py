"""Backup twin endpoints over the TLS transport (issue 15, item 4), real processes.

One agent, two sim twins (the same twin platform at two endpoints, the same pinned CA):
``[twin] host:port`` is twin A, ``backups`` names twin B. Twin A is killed (SIGKILL, no
goodbye) while the agent streams telemetry; the agent walks to B with its jittered backoff,
the twin comes back ALIVE there, and telemetry goes on. Asserted from outside: what each twin
received. A stops acknowledging before its last look is taken, so everything A held but had
not acknowledged is still in the agent's spool: the union of what A and B received is every
seq from A's first to B's last, with no hole, and B's share starts at or below A's last ack.
"""

from __future__ import annotations

from typing import Any

import pytest

from sim.stack import SimTwinProcess, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def telemetry(twin: SimTwinProcess) -> dict[str, Any]:
    return twin.request({"cmd": "telemetry", "seqs": True})


def test_a_killed_twin_endpoint_hands_over_to_the_backup_and_no_seq_is_lost() -> None:
    with Stack(start_agent=False) as stack:
        (stack.workdir / "b").mkdir()
        backup = SimTwinProcess(stack.workdir / "b", stack.workdir / "pki")
        try:
            stack.write_config(backups=[f"127.0.0.1:{backup.port}"])
            stack.start_agent()
            stack.wait_twin("alive")
            status = stack.status_json()
            assert status["twin"]["link"]["endpoint"] == f"127.0.0.1:{stack.twin.port}"
            wait_for(lambda: telemetry(stack.twin)["acked"] is not None
                     and telemetry(stack.twin)["received"] > 30, 20, "telemetry at twin A")
            assert telemetry(backup)["received"] == 0, "nothing goes to B while A is up"

            stack.twin.request({"cmd": "ack", "on": False})
            a = telemetry(stack.twin)  # A's last look: whatever it gets later is unacked
            stack.twin.proc.kill()

            stack.wait_status(lambda s: s["twin"]["link"]["endpoint"]
                              == f"127.0.0.1:{backup.port}" and s["twin"]["state"] == "alive",
                              30, "the twin ALIVE again at endpoint B")
            wait_for(lambda: (b := telemetry(backup))["max_seq"] is not None
                     and b["max_seq"] > max(a["order"]) + 30, 30, "live telemetry at B")
            b = telemetry(backup)
            switched = stack.status_json()["twin"]["link"]
        finally:
            backup.stop()

    got = set(a["order"]) | set(b["order"])
    first, last = min(a["order"]), max(b["order"])
    assert sorted(got) == list(range(first, last + 1)), "a seq neither twin received"
    assert min(b["order"]) <= a["acked"] + 1, "B resumes from what A acknowledged"
    assert b["duplicates"] == 0 and b["holes"] == 0
    assert switched["switches"] >= 1
