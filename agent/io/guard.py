"""The native guard: arms ``firmware_bridge``'s watchdog with the safe state, kicks it per tick.

An adapter (thin). The watchdog thread knows nothing about Modbus; this module hands it, at
arm time, everything a hang needs, prepared with the GIL held:

==============  ==========================================================================
fd_writes       the safe-state request frames (``agent.protocol.modbus.frames.encode_write_frames``,
                MBAP transaction id 65535 on TCP, outside the client's range), on the
                guard's **own** link to the PLC
file_writes     ``board.fault_led`` <- ``board.fault_led_value`` (when the profile has one)
hw_watchdog_fd  ``board.hw_watchdog`` opened O_WRONLY (when the profile has one); fed by the
                watchdog thread while healthy, no longer fed after a fire
exit_code       None by default; ``TWINGUARD_WATCHDOG_EXIT=CODE`` makes a fire ``_exit(CODE)``
                so systemd restarts the agent
==============  ==========================================================================

Deadline: ``profile.timing.watchdog_deadline_s`` after the last :meth:`NativeGuard.kick`,
which the runtime calls at the end of every complete tick, right after the PLC watchdog
heartbeat register write (so, seen from the PLC, deadline = heartbeat write + deadline + the
reply's trip back, a fraction of a millisecond on loopback).

The guard's link to the PLC:

- **TCP**: a second connection to ``host:port`` (a Modbus TCP server accepts several), a
  plain non-blocking socket with TCP_NODELAY and SO_KEEPALIVE, kept open and otherwise idle.
  The watchdog reads the reply to its frames off this connection; leftover bytes are drained
  when the link is checked.
- **RTU**: the serial device opened a second time with pyserial (no lock; the agent's client
  holds the flock) with the profile's line settings. Both share one bus. Choice, and its
  risk: the guard never reads or writes the port from Python; only the watchdog thread
  writes, and only after ``watchdog_deadline_s`` without a complete tick. If the GIL is held
  (the hang this exists for) the agent's client is stopped wherever it was; if only the loop
  is blocked, a request of the agent's may still be in flight, but the PLC answers it within
  its response time, long before the deadline, so the frames do not collide on the wire.
  What remains: the watchdog's reply read may take bytes of that late answer, and the
  agent's client may afterwards see the watchdog's reply; the master flushes the RTU input
  before each request and counts a stray frame that lands in its wait as a malformed reply
  (``agent.io.modbus.exchange``), never a wrong write. A safe set that needs more than one
  frame (with a ``[plc_remote]`` coil: the flag's fc5, then the outputs' fc16) goes out one
  request at a time: the watchdog reads each reply until the line is quiet before it sends
  the next, as an RTU bus needs.

Safe values (:func:`guard_values`): SAFE_VALUE and RAMP outputs get ``safe_value`` (the
watchdog cannot ramp: it writes once, as the PLC's own fallback does); HOLD_LAST outputs the
value the agent last wrote (``safe_value`` if none), so the guard is re-armed when that
changes. With a ``[plc_remote]``, the frames also set its flag at ``remote_value``: a PLC
running its own program takes the safe values whatever mode it was in.

If the PLC is unreachable at arm time the guard arms with the file and hw watchdog actions
only and retries the link at most every ``RETRY_S`` while the agent's own client is
connected. Contract: :meth:`NativeGuard.start` and :meth:`NativeGuard.after_tick` never
raise for an unreachable PLC or a dead link (logged, counted); :meth:`NativeGuard.open_hw`
(and :meth:`NativeGuard.start`) raise ``DeviceUnavailable`` (an ``OSError``) for a
``hw_watchdog`` that cannot be opened (the agent must not run unguarded when the profile
names one), and WriteRefused from the frame encoder is a bug (a safe value outside its own
output's limits is rejected by the profile parser).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import serial

from agent.io.devices import unavailable
from agent.io.hostnames import ascii_host
from agent.model.profile import FailsafePolicy, Profile, RtuLink, TcpLink
from agent.protocol.modbus.frames import encode_write_frames
from firmware_bridge import WatchdogAPI, WatchdogStats

log = logging.getLogger(__name__)

ENV_EXIT = "TWINGUARD_WATCHDOG_EXIT"
RETRY_S = 2.0  # at most one link attempt this often while the PLC is unreachable
CHECK_S = 1.0  # how often an established TCP link is checked for EOF / leftover bytes
REPLY_TIMEOUT_S = 0.05
HW_FEED_INTERVAL_S = 1.0


def exit_code_from_env(env: Mapping[str, str]) -> int | None:
    """``TWINGUARD_WATCHDOG_EXIT``: None when unset/empty, else 0..255; ValueError if bad."""
    text = env.get(ENV_EXIT, "").strip()
    if not text:
        return None
    try:
        code = int(text)
    except ValueError:
        raise ValueError(f"{ENV_EXIT}={text!r}: expected an exit code 0..255") from None
    if not 0 <= code <= 255:
        raise ValueError(f"{ENV_EXIT}={text!r}: expected an exit code 0..255")
    return code


def guard_values(profile: Profile, last_written: Mapping[str, float]) -> dict[str, float]:
    """What the watchdog writes on a hang, per output (see the module docstring)."""
    out: dict[str, float] = {}
    for o in profile.writes:
        last = last_written.get(o.name)
        hold = o.failsafe is FailsafePolicy.HOLD_LAST and last is not None
        out[o.name] = last if hold and last is not None else o.safe_value
    return out


@dataclass
class GuardStats:
    """Counters of the guard (the watchdog's own counters in ``watchdog``)."""

    arms: int = 0
    link_up: bool = False
    connects: int = 0
    connect_failures: int = 0
    link_losses: int = 0
    fires_seen: int = 0
    values: dict[str, float] = field(default_factory=dict)
    watchdog: WatchdogStats | None = None


class NativeGuard:
    """Arms the watchdog with the safe state and kicks it; see the module docstring.

    ``watchdog_cls`` is what ``firmware_bridge.load_watchdog`` returned (the native class,
    or the Python twin where the profile allows it).
    """

    def __init__(
        self,
        profile: Profile,
        watchdog_cls: type[WatchdogAPI],
        *,
        exit_code: int | None = None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        hw_feed_interval_s: float = HW_FEED_INTERVAL_S,
    ) -> None:
        self.profile = profile
        self.deadline_s = profile.timing.watchdog_deadline_s
        self.exit_code = exit_code
        self.reply_timeout_s = reply_timeout_s
        self.hw_feed_interval_s = hw_feed_interval_s
        self.native = watchdog_cls.native
        self._wd: WatchdogAPI = watchdog_cls()
        self._values = guard_values(profile, {})
        self._frames = b""
        self._frame_list: list[bytes] = []
        self._sock: socket.socket | None = None
        self._port: Any = None  # serial.Serial for RTU (pyserial is untyped)
        self._hw_fd = -1
        self._plc_was_connected = False
        self._retry_at = 0.0
        self._check_at = 0.0
        self._fires_before = 0
        self._closed = False
        self._stats = GuardStats()

    # --- lifecycle -----------------------------------------------------------------------

    def open_hw(self) -> None:
        """Open ``board.hw_watchdog`` if the profile names one (once); DeviceUnavailable,
        naming the key, the cause and what to do, if it cannot be opened."""
        hw = self.profile.board.hw_watchdog
        if hw is not None and self._hw_fd < 0:
            try:
                self._hw_fd = os.open(hw, os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError as exc:
                raise unavailable("board.hw_watchdog", hw, exc, source=self.profile.source,
                                  kind="hw_watchdog") from exc

    async def start(self, now: float, plc_connected: bool,
                    last_written: Mapping[str, float]) -> None:
        """Open the hw watchdog and the link (if the PLC is reachable), then arm."""
        self.open_hw()
        self._values = guard_values(self.profile, last_written)
        self._plc_was_connected = plc_connected
        if plc_connected:
            await self._connect(now)
        self.rearm()
        log.info("native guard armed: %s watchdog, deadline %.3f s, %s, exit code %s",
                 "native" if self.native else "PYTHON (cannot fire while the GIL is held)",
                 self.deadline_s, "PLC link up" if self.link_up else "no PLC link yet",
                 self.exit_code)

    def kick(self) -> None:
        """The loop completed a tick: push the deadline out by ``watchdog_deadline_s``."""
        self._wd.kick()

    @property
    def tid(self) -> int:
        """The watchdog thread's kernel id (0 when it has none: ``WatchdogAPI.tid``)."""
        return self._wd.tid

    def fired(self) -> bool:
        """The watchdog fired since it was last armed (latched until :meth:`rearm`); a cheap
        read of the latch, fit for a check before every PLC write."""
        return self._wd.fired

    def rearm(self, values: Mapping[str, float] | None = None) -> None:
        """Re-encode the frames (for ``values`` if given) and arm again; clears a fire."""
        if values is not None:
            self._values = dict(values)
        self._frame_list = encode_write_frames(self.profile, self._values)
        self._frames = b"".join(self._frame_list)
        fd = self._link_fd()
        led = self.profile.board.fault_led
        self._wd.arm(
            self.deadline_s,
            # one action per request: the watchdog sends each after the previous reply
            fd_writes=[(fd, frame) for frame in self._frame_list] if fd >= 0 else [],
            reply_timeout_s=self.reply_timeout_s,
            file_writes=[(led, self.profile.board.fault_led_value.encode())] if led else [],
            hw_watchdog_fd=self._hw_fd,
            hw_feed_interval_s=self.hw_feed_interval_s,
            exit_code=self.exit_code,
        )
        self._stats.arms += 1

    async def reconnect(self, now: float) -> bool:
        """Drop the guard's link to the PLC, open a new one and re-arm; True if it is up."""
        self._close_link()
        up = await self._connect(now)
        self.rearm()
        return up

    async def after_tick(self, now: float, plc_connected: bool,
                         last_written: Mapping[str, float]) -> bool:
        """End of a complete tick: kick, then upkeep. True if the watchdog had fired.

        Upkeep: re-arm after a fire (Python is running again), when the safe values
        change, and when the link was lost or the agent's own client reconnected.
        """
        self.kick()
        fired = self.fired()
        if fired:
            self._stats.fires_seen += 1
            log.error("native watchdog fired: the loop missed its %.3f s deadline (%s)",
                      self.deadline_s, self._wd.stats()["last_fire_results"])
        values = guard_values(self.profile, last_written)
        relink = False
        if plc_connected and not self._plc_was_connected:
            relink = True  # the agent's client came back: so may the PLC after a restart
        elif plc_connected and not self.link_up and now >= self._retry_at:
            relink = True
        elif self.link_up and (fired or now >= self._check_at):
            self._check_at = now + CHECK_S
            relink = not self._link_alive()
        self._plc_was_connected = plc_connected
        if relink:
            self._values = values
            await self.reconnect(now)
        elif fired or values != self._values:
            self.rearm(values)
        return fired

    def close(self) -> None:
        """Disarm (magic close on the hw watchdog unless it fired), close the link. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wd.close()
        self._close_link()
        if self._hw_fd >= 0:
            os.close(self._hw_fd)  # the last close: the driver sees the 'V' written on disarm
            self._hw_fd = -1
        log.info("native guard disarmed")

    @property
    def link_up(self) -> bool:
        return self._sock is not None or self._port is not None

    @property
    def values(self) -> dict[str, float]:
        """The values the watchdog writes if it fires now."""
        return dict(self._values)

    @property
    def frames(self) -> bytes:
        """The bytes the watchdog writes to its link if it fires now."""
        return self._frames

    def stats(self) -> GuardStats:
        s = self._stats
        return GuardStats(s.arms, self.link_up, s.connects, s.connect_failures, s.link_losses,
                          s.fires_seen, dict(self._values), self._wd.stats())

    # --- the link ------------------------------------------------------------------------

    def _link_fd(self) -> int:
        if self._sock is not None:
            return self._sock.fileno()
        if self._port is not None:
            fd: int = self._port.fileno()
            return fd
        return -1

    async def _connect(self, now: float) -> bool:
        link = self.profile.plc.link
        self._retry_at = now + RETRY_S
        self._check_at = now + CHECK_S
        try:
            if isinstance(link, TcpLink):
                self._sock = await self._open_tcp(link)
            else:
                self._port = self._open_rtu(link)
        except (OSError, TimeoutError, serial.SerialException) as exc:
            self._stats.connect_failures += 1
            log.warning("native guard: no link to the PLC (%s); the watchdog can only set "
                        "the fault LED and stop the hw watchdog until it is back", exc)
            return False
        self._stats.connects += 1
        return True

    async def _open_tcp(self, link: TcpLink) -> socket.socket:
        loop = asyncio.get_running_loop()
        # ASCII bytes: no idna codec, no unicodedata in the agent (agent.io.hostnames)
        infos = await loop.getaddrinfo(ascii_host(link.host), link.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, addr), self.profile.plc.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def _open_rtu(self, link: RtuLink) -> Any:
        return serial.Serial(
            port=link.device, baudrate=link.baudrate, bytesize=link.bytesize,
            parity=link.parity.value, stopbits=link.stopbits, timeout=0, write_timeout=0,
        )

    def _link_alive(self) -> bool:
        """TCP: False on EOF, error or hang-up; leftover bytes (old replies) are drained.
        RTU: always True (the bus is shared: Python never reads it)."""
        sock = self._sock
        if sock is None:
            return self._port is not None
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        for _fd, ev in poller.poll(0):
            if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                return self._lost("hang-up")
            try:
                while True:
                    data = sock.recv(4096)
                    if not data:
                        return self._lost("closed by the PLC")
            except BlockingIOError:
                pass
            except OSError as exc:
                return self._lost(str(exc))
        return True

    def _lost(self, why: str) -> bool:
        self._stats.link_losses += 1
        log.warning("native guard: link to the PLC lost (%s); reconnecting", why)
        return False

    def _close_link(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._port.close()
            self._port = None
