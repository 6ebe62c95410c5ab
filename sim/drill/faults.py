"""The campaign's fault catalogue: every kind of fault, its layer, what must answer it and by
when. Pure data and arithmetic over the profile; no I/O (:mod:`sim.drill.inject` makes the
faults happen).

Each :class:`Kind` names what the plant must show at the sim PLC (:class:`Expect`) and where
its deadline runs from (:class:`Base`); :func:`deadline` turns the profile into the delay
after that base and the lateness allowed past it (the budgets are the demo's, which the
product's README promises with room for a busy host):

=================  =====================================================================
expect             seen at the PLC
=================  =====================================================================
shed               the ``[plc_remote]`` flag written at ``local_value`` (sim-tank's
                   ``on_twin_loss = "release"``: the PLC program gets the plant back),
                   and no safe set: the twin's loss, or a plant that is only DEGRADED
                   (authority needs NORMAL), is not a hazard
failsafe           the full safe set (every output and the flag at ``remote_value``)
native             the native watchdog's safe set past (last heartbeat write + deadline)
plc-fallback       the PLC's own watchdog fallback past (last heartbeat write + timeout)
nothing            no agent write but the heartbeat register
=================  =====================================================================

:func:`draw` is the campaign's sequence: with N >= the number of kinds, every kind once in
a shuffled order first, then kinds drawn uniformly; one seed, one sequence.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from agent.model.profile import Profile

SHED_BUDGET_S = 0.250  # sim.demo.outages.SHED_BUDGET_MS: "heartbeat timeout + a few ms"
HAZARD_SLACK_S = 0.100  # sim.demo.outages.HAZARD_SLACK_MS: one poll period + this
NATIVE_BUDGET_S = 0.050  # sim.demo.scenarios.NATIVE_BUDGET_MS: "deadline + < 5 ms"
PLC_WATCHDOG_BUDGET_S = 0.100  # sim.demo.scenarios.PLC_WATCHDOG_BUDGET_MS (10 ms checks)
EARLY_S = 0.001  # a reaction this far before its deadline is early (the demo's low_ms)


class Expect(enum.Enum):
    SHED = "shed"
    FAILSAFE = "failsafe"
    NATIVE = "native"
    FALLBACK = "plc-fallback"
    NOTHING = "nothing"


class Base(enum.Enum):
    """What a deadline runs from."""

    FAULT = "fault"  # the moment the fault was made
    SILENCE = "silence"  # the twin's last heartbeat sent before the fault
    UNHEALTHY = "unhealthy"  # the first unhealthy heartbeat the twin sent
    CLEAR = "clear"  # the end of the fault (a silent PLC answers again)
    HEARTBEAT = "heartbeat"  # the agent's last heartbeat-register write before the reaction


@dataclass(frozen=True)
class Kind:
    name: str
    layer: str  # twin, link, sensor, plc, python, agent
    expect: Expect
    base: Base
    what: str


KINDS: tuple[Kind, ...] = (
    Kind("twin-frozen", "twin", Expect.SHED, Base.SILENCE,
         "the twin process stopped (SIGSTOP) 1.5 s, then continued"),
    Kind("twin-killed", "twin", Expect.SHED, Base.FAULT,
         "the twin process killed (SIGKILL), then started again on its port"),
    Kind("twin-garbage", "twin", Expect.SHED, Base.FAULT,
         "one bad frame (a drawn GARBAGE kind) to the agent"),
    Kind("twin-bye", "twin", Expect.SHED, Base.FAULT, "the twin says bye (a new epoch)"),
    Kind("twin-unhealthy", "twin", Expect.SHED, Base.UNHEALTHY,
         "heartbeats say unhealthy for 1 s"),
    Kind("twin-slow", "twin", Expect.NOTHING, Base.FAULT,
         "each heartbeat 100 ms late (below heartbeat_late_s) for 1.5 s"),
    Kind("link-half-open", "link", Expect.SHED, Base.SILENCE,
         "the twin's sockets go silent both ways, left open"),
    Kind("link-drop", "link", Expect.SHED, Base.FAULT,
         "the twin drops every connection and refuses new ones 1 s"),
    Kind("sensor-stuck", "sensor", Expect.NOTHING, Base.FAULT,
         "one temperature channel of three stuck at the value it reads, held past "
         "stuck_after_s: in a steady plant its peers do not move (the voting's STUCK needs "
         "them to), so it reads right and must cause nothing"),
    Kind("sensor-drift", "sensor", Expect.SHED, Base.FAULT,
         "one temperature channel drifting 50 degC/s (2oo3: DEGRADED)"),
    Kind("sensor-offset", "sensor", Expect.SHED, Base.FAULT,
         "one temperature channel offset 10 % of its range (2oo3: DEGRADED)"),
    Kind("sensor-out-of-range", "sensor", Expect.SHED, Base.FAULT,
         "one temperature or pressure channel beyond its plausible range (DEGRADED)"),
    Kind("sensor-dropout", "sensor", Expect.SHED, Base.FAULT,
         "one channel's registers answer exception 4 (the agent reads the refused block's "
         "members one by one: only that channel BAD, DEGRADED)"),
    Kind("sensor-2oo3-lost", "sensor", Expect.FAILSAFE, Base.FAULT,
         "two temperature channels of three bad (out of range, offset or drift): group BAD"),
    Kind("sensor-trip", "sensor", Expect.FAILSAFE, Base.FAULT,
         "every temperature channel +40 degC: the voted value trips overtemperature"),
    Kind("plc-silent", "plc", Expect.FAILSAFE, Base.CLEAR,
         "the PLC stops answering 0.4 s: the safe set confirmed once it answers again"),
    Kind("plc-slow", "plc", Expect.FAILSAFE, Base.FAULT,
         "every reply 300 ms late (beyond the request timeout) for 0.6 s"),
    Kind("plc-slow-within", "plc", Expect.NOTHING, Base.FAULT,
         "every reply 5 ms late (within the tick's I/O budget) for 1.5 s"),
    Kind("plc-drop", "plc", Expect.NOTHING, Base.FAULT,
         "the PLC closes the agent's connection once (it reconnects)"),
    Kind("plc-malformed", "plc", Expect.FAILSAFE, Base.FAULT,
         "read replies carry the wrong transaction id for 0.5 s"),
    Kind("python-hang", "python", Expect.NATIVE, Base.HEARTBEAT,
         "SIGUSR2: the agent's Python hangs with the GIL held (native watchdog)"),
    Kind("agent-kill9", "agent", Expect.FALLBACK, Base.HEARTBEAT,
         "kill -9 the agent (the PLC's own watchdog), then start it again"),
    Kind("agent-kill9-spooling", "agent", Expect.FALLBACK, Base.HEARTBEAT,
         "kill -9 the agent while the twin is away and telemetry spools; nothing lost"),
)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
NOT_COVERED = ("kill during config apply: not in this campaign (no fault of it here yet)",)


@dataclass(frozen=True)
class Deadline:
    """``delay_s`` after the kind's :class:`Base`; ``budget_s`` of lateness allowed past it."""

    delay_s: float
    budget_s: float


