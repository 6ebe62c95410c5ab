"""The Sparkplug bdSeq, persisted (FLEET.md §7.4): ``state_dir/fleet.bdseq``.

Each CONNECT carries a Will NDEATH with a bdSeq one more than the last CONNECT's (255 wraps
to 0; the first ever is 0), and the NBIRTH of that connection repeats it. The new value is
written to disk (``agent.io.configstore.atomic_write``: temporary file, fsync, rename, fsync of the
directory) *before* the
CONNECT, so a restart after a crash never reuses the bdSeq of a Will the broker may still
publish. A file that cannot be read as a number 0..255 is logged and started over at 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.io.configstore import atomic_write

log = logging.getLogger(__name__)

FILE_NAME = "fleet.bdseq"
MODULUS = 256


class BdSeqStore:
    """The bdSeq file in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def last(self) -> int | None:
        """The bdSeq of the last CONNECT (None: none yet, or an unreadable file)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("fleet: cannot read %s (%s): bdSeq starts over at 0", self.path, exc)
            return None
        if not text.isdigit() or not 0 <= int(text) < MODULUS:
            log.warning("fleet: %s holds %r, not a bdSeq 0..255: starting over at 0",
                        self.path, text[:20])
            return None
        return int(text)

    def advance(self) -> int:
        """The bdSeq for the next CONNECT, durably written before it is returned. OSError
        if it cannot be written (the caller must not connect then)."""
        last = self.last()
        value = 0 if last is None else (last + 1) % MODULUS
        atomic_write(self.path, f"{value}\n".encode("ascii"), 0o640)
        return value
