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
    staged                "N\\n"  the journal: version N is being stored and is not in force
                                 yet (present only between ``stage`` and ``commit``/``abandon``)

Every file is written atomically: a temporary file in the same directory, ``fsync``,
``os.replace``, then ``fsync`` of the directory. A version's files are complete and synced
before ``current`` points at them, so a power cut at any moment leaves ``current`` naming
either the old or the new configuration, never a torn one. Only the last ``keep`` versions
are kept (plus ``current``, ``good`` and ``staged``), each version's ``.bundle`` with its
``.toml``.

Installing version N is a small journal, so that whoever audits it (the caller, between
``stage`` and ``commit``) can never be outrun by a crash:

1. ``record_version(N)``: ``counter`` = N (N is burnt from here on, whatever happens);
2. ``stage(N, ...)``: ``staged`` = N, then the ``.bundle``, then the ``.toml``;
3. the caller makes its durable record (the audit log's ``bundle_accepted``);
4. ``commit(N)``: ``current`` = N, ``staged`` removed, old versions pruned
   (or ``abandon(N)``: N's files and ``staged`` removed; ``current`` never moved).

``recover()``, called once at start by the one writer (the agent, never a reader such as the
CLI), removes what a crash left (``.*.tmp`` files, a ``.bundle`` whose ``.toml`` never came)
and returns the staged version still to settle: the caller commits it if its record was
made, abandons it otherwise. ``install`` = ``stage`` + ``commit`` and ``accept`` =
``record_version`` + ``install`` are for callers without a record to make. ``revert`` points
``current`` back at ``good``. ``OSError`` from the file system propagates (the caller
refuses the bundle); ``ValueError`` means the caller broke the contract (a version not
above the counter).
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
_ANY_VERSION_FILE = re.compile(r"v(\d{10})\.(?:toml|bundle)")
_SUFFIXES = (".toml", ".bundle")


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

    def recover(self) -> int:
        """Clean up after a crash (the one writer, at start); returns the staged version the
        caller must ``commit`` or ``abandon`` (0: none). See the module docstring."""
        for stale in self.directory.glob(".*.tmp"):  # left by a crash mid-write
            with contextlib.suppress(OSError):
                stale.unlink()
        staged = self.staged_version
        if staged and staged == self.current_version:  # stopped between commit's two steps
            self._drop("staged")
            staged = 0
        for version in self._all_versions():
            bundle = self.path_of(version).with_suffix(".bundle")
            if version != staged and bundle.exists() and not self.path_of(version).exists():
                log.warning("configuration store: removing %s (its configuration was never "
                            "written)", bundle.name)
                bundle.unlink()
        _fsync_dir(self.directory)
        return staged

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

    def _drop(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).unlink()
        _fsync_dir(self.directory)

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

    @property
    def staged_version(self) -> int:
        """The version being stored and not in force yet (0: none)."""
        return self._read_int("staged")

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

    def _all_versions(self) -> list[int]:
        found = (_ANY_VERSION_FILE.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted({int(m[1]) for m in found if m})

    def bundle_of(self, version: int) -> bytes | None:
        """The signed bundle version ``version`` came in (None if it was stored without)."""
        try:
            return self.path_of(version).with_suffix(".bundle").read_bytes()
        except FileNotFoundError:
            return None

    # --- changes -------------------------------------------------------------------------

    def record_version(self, version: int) -> None:
        """Persist ``version`` as the highest accepted; ValueError if not above it."""
        last = self.last_version
        if version <= last:
            raise ValueError(f"version {version} is not above the last version {last}")
        self._write_int("counter", version)

    def stage(self, version: int, text: str, bundle: bytes | None = None) -> StoredConfig:
        """Write version ``version`` (its counter recorded) without putting it in force."""
        if version > self._read_int("counter"):
            raise ValueError(f"version {version} was not recorded before install")
        self._write_int("staged", version)
        path = self.path_of(version)
        if bundle is not None:
            atomic_write(path.with_suffix(".bundle"), bundle)
        atomic_write(path, text.encode("utf-8"))
        return StoredConfig(version, text, path)

    def commit(self, version: int) -> None:
        """Put the staged version ``version`` in force (ValueError if it is not staged)."""
        if version != self.staged_version or not self.path_of(version).exists():
            raise ValueError(f"version {version} is not staged")
        self._write_int("current", version)
        self._drop("staged")
        log.info("configuration version %d installed", version)
        self._prune()

    def abandon(self, version: int) -> None:
        """Remove the staged version ``version``: it never came in force; its number stays
        burnt (the counter is not lowered)."""
        if version != self.staged_version:
            raise ValueError(f"version {version} is not staged")
        for suffix in _SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                self.path_of(version).with_suffix(suffix).unlink()
        self._drop("staged")
        log.warning("configuration version %d abandoned before it came in force", version)

    def install(self, version: int, text: str, bundle: bytes | None = None) -> StoredConfig:
        """``stage`` then ``commit``: write version ``version`` and make it current."""
        stored = self.stage(version, text, bundle)
        self.commit(version)
        return stored

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
        """Keep the last ``keep`` versions (and current, good, staged); every other version's
        files go, its ``.bundle`` with its ``.toml`` (and a ``.bundle`` without one)."""
        keep = set(self.versions()[-self.keep:]) | {self.current_version, self.good_version,
                                                     self.staged_version}
        for version in self._all_versions():
            if version not in keep:
                for suffix in _SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        self.path_of(version).with_suffix(suffix).unlink()
        _fsync_dir(self.directory)
