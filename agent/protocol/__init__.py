"""protocol: the wire formats, as sans-IO codecs (bytes in, data out, and back).

Lives here: the Modbus master's codec (``modbus/``: PDUs, TCP/RTU ADUs and every check of a
reply against its request, register encodings, the read/write plan, the native watchdog's
pre-encoded frames), the twin protocol (``twin/``: length-prefixed msgpack frames, the
messages' wire schema, ``PROTOCOL.md``), the telemetry records (``telemetry``), and the
fleet transport's formats: twinguard's signed envelopes (``fleet/``) and Sparkplug B
(``sparkplug/``: the payload codec over its own ``.proto``, NBIRTH/NDATA/NDEATH, topics,
the Primary Host's STATE).

May import: ``agent.model``, ``agent.core`` (the telemetry records carry the cores' events)
and other ``agent.protocol`` modules; msgpack; cryptography (the envelopes' Ed25519);
protobuf (``google``) in ``sparkplug/`` only, which nothing outside the fleet transport
imports (protobuf comes with the optional ``twinguard[fleet]`` extra). No pymodbus (the
watchdog's frames come from the master's own codec; pymodbus checks them in the tests), no
I/O, clock or threads (no time, asyncio, socket, ssl, sqlite3, threading, select,
subprocess, signal, serial, gpiozero, firmware_bridge). ``tests/test_layering.py`` enforces it.
"""
