"""``twinguard demo``: the whole chain of defence against the simulated plant, with figures.

Modules, by what they hold:

* :mod:`sim.demo.record` — a sampler thread that records, from outside the agent, what the
  sim PLC and the sim twin see (values, writes, heartbeats, the agent's status messages).
* :mod:`sim.demo.scenarios` — the scenarios (make a fault happen, measure at the sim PLC)
  and their pure judgement functions; the one table of scenarios.
* :mod:`sim.demo.svg` / :mod:`sim.demo.timeline` — a tiny SVG writer and the incident
  timeline picture drawn with it.
* :mod:`sim.demo.view` — the live terminal view (rich) and the plain-line fallback.
* :mod:`sim.demo.cli` — ``add_options(parser)`` and ``main(args)`` for the ``demo`` command.
"""