def deadline(kind: Kind, profile: Profile) -> Deadline:
    """The deadline of ``kind`` under ``profile`` (see the module docstring)."""
    t = profile.timing
    hazard = t.poll_period_s + HAZARD_SLACK_S
    if kind.expect is Expect.SHED and kind.layer in ("twin", "link"):
        delay = t.heartbeat_timeout_s if kind.base is Base.SILENCE else 0.0
        return Deadline(delay, SHED_BUDGET_S)
    if kind.name == "sensor-stuck":
        group = next(g for g in profile.groups if g.name == "temperature")
        return Deadline(group.stuck_after_s or 0.0, hazard)
    if kind.name == "sensor-drift":
        return Deadline(t.poll_period_s, hazard)  # one poll for the drift to show
    if kind.name == "plc-silent":
        # once it answers: the next request after the reconnect backoff the silence built
        return Deadline(0.0, profile.plc.reconnect_max_s + hazard)
    plc = profile.plc
    if kind.name == "plc-slow":
        # every attempt of a read timed out; the connection reset, the backoff may have grown
        return Deadline(plc.timeout_s * (plc.retries + 1), plc.reconnect_max_s + hazard)
    if kind.name == "plc-malformed":
        # rejected at once; the connection reset, the safe set after the first reconnect
        return Deadline(0.0, plc.reconnect_min_s * 2 + hazard)
    if kind.expect is Expect.NATIVE:
        return Deadline(t.watchdog_deadline_s, NATIVE_BUDGET_S)
    if kind.expect is Expect.FALLBACK:
        return Deadline(profile.plc_watchdog.expected_timeout_ms / 1000.0,
                        PLC_WATCHDOG_BUDGET_S)
    return Deadline(0.0, hazard)


def draw(n: int, seed: int) -> list[Kind]:
    """``n`` kinds for the seed: every kind once (shuffled) first when ``n`` allows, then
    uniform draws. The same seed always gives the same list."""
    if n < 0:
        raise ValueError("the number of faults must be >= 0")
    rng = random.Random(seed)
    first = list(KINDS)
    rng.shuffle(first)
    out = first[:n]
    out += [rng.choice(KINDS) for _ in range(n - len(out))]
    return out
