"""The simulated PLC's own program: a PI temperature loop on the heater. Pure: ``now`` passed in.

``[sim.program]`` (``agent.model.profile.SimProgram``) configures it; ``sim.plc.plc.SimPlc``
decides when it runs (the ``[plc_remote]`` flag at its ``local_value``, or a communication
watchdog fallback to ``local``) and applies what it computes. Under local control::

    e = setpoint - measured                     measured: the PLC's own temperature reading
    I = clamp(I + ki * e * dt, lo - kp * e, hi - kp * e)
    heater = clamp(kp * e + I, lo, hi)          lo, hi: the heater output's [min, max]
    cooling = the program's fixed ``cooling``

It runs once per ``CYCLE_S`` (a PLC task cycle); ``dt`` is the time since the last cycle,
capped at ``MAX_DT_S`` (a stalled process must not integrate a long gap at once). The
integrator clamp is the anti-windup: while the heater is saturated the integrator tracks
the limit, so the loop leaves saturation without overshooting on a wound-up integral.

Bumpless transfer: ``engage(now, heater, measured)`` sets ``I = heater - kp * e`` so the
first output equals the heater the plant is getting now; from there the output moves only
by the loop's own one-step change (``kp * de + ki * e * dt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.model.profile import SimProgram

CYCLE_S = 0.1  # the program's task cycle
MAX_DT_S = 0.5  # longest gap one cycle integrates


@dataclass(frozen=True)
class ProgramOutputs:
    """What the program drives, in the outputs' engineering units."""

    heater: float
    cooling: float


class PiProgram:
    """The PI loop of ``config``, its heater limited to [``heater_min``, ``heater_max``].

    ``engage`` before the first ``cycle`` (and at every switch to local control); ``cycle``
    returns the outputs to apply, or None when the next task cycle is not due yet.
    """

    def __init__(self, config: SimProgram, heater_min: float, heater_max: float) -> None:
        self.config = config
        self.lo = heater_min
        self.hi = heater_max
        self.setpoint = config.setpoint
        self.integral = 0.0
        self.outputs = ProgramOutputs(heater_min, config.cooling)
        self._last: float | None = None

    def set_setpoint(self, value: float) -> None:
        """Change the local setpoint (the operator HMI's); ValueError if not finite."""
        if not math.isfinite(value):
            raise ValueError(f"setpoint must be a finite number, got {value!r}")
        self.setpoint = float(value)

    def _clamp(self, x: float) -> float:
        return min(self.hi, max(self.lo, x))

    def engage(self, now: float, heater: float, measured: float) -> ProgramOutputs:
        """Take over bumplessly from ``heater`` (what the plant gets now) at ``now``."""
        e = self.setpoint - measured
        self.outputs = ProgramOutputs(self._clamp(heater), self.config.cooling)
        self.integral = self.outputs.heater - self.config.kp * e
        self._last = now
        return self.outputs

    def cycle(self, now: float, measured: float) -> ProgramOutputs | None:
        """One task cycle if due at ``now``: the new outputs, else None."""
        if self._last is not None and now - self._last < CYCLE_S - 1e-9:
            return None  # (the tolerance: a cycle exactly CYCLE_S later is due)
        dt = 0.0 if self._last is None else min(MAX_DT_S, now - self._last)
        self._last = now
        kp, ki = self.config.kp, self.config.ki
        e = self.setpoint - measured
        integral = self.integral + ki * e * dt
        self.integral = min(self.hi - kp * e, max(self.lo - kp * e, integral))
        self.outputs = ProgramOutputs(self._clamp(kp * e + self.integral), self.config.cooling)
        return self.outputs
