"""twinguard: a fail-safe control agent that runs beside a PLC.

One package per layer, top to bottom: ``cli`` (the commands), ``runtime`` (the loop),
``io`` (the adapters), ``config`` (profiles and configuration, parsed), ``protocol`` (wire
formats), ``core`` (the sans-IO cores) and ``model`` (frozen data and the exception tree).
Each imports only layers below it; ``agent/README.md`` draws them and the data flow through
them, and ``tests/test_layering.py`` enforces the rules.
"""

__version__ = "0.1.0"
