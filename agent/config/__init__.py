"""config: what the plant is and how this agent runs beside it, parsed and checked.

Lives here: the hardware profile's parser and loader (``profile/``), the strict TOML field
reader both parsers share (``fields``), the agent configuration (``agentconfig``), a
configuration's overrides applied to the profile (``effective``), signed configuration
bundles (``bundle``), the role table (``roles``), the evaluation of a pushed bundle
(``push``) and the systemd unit text (``systemd_unit``).

No I/O beyond reading the files it is given (profiles, configuration files, shipped
profiles via importlib.resources); nothing keeps state between calls.

May import: ``agent.model``, other ``agent.config`` modules, the standard library without
I/O, clock or threads (no time, asyncio, socket, ssl, sqlite3, threading, select,
subprocess, signal), msgpack (the bundle's encoding: bytes, not I/O) and cryptography
(signatures; imported where a signature is made or checked, to keep it out of memory
otherwise). ``tests/test_layering.py`` enforces it.
"""
