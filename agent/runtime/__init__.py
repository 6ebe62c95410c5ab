"""runtime: the one loop that owns the plant, and what it composes.

Lives here: the loop (``loop``: ``Runtime``, one asyncio loop per agent: read, decide,
write, kick the watchdog, every tick), the configuration session (``configsession``: what is
in force, pushes, the confirmation window), the telemetry feed and pump (``telemetry_feed``,
``telemetry_pump``: records queued on the loop, committed and sent off it), the status
snapshot builder (``snapshot``), fault drills rehearsed in slices on the loop (``drill``) and
the test-only fault injection (``faultinject``).

May import: every layer below it (``agent.model``, ``agent.core``, ``agent.protocol``,
``agent.config``, ``agent.io``), other ``agent.runtime`` modules, ``agent`` itself (the
version), ``firmware_bridge`` and any library; never ``agent.cli`` nor ``sim``.
``tests/test_layering.py`` enforces it.
"""
