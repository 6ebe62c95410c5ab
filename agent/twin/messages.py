"""Typed messages of the twin protocol (see agent/twin/PROTOCOL.md).

Owned by the twin-link module; the pure cores import only the dataclasses from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Heartbeat:
    """Twin -> agent: "I am alive" (``healthy``) or "I am here but unhealthy".

    ``epoch`` identifies the twin's session and strictly increases across twin restarts
    (like Sparkplug B's bdSeq); ``seq`` strictly increases within an epoch.
    """

    epoch: int
    seq: int
    healthy: bool
