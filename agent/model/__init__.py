"""model: the frozen data and enums every layer shares.

Lives here: readings (``readings``), the hardware profile (``profile``), the twin
protocol's messages (``messages``), the control authority (``mode``), the telemetry spool's
plain data (``spool``), the status snapshot and the adapters' counters (``status``), and
the whole exception tree (``errors``).

May import: the standard library only (pure modules: no I/O, no clock, no threads), and
nothing of ``agent``. Everyone else may import it.
"""
