"""The local status socket: what ``twinguard status`` shows and where ``twinguard ack`` lands.

The agent listens on nothing but this Unix socket, ``<state_dir>/twinguard.sock``. File
permissions are the access control: the state directory is 0750 and the socket 0660, so
only the agent's user and members of its group can connect; anyone else's ``connect()``
fails with EACCES before the agent reads a byte. The socket is bound inside a private
0700 directory, chmod-ed to 0660 and then renamed into place, so it is never reachable
with wider permissions (no process-wide umask change, no window).

Wire: one request per connection, each message one line of UTF-8 JSON ending in ``\\n``::

    client                                        agent
      {"cmd": "status"}                      ──▶
                                             ◀──  StatusSnapshot.to_dict()
      {"cmd": "ack"}                         ──▶
                                             ◀──  {"accepted": true|false, "reason": "..."}
      {"cmd": "drill", "scenario": "trip",   ──▶
       "target": "overtemperature"|null}
                                             ◀──  DrillReport.to_dict()
                                                  or {"error": "..."} (unknown scenario,
                                                  one already running, no drills here)
      anything else (bad JSON, unknown cmd,  ──▶
      unknown key, too long, too slow)       ◀──  {"error": "..."}
    then the agent closes the connection.

Limits: a request line of at most :data:`MAX_REQUEST_BYTES`, sent within
:data:`REQUEST_TIMEOUT_S`; at most :data:`MAX_CLIENTS` connections at once (more are told
"busy"). Every bad request is answered with an error, counted (:class:`SocketStatus`) and
logged; nothing a client sends can raise out of the server or stop the agent's loop.

Ack audit: the ack's ``source`` is the transport's, never the client's word: an ack over
this socket is :data:`SOURCE` (``"console"``), told apart from the reset button (``button``)
that only the GPIO adapter reports. A request naming another ``source`` (``"button"``) is
refused with an error and reaches nothing; ``"source": "console"`` is still accepted from
older clients. The peer's credentials (SO_PEERCRED: pid, uid, gid) are read for every
connection; an ack is logged at WARNING with them and passed to the ``ack`` callable as
``who`` (``"pid=123 uid=0(root) gid=0(root)"``) for the audit log.

Drill: a fault drill (``twinguard drill --scenario``) is rehearsed by the ``drill`` callable
in the agent's decision core only (``agent.runtime.drill``); the reply waits for its report
(it runs in slices on the loop: a few hundred milliseconds, longer on a slow board). The
peer's credentials go to it as ``who``, as for an ack, for the audit log. ``DrillRefused``
from it is answered as an error with its message.

The ``snapshot`` callable runs on the agent's loop and must be cheap (no I/O);
``agent.runtime.snapshot.build_snapshot`` makes one from the controller and the adapters'
counters. The snapshot model is frozen data in :mod:`agent.model.status`:
:meth:`StatusSnapshot.to_dict` and :func:`snapshot_from_dict` are exact inverses
(non-finite floats travel as null: JSON has no NaN).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import os
import pwd
import shutil
import socket
import stat
import struct
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent.model.errors import DrillRefused, StatusSocketError, StatusSocketInUse
from agent.model.status import SocketStatus, StatusSnapshot

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024
REQUEST_TIMEOUT_S = 2.0
MAX_CLIENTS = 8
MAX_PATH_BYTES = 107  # sun_path is 108 bytes on Linux, with its NUL
DIR_MODE = 0o750
SOCKET_MODE = 0o660
SOURCE = "console"  # what an ack over this socket is, whoever sends it

AckHandler = Callable[[str, str], Awaitable[tuple[bool, str]]]
# (scenario, target or None, who) -> the report as a JSON object
DrillHandler = Callable[[str, str | None, str], Awaitable[Mapping[str, Any]]]
_KEYS = {"status": {"cmd"}, "ack": {"cmd", "source"}, "drill": {"cmd", "scenario", "target"}}


# --- the server ------------------------------------------------------------------------------

def peer_credentials(sock: Any) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def describe_peer(creds: tuple[int, int, int] | None) -> str:
    """``pid=123 uid=0(root) gid=0(root)`` (names where the system knows them)."""
    if creds is None:
        return "peer unknown"
    pid, uid, gid = creds
    try:
        user = f"({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        user = ""
    try:
        group = f"({grp.getgrgid(gid).gr_name})"
    except KeyError:
        group = ""
    return f"pid={pid} uid={uid}{user} gid={gid}{group}"


class _BadRequest(Exception):
    pass


class StatusServer:
    """The asyncio Unix-socket server; see the module docstring for the protocol.

    ``snapshot()`` returns the current :class:`StatusSnapshot` (cheap, no I/O);
    ``ack(source, who)`` performs an operator reset and returns ``(accepted, reason)``;
    it must finish promptly (it runs while the client waits). ``drill(scenario, target,
    who)`` rehearses a fault drill and returns its report (None: the agent offers none).
    Exceptions from these are a bug (``DrillRefused`` from ``drill`` excepted): logged,
    counted in ``errors`` and answered with an error, never propagated.
    """

    def __init__(self, path: Path, snapshot: Callable[[], StatusSnapshot], ack: AckHandler,
                 *, max_clients: int = MAX_CLIENTS,
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 drill: DrillHandler | None = None) -> None:
        self.path = Path(path)
        self._snapshot = snapshot
        self._ack = ack
        self._drill = drill
        self._max_clients = max_clients
        self._timeout = request_timeout_s
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._active = 0
        self._counts = dict.fromkeys(
            (f.name for f in dataclasses.fields(SocketStatus)), 0)

    @property
    def stats(self) -> SocketStatus:
        return SocketStatus(**self._counts)

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the directory (0750) and the socket (0660) and start serving.

        Raises :class:`StatusSocketInUse` if another agent answers on the socket, and
        :class:`StatusSocketError` if the path exists and is not a socket or the OS refuses
        (path too long, permissions). A stale socket (nothing listening) is replaced.
        """
        if len(os.fsencode(self.path)) > MAX_PATH_BYTES:
            raise StatusSocketError(
                f"{self.path}: socket path too long (max {MAX_PATH_BYTES} bytes)")
        try:
            _prepare_dir(self.path.parent)
            await self._refuse_if_live()
            sock = _bind_private(self.path)
            self._inode = os.stat(self.path).st_ino
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST_BYTES)
        except StatusSocketError:
            raise
        except OSError as exc:
            raise StatusSocketError(f"{self.path}: cannot serve status: {exc}") from exc
        log.info("status socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop serving and remove the socket file (only if it is still ours)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._inode = None

    async def _refuse_if_live(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StatusSocketError(f"{self.path}: exists and is not a socket; not touching it")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), 1.0)
        except (OSError, TimeoutError):
            log.info("removing stale status socket %s", self.path)
            return
        writer.close()
        raise StatusSocketInUse(f"{self.path}: another agent is serving status here")

    def _count(self, name: str) -> None:
        self._counts[name] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count("connections")
        self._active += 1
        who = describe_peer(peer_credentials(writer.get_extra_info("socket")))
        try:
            if self._active > self._max_clients:
                self._count("busy")
                log.warning("status socket: busy, refusing %s", who)
                reply: Mapping[str, Any] = {"error": "busy: too many status clients"}
            else:
                reply = await self._answer(reader, who)
            try:
                data = json.dumps(reply, allow_nan=False).encode() + b"\n"
            except (TypeError, ValueError):  # a provider bug: a value JSON cannot carry
                self._count("errors")
                log.exception("status socket: reply for %s is not JSON", who)
                data = b'{"error": "internal error in the agent (see its log)"}\n'
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self._timeout)
        except (ConnectionError, TimeoutError) as exc:
            log.info("status socket: client %s went away: %r", who, exc)
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self._timeout)

    async def _answer(self, reader: asyncio.StreamReader, who: str) -> Mapping[str, Any]:
        try:
            request = await self._read_request(reader)
        except _BadRequest as exc:
            self._count("bad_requests")
            log.warning("status socket: bad request from %s: %s", who, exc)
            return {"error": str(exc)}
        try:
            if request.get("cmd") == "status":
                self._count("status_requests")
                snap = dataclasses.replace(self._snapshot(), socket=self.stats)
                return snap.to_dict()
            if request.get("cmd") == "drill":
                return await self._drill_reply(request, who)
            self._count("acks")
            source = SOURCE
            log.info("ack from %s by %s: asking the agent", source, who)
            accepted, reason = await self._ack(source, who)
        except Exception:  # a bug in a callable must not take the agent down
            self._count("errors")
            log.exception("status socket: %s request from %s failed", request.get("cmd"), who)
            return {"error": "internal error in the agent (see its log)"}
        log.warning("ack from %s by %s: %s (%s)", source, who,
                    "accepted" if accepted else "refused", reason)
        return {"accepted": bool(accepted), "reason": str(reason)}

    async def _read_request(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        """One request line, checked; raises _BadRequest with the reply's text."""
        try:
            line = await asyncio.wait_for(reader.readline(), self._timeout)
        except TimeoutError:
            raise _BadRequest(f"no request within {self._timeout:g} s") from None
        except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
            raise _BadRequest(f"request longer than {MAX_REQUEST_BYTES} bytes") from None
        if not line.strip():
            raise _BadRequest("empty request")
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            raise _BadRequest("request is not UTF-8 JSON") from None
        if not isinstance(request, dict):
            raise _BadRequest("request must be a JSON object")
        cmd = request.get("cmd")
        allowed = _KEYS.get(cmd) if isinstance(cmd, str) else None
        if allowed is None:
            raise _BadRequest(f"unknown cmd {cmd!r}: expected 'status', 'ack' or 'drill'")
        extra = sorted(set(request) - allowed)
        if extra:
            raise _BadRequest(f"unknown key(s) for {cmd}: {', '.join(extra)}")
        if cmd == "drill" and not (isinstance(request.get("scenario"), str) and isinstance(
                request.get("target"), str | None)):
            raise _BadRequest("a drill needs 'scenario' (a string) and 'target' (a string "
                              "or null)")
        if cmd == "ack" and request.get("source", SOURCE) != SOURCE:
            raise _BadRequest(f"an ack over the status socket is from {SOURCE!r}; its "
                              "source is not the client's to choose")
        return request


    async def _drill_reply(self, request: Mapping[str, Any], who: str) -> Mapping[str, Any]:
        self._count("drills")
        scenario, target = request["scenario"], request.get("target")
        if self._drill is None:
            return {"error": "this agent offers no drills"}
        log.warning("drill %s (target %s) asked by %s: rehearsing in the decision core "
                    "only", scenario, target, who)
        try:
            return await self._drill(scenario, target, who)
        except DrillRefused as exc:
            log.warning("drill %s from %s refused: %s", scenario, who, exc)
            return {"error": str(exc)}


def _prepare_dir(directory: Path) -> None:
    """Make the state directory 0750 if it is ours (and not a shared sticky directory)."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    st = directory.stat()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == os.geteuid() and not mode & stat.S_ISVTX:
        if mode & 0o027:
            os.chmod(directory, mode & ~0o027)
            log.warning("state directory %s was %03o, now %03o", directory, mode, mode & ~0o027)
    elif mode & 0o007:
        log.warning("state directory %s is open to others (%03o); the socket's 0660 is the "
                    "only guard", directory, mode)


def _bind_private(path: Path) -> socket.socket:
    """A socket bound at ``path`` with mode 0660, never reachable with wider permissions:
    bound in a fresh 0700 directory, chmod-ed, then renamed into place."""
    private = tempfile.mkdtemp(prefix=".s", dir=path.parent)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            tmp = os.path.join(private, "s")
            sock.bind(tmp)
            os.chmod(tmp, SOCKET_MODE)
            os.replace(tmp, path)
        except BaseException:
            sock.close()
            raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return sock
