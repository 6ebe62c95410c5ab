"""A real mosquitto on loopback, for tests, CI and the fleet benchmark.

    with Broker(workdir, group_id="plant", host_id="twin") as broker:
        ctx = broker.pki.client_context("sim-tank-01")     # a device's TLS context
        ...                                                 # connect to 127.0.0.1:broker.port
        broker.freeze(); broker.thaw(); broker.kill(); broker.start()

    with BridgedPair(workdir) as pair:     # agents on pair.plant, the twin on pair.site
        ...

Everything lives in ``workdir``: ``mosquitto.conf``, ``twinguard.acl`` (:mod:`sim.broker.acl`),
``mosquitto.log`` (the broker's stderr: log lines and configuration errors), ``db/`` (the
persistence directory, kept across :meth:`Broker.start` after a stop or kill) and ``pki/``
(:class:`sim.broker.pki.FleetPki`, unless one is passed in: a bridged pair shares one).

Readiness: :meth:`Broker.start` returns once the log says ``mosquitto version … running``
(logged after the listener is open) and a TCP connection to the port succeeds, within
``ready_timeout_s``; otherwise the process is killed and :class:`BrokerError` carries the
log's tail. The port is chosen free at the first start (a bind to port 0, then released:
another process may take it in between, so a start that fails with "Address already in
use" picks another, three times) and kept after. Stopping is by PID: SIGTERM, then SIGKILL.
The readiness check's bare TCP connection shows in the log as ``Client connection from
127.0.0.1 failed: ... unexpected eof``. The broker's soft RLIMIT_NOFILE is raised to its
hard limit at start (a thousand TLS clients need more than 1024 descriptors; a client
process holding that many connections must raise its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from sim.bench.procstat import ProcSample, Window, read_proc, sample_window
from sim.broker.acl import HOST_USER, acl_text
from sim.broker.binary import BrokerBinary, BrokerUnavailable, locate
from sim.broker.conf import LOG_TYPES, BridgeSpec, mosquitto_conf
from sim.broker.pki import FleetPki
from sim.stack import Proc

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
RUNNING = re.compile(r"mosquitto version \S+ running")


class BrokerError(RuntimeError):
    """The broker did not start, stop or bridge as expected (the message has the log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def proc_state(pid: int) -> str:
    """The process's state letter from ``/proc/PID/stat`` (R, S, T stopped, Z ...; "" if
    it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Managed:
    """``with`` starts, leaving closes (also when starting fails)."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Broker(_Managed):
    """One mosquitto process; see the module docstring. Does not start until
    :meth:`start` or ``with``.

    ``group_id``/``host_id``: the Sparkplug group and the host whose topics the ACL grants;
    ``bridge_users``: CNs of bridges allowed in (the site side of a :class:`BridgedPair`);
    ``bridge``: make this broker a bridge to another (the plant side);
    ``persistence``: keep retained messages in ``workdir/db`` across restarts;
    ``log_types``: mosquitto's ``log_type`` list (``information`` is always added: readiness
    reads it); ``binary``: a :class:`BrokerBinary` (default :func:`locate`; BrokerUnavailable
    if there is none).
    """

    def __init__(self, workdir: Path | None = None, *, group_id: str = "plant",
                 host_id: str = "twin", host_user: str = HOST_USER,
                 pki: FleetPki | None = None, port: int = 0,
                 persistence: bool = True, bridge_users: tuple[str, ...] = (),
                 bridge: BridgeSpec | None = None, log_types: tuple[str, ...] = LOG_TYPES,
                 binary: BrokerBinary | None = None, name: str = "broker",
                 ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        found = binary or locate()
        if found is None:
            raise BrokerUnavailable("no mosquitto: run `python -m sim.broker fetch` "
                                    "(Debian's package, unpacked) or put one on PATH")
        self.binary = found
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix=f"{name}-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.group_id = group_id
        self.host_id = host_id
        self.host_user = host_user
        self.pki = pki or FleetPki(self.workdir / "pki")
        self.port = port
        self._port_fixed = port != 0
        self.persistence_dir = self.workdir / "db" if persistence else None
        self.bridge_users = bridge_users
        self.bridge = bridge
        self.log_types = tuple(dict.fromkeys((*log_types, "information")))
        self.ready_timeout_s = ready_timeout_s
        self.conf_path = self.workdir / "mosquitto.conf"
        self.acl_path = self.workdir / "twinguard.acl"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: Proc | None = None
        self.frozen = False

    # --- configuration -----------------------------------------------------------------

    def write_config(self) -> None:
        """(Re)write the ACL and the configuration for the current port."""
        self.acl_path.write_text(acl_text(self.group_id, self.host_id, host_user=self.host_user,
                                          bridge_users=self.bridge_users))
        if self.persistence_dir is not None:
            self.persistence_dir.mkdir(exist_ok=True)
        self.conf_path.write_text(mosquitto_conf(
            port=self.port, tls=self.pki.server_tls(), acl_file=self.acl_path,
            persistence_dir=self.persistence_dir,
            user="root" if os.geteuid() == 0 else None,  # root reads the 0600 keys
            log_types=self.log_types, bridge=self.bridge))

    # --- process -----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BrokerError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self) -> None:
        """Start mosquitto and wait until it is ready (module docstring); BrokerError
        with the log's tail if it is not within ``ready_timeout_s``."""
        if self.alive():
            raise BrokerError(f"{self.name} is already running (pid {self.pid})")
        for attempt in range(3):
            if not self._port_fixed and (self.port == 0 or attempt > 0):
                self.port = free_port()
            self.write_config()
            offset = self.log_size()
            self.proc = Proc([str(self.binary.path), "-c", str(self.conf_path)], self.log_path,
                             ready=False, env=self.binary.env())
            self._raise_fd_limit()
            self.frozen = False
            try:
                self._wait_ready(offset)
                log.info("%s: mosquitto %s pid %d on 127.0.0.1:%d", self.name,
                         self.binary.version, self.proc.pid, self.port)
                return
            except BrokerError:
                in_use = "Address already in use" in self.log_since(offset)
                if not in_use or self._port_fixed or attempt == 2:
                    raise

    def _raise_fd_limit(self) -> None:
        """Soft RLIMIT_NOFILE up to the hard limit: a thousand TLS clients need more
        than the usual 1024 descriptors."""
        with contextlib.suppress(OSError, ValueError):
            _, hard = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (hard, hard))

    def _wait_ready(self, offset: int) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.proc is not None and not self.proc.alive():
                raise BrokerError(f"{self.name} exited with {self.proc.proc.returncode} while "
                                  f"starting:\n{self.log_tail(offset)}")
            if RUNNING.search(self.log_since(offset)) and _accepts(self.port):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"{self.name} not ready within {self.ready_timeout_s} s "
                                  f"on port {self.port}:\n{self.log_tail(offset)}")
            time.sleep(0.02)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (a frozen broker is thawed first) and wait; SIGKILL after ``timeout_s``.
        The exit status (None if it had to be killed or was not running)."""
        if self.proc is None or not self.alive():
            return None
        self.thaw()
        return self.proc.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL now and reap: clients see their connection reset at once."""
        if self.proc is not None and self.alive():
            self.proc.kill()
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP: the broker holds its sockets open and answers nothing (a hung broker).
        Returns once ``/proc`` shows it stopped (the signal is delivered asynchronously)."""
        if self.alive():
            os.kill(self.pid, signal.SIGSTOP)
            self.frozen = True
            self._wait_proc_state(lambda state: state == "T", "stopped")

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`; returns once ``/proc`` shows it running again."""
        if self.alive() and self.frozen:
            os.kill(self.pid, signal.SIGCONT)
            self._wait_proc_state(lambda state: state != "T", "running again")
        self.frozen = False

    def _wait_proc_state(self, cond: Callable[[str], bool], what: str) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not cond(proc_state(self.pid)):
            if time.monotonic() > deadline:
                raise BrokerError(f"{self.name} (pid {self.pid}) not {what} within "
                                  f"{STOP_TIMEOUT_S} s")
            time.sleep(0.002)

    def restart(self) -> None:
        """Stop (SIGTERM: persistence is saved) and start again on the same port."""
        self.stop()
        self._port_fixed = True
        self.start()

    # --- observation -------------------------------------------------------------------

    def log_since(self, offset: int = 0) -> str:
        """The log from byte ``offset`` on ("" if there is none yet)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, offset: int = 0, n: int = 3000) -> str:
        return self.log_since(offset)[-n:]

    def log_size(self) -> int:
        """The log's length now: pass it to :meth:`log_since` to read what comes after."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def wait_log(self, pattern: str, timeout_s: float, *, offset: int = 0) -> re.Match[str]:
        """The first match of regex ``pattern`` in the log after ``offset``, waited for
        up to ``timeout_s``; BrokerError with the log's tail if it does not appear."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            if found := regex.search(self.log_since(offset)):
                return found
            if time.monotonic() > deadline:
                raise BrokerError(f"{self.name}: no {pattern!r} in the log within "
                                  f"{timeout_s} s:\n{self.log_tail(offset)}")
            time.sleep(0.02)

    def proc_sample(self) -> ProcSample:
        """CPU ticks so far and resident memory, from ``/proc`` (ProcessGone if it exited)."""
        return read_proc(self.pid, time.monotonic())

    def sample(self, window_s: float) -> Window:
        """CPU % and largest RSS over the next ``window_s`` seconds."""
        return sample_window(self.pid, window_s)

    # --- context -----------------------------------------------------------------------

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class BridgedPair(_Managed):
    """A site broker (the twin's, ``site``) and a plant broker (the agents', ``plant``)
    bridged to it over TLS with the bridge's own certificate (CN ``bridge_name``), sharing
    one PKI. Ready once the site has seen the bridge subscribe to every ``in`` topic."""

    def __init__(self, workdir: Path | None = None, *, group_id: str = "plant",
                 host_id: str = "twin", bridge_name: str = "plant-bridge",
                 persistence: bool = True, log_types: tuple[str, ...] = LOG_TYPES,
                 binary: BrokerBinary | None = None) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="bridged-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.pki = FleetPki(self.workdir / "pki")
        self.bridge_name = bridge_name
        self.group_id, self.host_id = group_id, host_id
        self._persistence, self._log_types, self._binary = persistence, log_types, binary
        self.site = self._broker("site", bridge_users=(bridge_name,))
        self.plant: Broker | None = None

    def _broker(self, name: str, *, bridge_users: tuple[str, ...] = (),
                bridge: BridgeSpec | None = None) -> Broker:
        return Broker(self.workdir / name, group_id=self.group_id, host_id=self.host_id,
                      pki=self.pki, persistence=self._persistence, bridge_users=bridge_users,
                      bridge=bridge, log_types=(*self._log_types, "subscribe"),
                      binary=self._binary, name=name)

    def start(self) -> None:
        """Start the site, then the plant with its bridge, and wait for the bridge."""
        self.site.start()
        offset = self.site.log_size()
        spec = BridgeSpec(name=self.bridge_name, address="127.0.0.1", port=self.site.port,
                          tls=self.pki.client(self.bridge_name), group_id=self.group_id,
                          host_id=self.host_id)
        self.plant = self._broker("plant", bridge=spec)
        self.plant.start()
        self.wait_bridge(offset)

    def wait_bridge(self, offset: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the site's log after ``offset`` shows the bridge subscribed to its
        last ``in`` topic (BrokerError otherwise)."""
        assert self.plant is not None and self.plant.bridge is not None
        last_in = [t for t, d, _ in self.plant.bridge.topics() if d == "in"][-1]
        self.site.wait_log(rf"{re.escape(self.bridge_name)} \d {re.escape(last_in)}",
                           timeout_s, offset=offset)

    def close(self) -> None:
        if self.plant is not None:
            self.plant.close()
        self.site.close()
        if self._tmp is not None:
            self._tmp.cleanup()
