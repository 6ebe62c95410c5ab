"""The configuration store: pushed configurations on disk, crash-safe (the adapter).

Layout, in ``STATE_DIR/config`` (mode 0700)::

    counter               "N\\n"  highest bundle version ever accepted; written BEFORE the
                                 config is installed, so a replay or rollback is refused
                                 even after a crash or a restart
    v0000000007.toml             the configuration text of version 7 (never modified)
    v0000000007.bundle           the signed bundle it came in (for audit / re-verification)
    current               "N\\n"  the version in force; 0 = the factory ``--config`` file
    good                  "N\\n"  the last version confirmed good (twin ALIVE again within
                                 the confirmation window); 0 = factory

Every file is written atomically: a temporary file in the same directory, ``fsync``,
``os.replace``, then ``fsync`` of the directory. A version's files are complete and synced
before ``current`` points at them, so a power cut at any moment leaves ``current`` naming
either the old or the new configuration, never a torn one. Only the last ``keep`` versions
are kept (plus ``current`` and ``good``).

``accept`` = ``record_version`` then ``install``. ``revert`` points ``current`` back at
``good``. ``OSError`` from the file system propagates (the caller refuses the bundle);
``ValueError`` means the caller broke the contract (a version not above the counter).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfigStore", "StoredConfig", "atomic_write"]

log = logging.getLogger(__name__)

_VERSION_FILE = re.compile(r"v(\d{10})\.toml")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class StoredConfig:
    version: int
    text: str
    path: Path


class ConfigStore:
    """Pushed configurations under ``directory``; see the module docstring."""

    def __init__(self, directory: Path, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp"):  # left by a crash mid-write
            with contextlib.suppress(OSError):
                stale.unlink()

    # --- pointers ------------------------------------------------------------------------

    def _read_int(self, name: str) -> int:
        try:
            text = (self.directory / name).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise ValueError(f"{self.directory / name}: not a version number: {text[:20]!r}")
        return int(text)

    def _write_int(self, name: str, value: int) -> None:
        atomic_write(self.directory / name, f"{value}\n".encode())

    @property
    def last_version(self) -> int:
        """The highest version ever accepted (0 if none)."""
        return max(self._read_int("counter"), self.current_version)

    @property
    def current_version(self) -> int:
        return self._read_int("current")

    @property
    def good_version(self) -> int:
        return self._read_int("good")

    def path_of(self, version: int) -> Path:
        return self.directory / f"v{version:010d}.toml"

    def _load(self, version: int) -> StoredConfig | None:
        if version == 0:
            return None
        path = self.path_of(version)
        return StoredConfig(version, path.read_text(encoding="utf-8"), path)

    def current(self) -> StoredConfig | None:
        """The configuration in force, or None for the factory ``--config``."""
        return self._load(self.current_version)

    def good(self) -> StoredConfig | None:
        """The last configuration confirmed good, or None for the factory one."""
        return self._load(self.good_version)

    def versions(self) -> list[int]:
        """Versions whose configuration file is on disk, ascending."""
        found = (_VERSION_FILE.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted(int(m[1]) for m in found if m)

    # --- changes -------------------------------------------------------------------------

    def record_version(self, version: int) -> None:
        """Persist ``version`` as the highest accepted; ValueError if not above it."""
        last = self.last_version
        if version <= last:
            raise ValueError(f"version {version} is not above the last version {last}")
        self._write_int("counter", version)

    def install(self, version: int, text: str, bundle: bytes | None = None) -> StoredConfig:
        """Write version ``version`` and make it current (its counter must be recorded)."""
        if version > self._read_int("counter"):
            raise ValueError(f"version {version} was not recorded before install")
        path = self.path_of(version)
        if bundle is not None:
            atomic_write(path.with_suffix(".bundle"), bundle)
        atomic_write(path, text.encode("utf-8"))
        self._write_int("current", version)
        log.info("configuration version %d installed", version)
        self._prune()
        return StoredConfig(version, text, path)

    def accept(self, version: int, text: str, bundle: bytes | None = None) -> StoredConfig:
        """``record_version`` then ``install``: the counter is durable before the config."""
        self.record_version(version)
        return self.install(version, text, bundle)

    def confirm(self, version: int) -> None:
        """Mark ``version`` good (it survived its confirmation window)."""
        if version != self.current_version:
            raise ValueError(f"version {version} is not current ({self.current_version})")
        self._write_int("good", version)
        log.info("configuration version %d confirmed good", version)

    def revert(self) -> StoredConfig | None:
        """Make the last good configuration current again; returns it (None: factory)."""
        good = self.good_version
        bad = self.current_version
        self._write_int("current", good)
        log.warning("configuration version %d reverted to %s", bad,
                    f"version {good}" if good else "the factory configuration")
        return self._load(good)

    def _prune(self) -> None:
        keep = set(self.versions()[-self.keep:]) | {self.current_version, self.good_version}
        for version in self.versions():
            if version not in keep:
                for suffix in (".toml", ".bundle"):
                    with contextlib.suppress(FileNotFoundError):
                        self.path_of(version).with_suffix(suffix).unlink()
        _fsync_dir(self.directory)
