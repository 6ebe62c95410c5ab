"""core: the sans-IO cores; plain data in, decisions out, ``now`` passed in.

Lives here: redundancy voting (``voting``), trip rules (``trips``), the twin heartbeat
monitor (``heartbeat``), the safety state machine (``safety``), the output policy
(``outputs``), twin recommendations (``recommend``), the controller that composes them
(``controller``), the LED rule table (``leds``), fault drills played on a copy of the
controller (``drills``: the scenarios, ``rehearsal``: the engine, ``drillreport``: its
report), reconnect backoff and dead bus units (``backoff``), the telemetry forwarder's
choice of what to send (``forwarder``) and the twin link's bounded work (``pacing``).

May import: ``agent.model`` and other ``agent.core`` modules, and the pure standard library
(no time, asyncio, socket, ssl, sqlite3, threading, select, subprocess, signal; no pymodbus,
serial, gpiozero, msgpack, firmware_bridge). ``tests/test_layering.py`` enforces it.
"""
