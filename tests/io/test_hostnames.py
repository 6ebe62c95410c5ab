"""ascii_host: an ASCII name resolves without the idna codec (unicodedata stays out)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.io.hostnames import ascii_host

pytestmark = pytest.mark.timeout(30)

PROBE = """
import socket, sys
from agent.io.hostnames import ascii_host
host = {host!r}
socket.getaddrinfo(ascii_host(host) if {wrapped} else host, 80, type=socket.SOCK_STREAM)
print("encodings.idna" in sys.modules, "unicodedata" in sys.modules)
"""


def test_ascii_names_become_their_bytes_others_stay() -> None:
    assert ascii_host("plc-1.example.com") == b"plc-1.example.com"
    assert ascii_host("127.0.0.1") == b"127.0.0.1"
    assert ascii_host("bücher.example") == "bücher.example"


@pytest.mark.parametrize(("wrapped", "idna"), [(True, "False False"), (False, "True True")])
def test_getaddrinfo_of_an_ascii_name_needs_no_idna(wrapped: bool, idna: str) -> None:
    """A real resolution in a fresh interpreter: through ascii_host no idna codec is loaded;
    the same name as a str loads it (and unicodedata with it)."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(host="localhost", wrapped=wrapped)],
                         capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout.split("\n")[0] == idna, out.stderr
