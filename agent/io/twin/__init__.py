"""The twin link: ``link`` (one mutually authenticated TLS connection to the twin, reconnects,
bounded work per loop turn) and ``settings`` (its settings and TLS context). The protocol is
``agent.protocol.twin``."""
