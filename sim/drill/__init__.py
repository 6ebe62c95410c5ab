"""The randomized fault campaign against the simulated plant (issue 16, item 1, ``--sim``).

``python -m sim drill --faults N --seed S [--json] [-o FILE.json|FILE.html]`` draws N faults
from every layer the simulated plant can really make happen (:mod:`sim.drill.faults`, the
catalogue), plays them one after another on one :class:`sim.stack.Stack` (real processes:
sim PLC, sim twin, ``twinguard run``; :mod:`sim.drill.inject` makes each fault happen and
undoes it, :mod:`sim.drill.campaign` runs them), judges each from outside - the sim PLC's
write log, its process state, the twin's record of the agent's status and telemetry -
(:mod:`sim.drill.judge`, pure) and writes a JSON report and a self-contained HTML page
(:mod:`sim.drill.report`). A seed reproduces the sequence.
"""
