"""io: the adapters, thin, each the one place its piece of hardware or the OS is touched.

Lives here: the Modbus master's transports, one request at a time and the PLC client
(``modbus/``), the runtime's side of the PLC (``plant``: one lock, one I/O budget per tick,
the PLC's communication watchdog, the stale-write gate), the native guard that arms
``firmware_bridge``'s watchdog (``guard``), the twin link over TLS (``twin/``) and over an
MQTT 5 broker (``fleet/``: aiomqtt, from the ``twinguard[fleet]`` extra), the operator's
panel (``panel/``: LEDs, reset button, sd_notify), the local status socket
(``status_socket``), and the stores: the telemetry spool (``spool/``), the audit log
(``audit``), the configuration store (``configstore``) and the demo PKI (``pki``).

May import: ``agent.model``, ``agent.core``, ``agent.protocol``, other ``agent.io`` modules,
``agent`` itself (the version), ``firmware_bridge`` and any library; never
``agent.config``'s parsers' callers above it (``agent.runtime``, ``agent.cli``) nor ``sim``.
``tests/test_layering.py`` enforces it.
"""
