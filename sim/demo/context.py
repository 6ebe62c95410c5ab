"""What every demo scenario works with and returns: the context, the result, the skip.

Kept apart from :mod:`sim.demo.scenarios` (the table) so the scenario modules
(:mod:`sim.demo.scenarios`, :mod:`sim.demo.pushes`) can share them without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.model.profile import Profile
from sim.stack import Stack

if TYPE_CHECKING:
    from sim.demo.signing import Signer

WAIT_S = 20.0  # bound on every wait for a state the agent should reach


class Unavailable(Exception):
    """The scenario cannot run here (missing hook or key material): skipped, with a reason."""


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    passed: bool
    reaction_ms: float | None
    detail: str


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class DemoContext:
    """What a scenario works with. ``step(text)`` tells the view and the timeline what the
    scenario is doing now (e.g. "twin stops heartbeats"). ``signer`` holds the signing keys
    whose public halves are in the agent's factory trust store (None: no config pushes)."""

    stack: Stack
    profile: Profile
    step: Callable[[str], None]
    signer: Signer | None = None


Scenario = Callable[[DemoContext], ScenarioResult]
