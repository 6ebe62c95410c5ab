"""``twinguard demo``: the whole chain of defence against the simulated plant, with figures.

Modules, by what they hold:

* :mod:`sim.demo.record` — a sampler thread that records, from outside the agent, what the
  sim PLC and the sim twin see (values, writes, heartbeats, the agent's status messages,
  config pushes and their results).
* :mod:`sim.demo.context` — what a scenario works with and returns.
* :mod:`sim.demo.judge` — pure judgement over the sim PLC's write log (the safe state, rates).
* :mod:`sim.demo.scenarios` — the fault scenarios and the one table of scenarios.
* :mod:`sim.demo.pushes` — the configuration-push scenarios (promotion, forgery).
* :mod:`sim.demo.signing` — signing keys and bundles made with the real ``twinguard`` CLI.
* :mod:`sim.demo.plant` — the operator's start at the HMI and the twin's recommendations.
* :mod:`sim.demo.svg` / :mod:`sim.demo.lanes` / :mod:`sim.demo.timeline` — a tiny SVG
  writer, the lanes, and the incident timeline picture drawn with them.
* :mod:`sim.demo.view` — the live terminal view (rich) and the plain-line fallback.
* :mod:`sim.demo.cli` — ``add_options(parser)`` and ``main(args)`` for the ``demo`` command.
"""
