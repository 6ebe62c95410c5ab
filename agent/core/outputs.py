"""The output policy: what each declared output should hold, in engineering units (sans-IO).

In a safe state (FAILSAFE, RECOVERING) :meth:`OutputPlanner.plan` says what every writable
point (the outputs and ``[plc_remote]``'s flag, whose safe value is ``remote_value``) must be
driven to, by its ``failsafe`` policy:

==========  ==========================================================================
SAFE_VALUE  ``safe_value``, at once
HOLD_LAST   the value the agent last wrote (``safe_value`` if it never wrote one)
RAMP        from the last written value toward ``safe_value`` by at most
            ``max_rate * dt`` (``safe_value`` at once if nothing was written or the
            output has no max rate); dt is the time since the previous plan, capped at
            ``max_dt_s`` so a stalled loop never turns into a jump
==========  ==========================================================================

Outside the safe states the planner imposes nothing (empty plan): what is written then is
the control layer's business, through :func:`clamp`.

:func:`clamp` bounds a recommendation for an output: into ``[minimum, maximum]`` first,
then to at most ``max_rate * dt`` away from the last written value. A non-finite target or
a negative dt raises ValueError (the caller rejects the recommendation, counts and logs it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from agent.core.safety import SAFE_STATES, State
from agent.model.profile import FailsafePolicy, Output

DEFAULT_MAX_DT_S = 1.0


def clamp(output: Output, target: float, last: float | None, dt: float) -> float:
    """``target`` bounded by the output's limits and, from ``last`` over ``dt`` seconds,
    by its max rate. Raises ValueError if ``target`` is not finite or ``dt`` < 0."""
    if not math.isfinite(target):
        raise ValueError(f"output {output.name}: target {target!r} is not a finite number")
    if dt < 0:
        raise ValueError(f"output {output.name}: negative dt {dt!r}")
    value = min(max(target, output.minimum), output.maximum)
    if output.max_rate is not None and last is not None and math.isfinite(last):
        step = output.max_rate * dt
        value = min(max(value, last - step), last + step)
    return value


class OutputPlanner:
    """Plans safe-state values for the given outputs; remembers only when it last planned.

    Raises ValueError at construction for a non-positive ``max_dt_s``.
    """

    def __init__(self, outputs: Iterable[Output], max_dt_s: float = DEFAULT_MAX_DT_S) -> None:
        if not max_dt_s > 0:
            raise ValueError(f"max_dt_s must be > 0, got {max_dt_s!r}")
        self._outputs = tuple(outputs)
        self._max_dt_s = max_dt_s
        self._last_t: float | None = None

    @property
    def max_dt_s(self) -> float:
        """The longest time step a ramp takes at once (a stalled loop never jumps)."""
        return self._max_dt_s

    def plan(
        self, state: State, last_written: Mapping[str, float | None], now: float
    ) -> dict[str, float]:
        """Values to write now, by output name; empty outside the safe states.

        ``last_written`` holds what the agent last wrote to each output (missing or None:
        never written). Call it every tick, in every state, so dt stays one tick.
        """
        dt = 0.0 if self._last_t is None else min(max(now - self._last_t, 0.0), self._max_dt_s)
        self._last_t = now
        if state not in SAFE_STATES:
            return {}
        return {o.name: self._safe(o, last_written.get(o.name), dt) for o in self._outputs}

    @staticmethod
    def _safe(o: Output, last: float | None, dt: float) -> float:
        if last is None or not math.isfinite(last):
            return o.safe_value
        if o.failsafe is FailsafePolicy.HOLD_LAST:
            return last
        if o.failsafe is FailsafePolicy.RAMP and o.max_rate is not None:
            step = o.max_rate * dt
            return min(max(o.safe_value, last - step), last + step)
        return o.safe_value
