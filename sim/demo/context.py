"""What every demo scenario works with and returns: the context, the result, the skip.

Kept apart from :mod:`sim.demo.scenarios` (the table) so the scenario modules
(:mod:`sim.demo.scenarios`, :mod:`sim.demo.pushes`, :mod:`sim.demo.outages`,
:mod:`sim.demo.restart`) can share them without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.model.profile import Profile
from sim.stack import Stack, pid_running, stop_pid

if TYPE_CHECKING:
    from sim.demo.signing import Signer

WAIT_S = 20.0  # bound on every wait for a state the agent should reach

Figure = float | int | str | None


class Unavailable(Exception):
    """The scenario cannot run here (missing hook or key material): skipped, with a reason."""


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario's verdict. ``reaction_ms`` is its one headline time (None where it has
    none); ``figures`` the rest of what it measured at the sim PLC (names and units in the
    module docstring of the scenario's module), for ``twinguard demo --json``."""

    name: str
    passed: bool
    reaction_ms: float | None
    detail: str
    figures: Mapping[str, Figure] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Durations:
    """How long the twin stays frozen in the outage scenarios, and the normal running
    between two scenarios. The defaults are the issue's; ``QUICK`` is for tests."""

    shadow_outage_s: float = 20.0
    active_outage_s: float = 30.0
    interlude_s: float = 2.0


QUICK = Durations(shadow_outage_s=4.0, active_outage_s=5.0, interlude_s=1.0)


@dataclass
class DemoContext:
    """What a scenario works with. ``step(text)`` tells the view and the timeline what the
    scenario is doing now (e.g. "twin stops heartbeats"). ``signer`` holds the signing keys
    whose public halves are in the agent's factory trust store (None: no config pushes).
    ``in_force`` is the configuration text the agent runs now when a push changed it (None:
    the factory file, with the mode its status reports)."""

    stack: Stack
    profile: Profile
    step: Callable[[str], None]
    signer: Signer | None = None
    durations: Durations = Durations()
    in_force: str | None = None


Scenario = Callable[[DemoContext], ScenarioResult]


def agent_pid(stack: Stack) -> int | None:
    """The pid of the agent now running: the last hand-over successor while it lives, else
    the stack's own child while it lives; None when no agent runs."""
    if stack.successors and pid_running(stack.successors[-1]):
        return stack.successors[-1]
    if stack.agent is not None and stack.agent.alive():
        return stack.agent.pid
    return None


def agent_running(stack: Stack) -> bool:
    """Some agent process runs (the stack's child or a hand-over successor)."""
    return agent_pid(stack) is not None


def stop_successors(stack: Stack, timeout_s: float = 10.0) -> None:
    """SIGTERM every hand-over successor still running and wait until it is gone (a zombie
    counts as gone: an orphan's parent may never reap it), then forget them, so that
    ``Stack.close`` has none left to wait for."""
    for pid in list(stack.successors):
        stop_pid(pid, timeout_s)
        stack.successors.remove(pid)
