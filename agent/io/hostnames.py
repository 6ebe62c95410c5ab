"""Host names as the socket and ssl modules take them without the idna codec.

``socket.getaddrinfo`` and ``ssl`` encode a ``str`` host name with the ``idna`` codec,
which imports ``encodings.idna``, ``stringprep`` and ``unicodedata`` (about 1.1 MB, resident
for good once the agent's memory is locked) even for a plain ASCII name or an IP address.
Both take bytes as well: an ASCII name is handed over as its ASCII bytes (the same bytes on
the wire, the same certificate check); any other name stays a ``str`` and gets idna.
"""

from __future__ import annotations


def ascii_host(name: str) -> str | bytes:
    """``name`` as ASCII bytes where it is ASCII, else unchanged."""
    return name.encode("ascii") if name.isascii() else name
