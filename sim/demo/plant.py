"""How the demo runs the plant, so that the safe state has something to stop.

Once the agent first reports NORMAL, :func:`start_process` does what people and the twin
platform would do:

* the operator starts the process at the HMI: the sim PLC's control channel ``set_output``
  (heater ``OPERATOR_HEATER`` %, cooling ``OPERATOR_COOLING`` %). The PLC logs these with
  source ``control``: they are the PLC program's, not Modbus writes of the agent, and the
  shadow judgement does not count them;
* the twin starts recommending: its model (``model``: a P controller on the voted temperature
  of the agent's poll telemetry, heater = ``MODEL_KP`` * (``SETPOINT_C`` - T), 0..100 %)
  and a script that holds the cooling valve at ``TWIN_COOLING`` % (refreshed every second,
  each valid ``COOLING_VALID_S``). In shadow mode the agent only logs them ("would have
  written"); once promoted to ``active`` it writes them, clamped to limits and rate, and the
  tank settles near 65 degC (the P controller's equilibrium with the sim's heat balance).

Every failsafe then writes the safe set (heater 0 %, cooling ramping to 100 %) and the tank
visibly cools in the timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sim.stack import Stack, recommend_script

log = logging.getLogger(__name__)

OPERATOR_HEATER = 45.0
OPERATOR_COOLING = 15.0
SETPOINT_C = 68.0
MODEL_KP = 10.0
MODEL_PERIOD_S = 0.5
TWIN_COOLING = 15.0
COOLING_VALID_S = 2.5
COOLING_SCRIPT_S = 300  # one cooling recommendation a second for this long (> any run)


def start_process(stack: Stack, step: Callable[[str], None]) -> None:
    """Operator start at the HMI, then the twin's recommendations (see the module docstring).
    Raises whatever the control channels raise (the plant is then not running)."""
    step(f"operator HMI starts the process: heater {OPERATOR_HEATER:g} %, "
         f"cooling {OPERATOR_COOLING:g} %")
    stack.plc.control.set_output("heater_power", OPERATOR_HEATER)
    stack.plc.control.set_output("cooling_valve", OPERATOR_COOLING)
    step(f"twin recommends: heater by its model (setpoint {SETPOINT_C:g} degC), "
         f"cooling {TWIN_COOLING:g} %")
    stack.twin.request({"cmd": "model", "setpoint": SETPOINT_C, "kp": MODEL_KP,
                        "period_s": MODEL_PERIOD_S})
    stack.twin.request(recommend_script(
        [(float(i), "cooling_valve", TWIN_COOLING, COOLING_VALID_S)
         for i in range(COOLING_SCRIPT_S)]))
    log.info("demo plant running: operator %g/%g %%, twin model setpoint %g degC",
             OPERATOR_HEATER, OPERATOR_COOLING, SETPOINT_C)
