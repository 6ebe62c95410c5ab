"""A process that arms a watchdog and then hangs with the GIL held (run by test_watchdog_hang).

    python tests/firmware/watchdog_child.py '<json config>'

Config keys: ``impl`` ("native" | "python"), ``deadline_s``, ``connect`` ([host, port]: a
TCP connection the watchdog writes ``payload_hex`` to), ``reply_timeout_s``, ``files``
([[path, payload_hex], ...]), ``exit_code`` (int or null), ``hang``:

    "gil-read"  a libc read(0) called through ctypes.PyDLL, which keeps the GIL held while it
                blocks: the child hangs until the parent writes one byte to its stdin, then
                prints the watchdog's stats as one JSON line and exits 0.
    "regex"     the catastrophic backtracking regex (a+)+$ on "a"*40 + "b", which holds the
                GIL for hours; only the watchdog's _exit ends the child.

The child prints "ARMED" (one line) right before it hangs.
"""

from __future__ import annotations

import ctypes
import json
import re
import socket
import sys


def main() -> int:
    cfg = json.loads(sys.argv[1])
    if cfg["impl"] == "native":
        from firmware_bridge.native import Watchdog
    else:
        from firmware_bridge.pywatchdog import Watchdog  # type: ignore[assignment]

    wd = Watchdog()
    sock = socket.create_connection(tuple(cfg["connect"]))
    wd.arm(
        cfg["deadline_s"],
        fd_writes=[(sock.fileno(), bytes.fromhex(cfg["payload_hex"]))],
        reply_timeout_s=cfg["reply_timeout_s"],
        file_writes=[(path, bytes.fromhex(data)) for path, data in cfg["files"]],
        exit_code=cfg["exit_code"],
    )
    sock.close()  # the watchdog holds its own dup of the fd
    print("ARMED", flush=True)
    if cfg["hang"] == "gil-read":
        libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
        buf = ctypes.create_string_buffer(1)
        libc.read(0, buf, 1)
    else:
        re.match(r"(a+)+$", "a" * 40 + "b")
    print(json.dumps(wd.stats()), flush=True)
    wd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
