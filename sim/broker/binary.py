"""Where the mosquitto binary comes from: a system one on ``PATH``, else Debian's package
unpacked into a cache directory (never installed, so no service starts and no 0.0.0.0
listener appears).

:func:`locate` finds a working binary (or returns None); :func:`fetch` makes one available
(``apt-get download`` + ``dpkg -x``), raising :class:`BrokerUnavailable` with a sentence
saying what is missing when it cannot. The cache directory is, in order:

* ``$TWINGUARD_CACHE`` when set (used as given, and then the only one);
* ``/var/cache/twinguard-ci/mosquitto`` when it can be written (CI runs as root);
* ``~/.cache/twinguard/mosquitto``.

:func:`locate` looks in both defaults, so a user that cannot write the CI cache still uses
it.
The unpacked tree is ``<cache>/root`` (``usr/sbin/mosquitto``, ``usr/lib/<multiarch>/``);
``rm -rf`` the cache directory to fetch again. Only the libraries the binary really needs
are unpacked: Debian bookworm's 2.0.11 needs ``libdlt.so.2`` (``libdlt2``) beyond a base
system; ``libmosquitto1`` and ``libcjson1`` serve the clients and the dynamic-security
plugin, which the broker does not load. Any other soname ``ldd`` reports missing is
fetched from :data:`SONAME_PACKAGES` when known, else named in the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "TWINGUARD_CACHE"
CI_CACHE = Path("/var/cache/twinguard-ci/mosquitto")
PACKAGES = ("mosquitto", "libdlt2")
# sonames the broker links against -> the Debian package that ships them (fetched only
# when ldd says one is missing on this machine)
SONAME_PACKAGES = {
    "libdlt.so.2": "libdlt2",
    "libwrap.so.0": "libwrap0",
    "libcjson.so.1": "libcjson1",
    "libmosquitto.so.1": "libmosquitto1",
    "libsystemd.so.0": "libsystemd0",
    "libcap.so.2": "libcap2",
    "libnsl.so.2": "libnsl2",
    "libtirpc.so.3": "libtirpc3",
}
APT_TIMEOUT_S = 180.0


class BrokerUnavailable(RuntimeError):
    """No mosquitto binary can be had; the message says what is missing."""


@dataclass(frozen=True)
class BrokerBinary:
    """A mosquitto that runs: its path, the ``LD_LIBRARY_PATH`` it needs ("" for none),
    its version (``2.0.11``) and where it came from (``system`` or the cache's path)."""

    path: Path
    ld_library_path: str
    version: str
    source: str

    def env(self) -> dict[str, str]:
        """Environment additions to run it with."""
        return {"LD_LIBRARY_PATH": self.ld_library_path} if self.ld_library_path else {}


def cache_dirs() -> list[Path]:
    """Candidate cache directories, in the order of the module docstring; only
    ``$TWINGUARD_CACHE`` when it is set."""
    if os.environ.get(CACHE_ENV):
        return [Path(os.environ[CACHE_ENV])]
    return [CI_CACHE, Path.home() / ".cache" / "twinguard" / "mosquitto"]


def writable_cache_dir() -> Path:
    """The first candidate that exists writable or can be created."""
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
    raise BrokerUnavailable(f"no writable cache directory among {[str(d) for d in cache_dirs()]}")


def _lib_dirs(root: Path) -> str:
    return ":".join(str(p) for p in sorted((root / "usr" / "lib").glob("*-linux-*")))


def _version(path: Path, ld_library_path: str) -> str | None:
    """``mosquitto -h``'s version (it exits non-zero after the usage text), None if it
    does not run (a library missing, a foreign architecture)."""
    env = {**os.environ, "LD_LIBRARY_PATH": ld_library_path} if ld_library_path else None
    try:
        done = subprocess.run([str(path), "-h"], capture_output=True, text=True,  # noqa: S603
                              timeout=10, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"mosquitto version (\S+)", done.stdout + done.stderr)
    return found.group(1) if found else None


def _usable(path: Path, ld_library_path: str, source: str) -> BrokerBinary | None:
    if not path.is_file():
        return None
    version = _version(path, ld_library_path)
    return BrokerBinary(path, ld_library_path, version, source) if version else None


def _cached(cache: Path) -> BrokerBinary | None:
    root = cache / "root"
    return _usable(root / "usr" / "sbin" / "mosquitto", _lib_dirs(root), str(cache))


def locate() -> BrokerBinary | None:
    """A working mosquitto: the system's on ``PATH`` first, then an unpacked one in a
    cache directory; None when there is none."""
    system = shutil.which("mosquitto")
    if system and (found := _usable(Path(system), "", "system")):
        return found
    for d in cache_dirs():
        if found := _cached(d):
            return found
    return None


def _run(argv: Sequence[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,  # noqa: S603
                              timeout=APT_TIMEOUT_S, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except subprocess.TimeoutExpired as exc:
        raise BrokerUnavailable(f"{what} took longer than {APT_TIMEOUT_S:.0f} s") from exc


def _download(packages: Sequence[str], into: Path) -> None:
    """``apt-get download`` into ``into``; once ``apt-get update`` first when apt does not
    know a package (a fresh machine has no package lists) and we are root."""
    done = _run(["apt-get", "download", *packages], into, "apt-get download")
    if done.returncode != 0 and os.geteuid() == 0:
        log.info("apt-get download failed (%s); apt-get update and again",
                 done.stderr.strip().splitlines()[-1:] or "?")
        _run(["apt-get", "update", "-qq"], into, "apt-get update")
        done = _run(["apt-get", "download", *packages], into, "apt-get download")
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        raise BrokerUnavailable(f"apt-get download {' '.join(packages)} failed: {tail}")


def _unpack(debs: Sequence[Path], root: Path) -> None:
    for deb in debs:
        done = _run(["dpkg-deb", "-x", str(deb), str(root)], root, "dpkg-deb -x")
        if done.returncode != 0:
            raise BrokerUnavailable(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")
        deb.unlink()


def missing_sonames(binary: Path, ld_library_path: str) -> list[str]:
    """The libraries ``ldd`` cannot resolve for ``binary`` (with ``ld_library_path``)."""
    env = {**os.environ, "LD_LIBRARY_PATH": ld_library_path}
    try:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,  # noqa: S603, S607
                              timeout=30, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return []  # no ldd: running the binary tells instead
    return [line.split()[0] for line in done.stdout.splitlines() if "not found" in line]


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time; a second finds the first's
        yield


def fetch(cache: Path | None = None, *, force: bool = False) -> BrokerBinary:
    """A working mosquitto, downloading and unpacking Debian's package into ``cache``
    (default :func:`writable_cache_dir`) unless :func:`locate` already finds one (and not
    ``force``). BrokerUnavailable, saying what is missing, when it cannot be had."""
    if not force and (found := (locate() if cache is None else _cached(cache))):
        return found
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise BrokerUnavailable(
                f"{tool} not found (not a Debian system?): install mosquitto 2.x so that "
                "`mosquitto` is on PATH")
    cache = cache or writable_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache):
        root = cache / "root"
        binary = root / "usr" / "sbin" / "mosquitto"
        if not force and (found := _cached(cache)):
            return found  # another fetch made it while we waited for the lock
        with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
            work = Path(tmp)
            new_root = work / "root"
            new_root.mkdir()
            _download(PACKAGES, work)
            _unpack(sorted(work.glob("*.deb")), new_root)
            new_binary = new_root / "usr" / "sbin" / "mosquitto"
            if not new_binary.is_file():
                raise BrokerUnavailable("the mosquitto package has no usr/sbin/mosquitto")
            missing = missing_sonames(new_binary, _lib_dirs(new_root))
            extra = sorted({SONAME_PACKAGES[s] for s in missing if s in SONAME_PACKAGES})
            if extra:
                _download(extra, work)
                _unpack(sorted(work.glob("*.deb")), new_root)
                missing = missing_sonames(new_binary, _lib_dirs(new_root))
            if missing:
                raise BrokerUnavailable(f"mosquitto needs {', '.join(missing)}, which no "
                                        "known Debian package here provides")
            if _version(new_binary, _lib_dirs(new_root)) is None:
                raise BrokerUnavailable(f"the unpacked {new_binary.name} does not run")
            if root.exists():
                shutil.rmtree(root)
            new_root.rename(root)
        found = _cached(cache)
        if found is None:
            raise BrokerUnavailable(f"{binary} does not run after unpacking")
        log.info("mosquitto %s unpacked into %s", found.version, root)
        return found
