"""The Modbus master's sans-IO codec: ``pdu`` (requests, replies and their checks), ``adu``
(MBAP and RTU framing), ``codec`` (register values <-> engineering values), ``plan`` (which
requests read the signals and write the outputs) and ``frames`` (the native watchdog's
pre-encoded safe-state frames, built with this same codec)."""
