"""The systemd unit that runs the agent: rendered from the hardware profile's paths.

What the unit guarantees, and why:

* ``Type=notify`` + ``NotifyAccess=main``: the agent reports READY=1 when its loop runs
  (it may still be in STARTING, holding safe values, waiting for PLC and twin) and sends
  WATCHDOG=1 after every complete tick (:mod:`agent.io.panel.sdnotify`); ``WatchdogSec=`` kills and
  restarts a hung agent (the native watchdog and the PLC's own watchdog act first).
* ``Restart=always``, a short ``RestartSec=`` and ``StartLimitIntervalSec=0``: the agent is
  restarted however it ended and systemd never gives up on it; meanwhile the PLC's
  communication watchdog keeps the plant safe.
* Sandboxing: read-only system (``ProtectSystem=strict``), no home, private /tmp, no new
  privileges, no capabilities, only AF_UNIX/AF_INET/AF_INET6 sockets, kernel tunables and
  cgroups read-only, no W+X memory (fine for CPython, which has no JIT before 3.13 and
  none enabled by default after; C extensions creating libffi closures without static
  trampolines would break: pass ``memory_deny_write_execute=False`` then).
* Devices: ``PrivateDevices=yes`` would hide the serial port, the GPIO chips and the
  watchdog, so the unit uses ``DevicePolicy=closed`` (only /dev/null, zero, full, random,
  urandom) plus one ``DeviceAllow=`` line per device the profile names and nothing more:
  the serial device(s) (``plc.device``, ``board.serial_device``) by path, which systemd
  resolves when the unit starts (``/dev/serial0`` is the ``ttyAMA0``/``ttyS0`` it links to;
  a USB adapter that comes back under another name needs a restart, which ``Restart=``
  gives it — no whole ``ttyUSB`` class), the ``hw_watchdog``, and for the profile's GPIO
  pins (BCM numbers on the Pi header) the chip they are on: :data:`PI_GPIO_CHIPS`,
  ``/dev/gpiochip0``, and ``/dev/gpiochip4`` where a Pi 5 with a kernel before 6.6.45 puts
  the header (gpiozero's lgpio factory opens that one there; where a path does not exist
  it grants nothing). No ``/dev/gpiomem``: only RPi.GPIO and gpiozero's native factory use it,
  and the agent drives GPIO through lgpio (``python3-lgpio``, README). The matching
  ``SupplementaryGroups=`` (``dialout`` for serial ports, ``gpio`` for GPIO; these groups
  must exist on the board, as on Raspberry Pi OS, or the unit fails to start).
* Writable paths: the state directory (``StateDirectory=`` when it lies under /var/lib,
  ``ReadWritePaths=`` otherwise) and any sysfs LED/GPIO files given (``ReadWritePaths=-``
  re-opens them below the read-only /sys; the ``-`` lets the agent start, and fail safe,
  even when an indicator file is missing). GPIO through lgpio creates its notification
  pipes in the working directory, so that is the state directory too (and ``LG_WD``).
* Real time (the profile's ``[realtime]``, ``agent.io.realtime``): the agent itself puts its
  event-loop thread (and the threads it makes) at ``SCHED_FIFO`` ``loop_priority`` and the
  native watchdog thread at ``watchdog_priority``, after its imports, and locks its memory.
  The unit only grants it: ``LimitRTPRIO=<watchdog_priority>`` (an unprivileged process may
  ask for any SCHED_FIFO priority up to its ``RLIMIT_RTPRIO``: no ``CAP_SYS_NICE``, the
  bounding set stays empty) and ``LimitMEMLOCK=`` :data:`MEMLOCK_LIMIT`. Not
  ``CPUSchedulingPolicy=``: that would run the whole process, imports and start included, at
  one priority and the watchdog thread no higher than the loop. The memlock limit: with
  ``mlockall(MCL_CURRENT | MCL_FUTURE)`` the whole address space must fit at once (the
  kernel compares ``VmSize``, not what is resident) and every later mapping too; once it is
  reached a new mapping fails and the agent's next allocation raises MemoryError (the native
  watchdog and the PLC's own then act). The agent locks about 40 MiB (small thread stacks,
  one malloc arena: ``twinguard status`` shows ``VmLck``); 256 MiB leaves room for its
  growth and bounds what a leak can pin in RAM, which ``infinity`` would not (a leak of
  locked memory cannot be swapped: it starves the rest of the board). ``SystemCallFilter=
  @system-service`` allows both (``@resources``: sched_setscheduler; ``@memlock``: mlockall)
  and the unit never sets ``RestrictRealtime=``. ``scheduling = "other"`` renders no
  ``LimitRTPRIO=``, ``lock_memory = false`` no ``LimitMEMLOCK=``.
* ``/dev/watchdog``: only one process may open it. If systemd itself feeds it
  (``RuntimeWatchdogSec=`` in system.conf), leave ``hw_watchdog`` out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.model.profile import MEMLOCK_LIMIT_MIB

PI_GPIO_CHIPS = ("/dev/gpiochip0", "/dev/gpiochip4")  # the header's chip (see above)
MEMLOCK_LIMIT = f"{MEMLOCK_LIMIT_MIB}M"  # LimitMEMLOCK= for lock_memory = true (above)
_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NAME = re.compile(r"[a-z_][a-z0-9_-]*")


def _check_line(what: str, value: str) -> str:
    if not value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ValueError(f"{what} must be non-empty without control characters: {value!r}")
    return value


def _check_abs(what: str, path: str) -> str:
    _check_line(what, path)
    if not path.startswith("/") or "//" in path or "/../" in f"{path}/":
        raise ValueError(f"{what} must be a normalized absolute path: {path!r}")
    if any(c.isspace() for c in path):
        raise ValueError(f"{what} must not contain whitespace: {path!r}")
    return path.replace("%", "%%")


def quote_arg(arg: str) -> str:
    """One ExecStart= argument, quoted for systemd (``%`` and ``$`` escaped, no expansion).

    Raises ValueError for an empty argument or one with control characters (a newline
    would end the unit line and start another directive).
    """
    _check_line("ExecStart argument", arg)
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _BARE.fullmatch(arg):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _timespan(what: str, seconds: float) -> str:
    if not seconds > 0:
        raise ValueError(f"{what} must be > 0 seconds, got {seconds!r}")
    ms = round(seconds * 1000)
    if ms < 1:
        raise ValueError(f"{what} must be at least 1 ms, got {seconds!r}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_unit(
    *,
    exec_start: str,
    profile: str,
    config: str | None,
    state_dir: str,
    watchdog_sec: float,
    user: str = "twinguard",
    group: str | None = None,
    description: str = "twinguard fail-safe control agent",
    restart_sec: float = 1.0,
    serial_devices: Sequence[str] = (),
    gpio: bool = True,
    hw_watchdog: str | None = None,
    sysfs_paths: Sequence[str] = (),
    memory_deny_write_execute: bool = True,
    rt_priority: int | None = None,
    lock_memory: bool = False,
) -> str:
    """The text of ``twinguard.service``.

    ``exec_start`` is the absolute path of the ``twinguard`` executable; the unit runs
    ``<exec_start> run --profile <profile> [--config <config>]``. ``state_dir`` is where the
    agent keeps its spool, audit log and version counters. ``serial_devices`` (e.g.
    ``/dev/serial0``, ``/dev/ttyUSB0``) are allowed read-write, each alone, with group
    ``dialout``; ``gpio`` allows the header's GPIO chip (:data:`PI_GPIO_CHIPS`) and group
    ``gpio``; ``hw_watchdog`` (e.g. ``/dev/watchdog``) is allowed
    read-write; ``sysfs_paths`` (e.g. the fault LED's ``brightness`` file) become writable.
    ``rt_priority`` (the profile's ``watchdog_priority`` under ``scheduling = "fifo"``; None:
    no real-time scheduling) becomes ``LimitRTPRIO=``; ``lock_memory`` ``LimitMEMLOCK=``.

    Raises ValueError for a relative or unnormalized path, a control character anywhere,
    an invalid user/group name, or a non-positive time span: a unit file is a safety
    configuration and is never written with a guessed value.
    """
    exe = _check_abs("exec_start", exec_start)
    for what, name in (("user", user), ("group", group)):
        if name is not None and not _NAME.fullmatch(name):
            raise ValueError(f"{what} is not a valid user/group name: {name!r}")
    state = _check_abs("state_dir", state_dir.rstrip("/") or "/")
    if state == "/":
        raise ValueError("state_dir must not be /")
    args = ["run", "--profile", profile]
    if config is not None:
        args += ["--config", config]
    exec_line = " ".join([exe, *(quote_arg(a) for a in args)])
    description = _check_line("description", description).replace("%", "%%")

    unit = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_line}",
        f"WatchdogSec={_timespan('watchdog_sec', watchdog_sec)}",
        "Restart=always",
        f"RestartSec={_timespan('restart_sec', restart_sec)}",
        "TimeoutStopSec=10s",
        f"User={user}",
    ]
    if group is not None:
        unit.append(f"Group={group}")
    groups: list[str] = []
    if serial_devices:
        groups.append("dialout")
    if gpio:
        groups.append("gpio")
    if groups:
        unit.append(f"SupplementaryGroups={' '.join(groups)}")

    if state.startswith("/var/lib/") and state.count("/") >= 3:
        unit += [f"StateDirectory={state.removeprefix('/var/lib/')}", "StateDirectoryMode=0750"]
    else:
        unit.append(f"ReadWritePaths={state}")
    unit += [f"WorkingDirectory={state}", f"Environment=LG_WD={state}", "UMask=0027"]
    if rt_priority is not None or lock_memory:
        unit += ["", "# real time ([realtime] in the profile), granted without a capability"]
    if rt_priority is not None:
        if not 1 <= rt_priority <= 99:
            raise ValueError(f"rt_priority must be in 1..99, got {rt_priority!r}")
        unit += ["# the agent puts its own threads at SCHED_FIFO, the watchdog's at this one",
                 f"LimitRTPRIO={rt_priority}"]
    if lock_memory:
        unit += ["# mlockall(): the whole address space must fit (twinguard status: VmLck)",
                 f"LimitMEMLOCK={MEMLOCK_LIMIT}"]

    unit += [
        "",
        "# sandbox",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        f"MemoryDenyWriteExecute={'yes' if memory_deny_write_execute else 'no'}",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "# devices: PrivateDevices=yes would hide them; allow exactly these instead",
        "DevicePolicy=closed",
    ]
    if serial_devices:
        unit.append("# serial: resolved when the unit starts (a link such as /dev/serial0 is "
                    "its tty); a re-plugged USB adapter needs a restart")
    allow = [f"{_check_abs('serial device', dev)} rw" for dev in serial_devices]
    if gpio:
        unit.append("# GPIO: the Pi header's chip, gpiochip0 (gpiochip4 on a Pi 5 with a "
                    "kernel before 6.6.45; an absent one grants nothing)")
        allow += [f"{chip} rw" for chip in PI_GPIO_CHIPS]
    if hw_watchdog is not None:
        allow.append(f"{_check_abs('hw_watchdog', hw_watchdog)} rw")
    unit += [f"DeviceAllow={a}" for a in dict.fromkeys(allow)]
    for p in dict.fromkeys(sysfs_paths):
        unit.append(f"ReadWritePaths=-{_check_abs('sysfs path', p)}")

    unit += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(unit)
