"""How the demo runs the plant: the PLC program at the operator's setpoint, the twin beside it.

sim-tank's PLC runs its own program (``[sim.program]``: a PI loop on the heater, the
cooling valve at the program's fixed value) behind the ``[plc_remote]`` flag. Once the agent
first reports NORMAL, :func:`start_process` does what people and the twin platform would do:

* the operator sets the program's local setpoint at the HMI (the sim PLC's control channel
  ``set_setpoint``, ``SETPOINT_C``): production runs on the PLC program, with or without a
  twin. (The HMI never writes the output registers: with the flag local such a write would
  only be staged, see sim/plc/README.md.)
* the twin starts recommending: its model (``model``: a P controller on the voted
  temperature of the agent's poll telemetry, heater = ``MODEL_KP`` * (s - T), 0..100 %)
  whose setpoint ``s`` carries the feed-forward the twin's plant model knows
  (:func:`model_setpoint`), so that it holds the tank at ``SETPOINT_C`` too; and a script
  that holds the cooling valve where the program holds it (refreshed every second, each
  valid ``COOLING_VALID_S``). In shadow mode the agent only logs them; once promoted to
  ``active`` and given authority it writes them, clamped to limits and rate.

:func:`wait_settled` waits until the true temperature has stayed near the setpoint, so the
outage scenarios start from a plant in steady production.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.model.profile import Profile
from sim.demo.judge import return_steps
from sim.plc.process import AMBIENT_C, K_COOL, K_HEAT, K_LOSS
from sim.stack import Stack, recommend_script

log = logging.getLogger(__name__)

SETPOINT_C = 62.0
MODEL_KP = 10.0
MODEL_PERIOD_S = 0.5
COOLING_VALID_S = 2.5
COOLING_SCRIPT_S = 600  # one cooling recommendation a second for this long (> any run)
SETTLED_C = 1.0  # "at the setpoint": within this of it ...
SETTLED_HOLD_S = 2.0  # ... for this long
SETTLE_MAX_S = 90.0


def program_cooling(profile: Profile) -> float:
    """The cooling valve the PLC program holds; ValueError for a profile without one."""
    if profile.sim is None or profile.sim.program is None:
        raise ValueError(f"{profile.source}: the demo needs a PLC program ([sim.program])")
    return profile.sim.program.cooling


def model_setpoint(setpoint: float, cooling: float, kp: float = MODEL_KP) -> float:
    """The P controller's setpoint that holds the tank at ``setpoint`` with the valve at
    ``cooling`` %: ``setpoint`` + the heater the heat balance needs there / ``kp``."""
    heater = (K_LOSS + K_COOL * cooling) * (setpoint - AMBIENT_C) / K_HEAT
    return setpoint + heater / kp


def start_process(stack: Stack, profile: Profile, step: Callable[[str], None]) -> None:
    """The operator's setpoint, then the twin's recommendations (see the module docstring).
    Raises whatever the control channels raise, ValueError without a PLC program."""
    cooling = program_cooling(profile)
    step(f"operator HMI sets the PLC program's setpoint to {SETPOINT_C:g} degC")
    stack.plc.control.set_setpoint(SETPOINT_C)
    step(f"twin recommends: heater by its model (holding {SETPOINT_C:g} degC), "
         f"cooling {cooling:g} %")
    stack.twin.request({"cmd": "model", "setpoint": round(model_setpoint(SETPOINT_C, cooling), 3),
                        "kp": MODEL_KP, "period_s": MODEL_PERIOD_S})
    stack.twin.request(recommend_script(
        [(float(i), "cooling_valve", cooling, COOLING_VALID_S)
         for i in range(COOLING_SCRIPT_S)]))
    log.info("demo plant running: PLC program setpoint %g degC, twin model beside it",
             SETPOINT_C)


def wait_settled(stack: Stack, setpoint: float = SETPOINT_C,
                 timeout: float = SETTLE_MAX_S) -> float:
    """Wait until the true temperature has been within ``SETTLED_C`` of ``setpoint`` for
    ``SETTLED_HOLD_S``; returns when. TimeoutError after ``timeout``."""
    end = time.monotonic() + timeout
    inside_since: float | None = None
    while True:
        now = time.monotonic()
        temp = stack.plc.control.state().get("temperature")
        if temp is not None and abs(float(temp) - setpoint) <= SETTLED_C:
            inside_since = now if inside_since is None else inside_since
            if now - inside_since >= SETTLED_HOLD_S:
                return now
        else:
            inside_since = None
        if now > end:
            raise TimeoutError(f"the tank did not settle at {setpoint:g} degC within "
                               f"{timeout:g} s (now {temp})")
        time.sleep(0.2)


def watch_temperature(stack: Stack, seconds: float,
                      period_s: float = 0.2) -> list[tuple[float, float]]:
    """Sample the sim PLC's true temperature every ``period_s`` for ``seconds``."""
    samples: list[tuple[float, float]] = []
    end = time.monotonic() + seconds
    while True:
        st = stack.plc.control.state()
        if st.get("temperature") is not None:
            samples.append((float(st["t"]), float(st["temperature"])))
        if time.monotonic() >= end:
            return samples
        time.sleep(period_s)


def applied_at(trace: Sequence[Mapping[str, Any]], t: float,
               profile: Profile) -> dict[str, float]:
    """What the plant got (per output name) in the last program ``trace`` entry at or before
    ``t``; empty without one (or without a ``[sim]`` binding)."""
    before = [e for e in trace if float(e["t"]) <= t]
    if profile.sim is None or not before:
        return {}
    return {profile.sim.heater: float(before[-1]["heater"]),
            profile.sim.cooling: float(before[-1]["cooling"])}


def takeover_steps(stack: Stack, profile: Profile, t_take: float,
                   watch_s: float) -> list[tuple[str, float, float]]:
    """The twin took the outputs at ``t_take`` (the flag's remote write): every output step
    in the ``watch_s`` after it, from what the plant got then
    (:func:`sim.demo.judge.return_steps`)."""
    trace = stack.plc.control.trace(since_t=t_take - 1.0)
    return return_steps(stack.plc.write_log(), profile, applied_at(trace, t_take, profile),
                        t_take, t_take + watch_s)


def worst_step(steps: Sequence[tuple[str, float, float]]) -> tuple[str, float, float] | None:
    """The step that used the largest share of what it was allowed."""
    return max(steps, key=lambda s: s[1] / s[2], default=None)
