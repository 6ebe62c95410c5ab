"""The runtime: one asyncio loop that owns the plant (the adapter around ``Controller``).

Per tick, every ``timing.poll_period_s`` on an absolute schedule::

    read signals ─▶ controller.tick (vote, trips, plant safety, twin authority, plan)
                 ─▶ write outputs ─▶ PLC watchdog heartbeat register ─▶ end of a complete tick

The twin heartbeat deadline is a timer of its own (``loop.call_at`` on
``controller.next_deadline()``, also the safety and authority hold-offs): when it passes,
the controller is asked at once and what the shed means (each output's ``on_twin_loss``) is
written without waiting for the next poll. All PLC I/O goes through
``agent.io.plant`` (one lock, one I/O budget per tick), so a safe-state write waits at most for
the one request in flight.

A tick that ends after the next one was due is an overrun: counted, and the schedule skips
ahead (no burst of catch-up ticks). An exception inside a tick is a FAULT: logged, the safe
set is written, the loop goes on. SIGTERM/SIGINT stop cleanly: the twin's authority sheds as
on its loss (a healthy plant is not touched; FAILSAFE only where the twin's supervision is a
protection layer), the twin link and the PLC connection are closed.

Twin recommendations are validated on arrival (``Controller.on_recommend``), bound to the
link session and epoch they came on (``TwinLink.delivering``; the controller drops them when
that session ends), and answered within the link's reply budget (``TwinLink.reply``);
in shadow mode the outputs are read after a complete tick while some are live, to log what
would have been written. Telemetry (``agent.runtime.telemetry_feed``) only queues records on the
loop; committing and sending run in a writer thread and the pump task.

At start, before anything else: open the hardware watchdog the profile names (refused with
the cause if it cannot be), connect, read what the outputs hold (and again every
``OBSERVE_S`` while not safe where an output ramps to a local value: it starts from there)
and the PLC's communication watchdog configuration; nothing is written. The state machine
leaves STARTING when the PLC is reachable with its watchdog as configured (a latch left by
a fallback while no agent ran is cleared first) and the sensors are in; no twin is needed.
A successor of a hand-over waits for its predecessor to let go first
(``agent.runtime.handover``).

Configuration push (``agent.runtime.configsession``): the configuration in force is the config
store's current version if above 0, else ``--config``; the profile used is the hardware
profile with its overrides. A ``config_push`` is evaluated, stored and audited on one worker
thread (fsyncs stay off the loop), answered with ``config_result``, then applied on the
loop: the mode and recommendation limits at once; new twin settings by re-dialling (the
old session ends: the twin is lost, its authority sheds until the new link earns it back);
anything else by a hand-over restart (``agent.runtime.handover``: the successor starts while
this process ticks on; ``EXIT_RESTART`` only if it cannot be made ready).
The confirmation window is checked every tick while a version is pending: the twin must be
ALIVE on a session begun after the apply. Safety transitions, mode changes, acks and the
agent's start and stop go to the audit log through the same worker.

Fault drills (``twinguard drill``, over the status socket) are rehearsed by
``agent.runtime.drill`` on a copy of the controller, in slices between the loop's own work;
they never reach this loop's controller, PLC, LEDs or twin.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.agentconfig import AgentConfig, Transport
from agent.config.push import Situation
from agent.core.controller import Controller, Decision
from agent.core.heartbeat import LinkState
from agent.core.leds import Indication, indication
from agent.core.safety import State
from agent.io.audit import AuditKind, transition_record
from agent.io.devices import check_readable
from agent.io.guard import NativeGuard, exit_code_from_env
from agent.io.panel.panel import OperatorPanel
from agent.io.plant import PlantIO
from agent.io.realtime import Realtime
from agent.io.twin.link import TwinLink, TwinLinkSettings
from agent.model.errors import ConfigError, Problem
from agent.model.messages import (
    Ack,
    AgentMessage,
    Bye,
    ConfigPush,
    ConfigResult,
    Heartbeat,
    Message,
    Recommend,
    Status,
)
from agent.model.mode import Mode
from agent.model.profile import Profile, TwinLossPolicy
from agent.model.status import LoopStatus, StatusSnapshot
from agent.runtime import faultinject, handover
from agent.runtime.configsession import EXIT_RESTART, ConfigSession, Step
from agent.runtime.drill import DrillRunner
from agent.runtime.snapshot import EventRing, build_snapshot, policy_status
from agent.runtime.telemetry_feed import TelemetryFeed
from firmware_bridge import WatchdogAPI, load_watchdog

if TYPE_CHECKING:  # the fleet link is imported only for transport = "mqtt"
    from agent.io.fleet.link import FleetLink, FleetLinkSettings

    Link = TwinLink | FleetLink
else:
    Link = TwinLink

log = logging.getLogger(__name__)

STATUS_PERIOD_S = 1.0  # agent -> twin status messages
OUTBOX_MAX = 32  # config results kept for the twin while no session is UP
SHUTDOWN_GRACE_S = 3.0  # after the stop's writes are out, how long the rest may take
OBSERVE_S = 2.0  # while not safe, what the outputs hold is read this often
TIMER_LEAD_S = 0.0015  # the deadline timer fires this early, then sleeps out the rest
GIL_SWITCH_S = 0.0005  # sys.setswitchinterval while the agent runs
LINK_AUDIT_MIN_S = 5.0  # at most one twin-link edge record this often (a flapping twin)


# the loop's counters (fields of LoopStatus) the runtime keeps as plain ints on the hot path
LOOP_COUNTERS = ("ticks", "overruns", "faults", "safe_writes", "write_failures",
                 "safe_write_failures")


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def fleet_link_classes(source: str) -> tuple[type[FleetLink], type[FleetLinkSettings]]:
    """``agent.io.fleet.link``'s FleetLink and FleetLinkSettings, imported now; ConfigError
    (at ``twin.transport`` of ``source``) saying which extra to install if aiomqtt or
    protobuf is missing."""
    try:
        from agent.io.fleet.link import FleetLink, FleetLinkSettings  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError([Problem(source, "twin.transport", (
            f'"mqtt" needs the fleet extra ({exc.name or exc} is not installed): '
            "pip install 'twinguard[fleet]'"))]) from None
    return FleetLink, FleetLinkSettings


class Runtime:
    """Runs one agent until stopped; see the module docstring."""

    def __init__(self, profile: Profile, config: AgentConfig, state_dir: Path,
                 watchdog: type[WatchdogAPI] | None = None,
                 realtime: Realtime | None = None) -> None:
        # a successor started by a hand-over (agent.runtime.handover) touches nothing of
        # the state directory, the PLC or the GPIO before its predecessor has let go
        handover.wait_for_predecessor()
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        # what is in force: the config store's current version wins over --config (version 0)
        self.session = ConfigSession.open(profile, config, state_dir, time.monotonic())
        config, profile = self.session.config, self.session.profile
        self.profile = profile
        self.config = config
        self.state_dir = state_dir
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tg-config")
        self._config_busy = False
        self._exit_code = 0
        self._successor: handover.Successor | None = None  # a hand-over under way
        # config results that found no session UP: sent when the next one comes up
        self._outbox: collections.deque[ConfigResult] = collections.deque(maxlen=OUTBOX_MAX)
        self.controller = Controller(profile, config.mode, max_validity_s=config.max_validity_s,
                                     twin=config.twin is not None, now=time.monotonic())
        self.plant = PlantIO(profile)
        # counters as plain ints (a frozen LoopStatus is built only when asked: ``stats``)
        self._counters = dict.fromkeys(LOOP_COUNTERS, 0)
        self._worst_tick_s = 0.0
        self._sleeping: asyncio.Future[None] | None = None  # the loop's wait for its next tick
        self._hang_handled = False  # the current fire of the native watchdog was acted on
        # native guard (agent.io.guard): armed at start, kicked at the end of every complete tick
        self.guard = NativeGuard(
            profile, watchdog or load_watchdog(profile.require_native_watchdog),
            exit_code=exit_code_from_env(os.environ))
        self.plant.fired = self.guard.fired
        self.realtime = realtime  # started by `twinguard run` (agent.io.realtime); None: not
        self.link: Link | None = self._make_link(config)
        self._link_sessions = 0  # sessions of the current link object that came UP
        self._stop = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0  # what the timer is for (it fires TIMER_LEAD_S before)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog_checked: float | None = None
        self._status_seq = 0
        self.telemetry = TelemetryFeed(None)  # opened in run(), once the loop runs
        self.events = EventRing()
        # fault drills rehearse on a copy of the controller, in slices (agent.runtime.drill)
        self.drills = DrillRunner(lambda: self.controller, self._audit)
        self.panel = OperatorPanel(profile, state_dir, self.status_snapshot, self.console_ack,
                                   drill=self.drills.drill)
        self._started = 0.0
        self._link_audited = float("-inf")  # monotonic time of the last twin-link record
        self._link_unaudited = 0  # edges since then that were not recorded
        self._observe_at = 0.0  # when what the outputs hold is read next (loop time)
        # only a local ramp uses what the outputs hold between writes: no reads for nothing
        self._observes = any(o.on_twin_loss is TwinLossPolicy.LOCAL for o in profile.outputs)

    # --- lifecycle -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        if self._sleeping is not None:
            _wake(self._sleeping)

    @property
    def stats(self) -> LoopStatus:
        """The loop's counters now."""
        return LoopStatus(**self._counters, worst_tick_s=self._worst_tick_s,
                          io_budget_overruns=self.plant.budget_overruns,
                          stale_refused=self.plant.stale_refused)

    def _make_link(self, config: AgentConfig) -> Link | None:
        """The twin link for ``config`` (None without [twin]): the TLS link, or with
        ``[twin] transport = "mqtt"`` the fleet link (imported only then: it needs the
        ``twinguard[fleet]`` extra, and ConfigError says so when that is missing). Raises
        DeviceUnavailable naming the key of a certificate file that cannot be read,
        OSError/SSLError if one cannot be loaded."""
        if config.twin is None:
            return None
        t = config.twin
        # a missing or unreadable file is named with the key that points to it
        check_readable({"twin.ca": t.ca_file, "twin.cert": t.cert_file,
                        "twin.key": t.key_file, "twin.crl": t.crl_file}, source=config.source)
        if t.transport is Transport.MQTT:
            return self._make_fleet_link(config)
        # the callbacks know which link called: an old link (replaced by _relink) is told
        # apart from the current one, and a recommendation keeps the session it came on
        link = TwinLink(
            TwinLinkSettings(
                host=t.host, port=t.port, ca_file=t.ca_file, cert_file=t.cert_file,
                key_file=t.key_file, server_name=t.server_name, device_id=config.device_id,
                max_frame=t.max_frame, connect_timeout_s=t.connect_timeout_s,
                backoff_min_s=t.backoff_min_s, backoff_max_s=t.backoff_max_s,
                idle_timeout_s=t.idle_timeout_s, crl_file=t.crl_file, backups=t.backups,
                # announced in the hello so the twin can pace its heartbeats (PROTOCOL.md §5)
                heartbeat_timeout_s=self.profile.timing.heartbeat_timeout_s,
                heartbeat_late_s=self.profile.timing.heartbeat_late_s,
            ),
            lambda msg, t: self._on_message(msg, t, link),
            lambda up, reason, t: self._on_connection(up, reason, t, link),
        )
        return link

    def _make_fleet_link(self, config: AgentConfig) -> Link:
        t = config.twin
        assert t is not None and t.fleet is not None  # the parser pairs them
        FleetLink, FleetLinkSettings = fleet_link_classes(config.source)
        f = t.fleet
        link = FleetLink(
            FleetLinkSettings(
                servers=f.servers, group=f.group, host_id=f.host_id,
                device_id=config.device_id, twin_keys=f.twin_keys, ca_file=t.ca_file,
                cert_file=t.cert_file, key_file=t.key_file, crl_file=t.crl_file,
                keepalive_s=f.keepalive_s, echo_timeout_s=f.echo_timeout_s,
                idle_timeout_s=t.idle_timeout_s, connect_timeout_s=t.connect_timeout_s,
                backoff_min_s=t.backoff_min_s, backoff_max_s=t.backoff_max_s,
                heartbeat_timeout_s=self.profile.timing.heartbeat_timeout_s,
                heartbeat_late_s=self.profile.timing.heartbeat_late_s,
            ),
            lambda msg, t: self._on_message(msg, t, link),
            lambda up, reason, t: self._on_connection(up, reason, t, link),
            state_dir=self.state_dir,
        )
        return link

    async def _send(self, msg: AgentMessage) -> bool:
        """Send to the twin over whatever link is current (False if none is UP)."""
        link = self.link
        return await link.send(msg) if link is not None else False

    async def _send_many(self, msgs: Sequence[AgentMessage]) -> bool:
        """Several messages to the twin in one write (telemetry ranges)."""
        link = self.link
        return await link.send_many(msgs) if link is not None else False

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or :meth:`request_stop`; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        # a worker thread (audit, spool writer, config) holding the GIL when a deadline
        # passes keeps the loop waiting for at most this long (CPython's default is 5 ms)
        sys.setswitchinterval(GIL_SWITCH_S)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        faultinject.install_from_env()  # test-only; a no-op unless TWINGUARD_FAULT_INJECTION=1
        self.guard.open_hw()  # before anything is claimed: a missing device refuses the start
        self._started = loop.time()
        await self.panel.start(loop)  # refuses (StatusSocketInUse) if another agent runs here
        log.info("twinguard starting: profile %s, mode %s, config version %d",
                 self.profile.source, self.controller.machine.mode.value, self.session.version)
        self._audit(AuditKind.AGENT_START, mode=self.controller.machine.mode.value,
                    version=self.session.version, pid=os.getpid())
        await self.plant.plc.connect()
        # nothing is written at start: read what the outputs hold, and let the first tick
        # decide (a hazard found acts then)
        await self._observe_outputs(loop.time())
        await self.plant.check_watchdog(loop.time(), outputs_safe=False)
        if self.link is not None:
            self.telemetry = await TelemetryFeed.open(self.config, self.state_dir, self._send,
                                                     self._send_many)
            self._spawn(self.telemetry.run(), "telemetry pump")
            self._spawn(self.link.run(), "twin link")
            self._spawn(self._status_loop(), "status to twin")
        # what start-up built (modules, the profile, the tables) lives as long as the agent:
        # the cyclic collector no longer scans it (shorter, rarer pauses). Before the guard
        # is armed: a full collection is the one pause here that grows with the heap.
        gc.collect()
        gc.freeze()
        try:
            await self.guard.start(loop.time(), self.plant.connected,
                                   self.controller.last_written)
            if self.realtime is not None:  # the watchdog thread above the loop, once armed
                self.realtime.watchdog(self.guard.tid)
            await self._loop()
        finally:
            await self._shutdown()
        return self._exit_code

    def _count(self, counter: str) -> None:
        """One more of the loop's counter ``counter`` (one of LOOP_COUNTERS)."""
        self._counters[counter] += 1

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.profile.timing.poll_period_s
        counters = self._counters
        next_t = loop.time()
        while not self._stop.is_set():
            start = loop.time()
            try:
                await self._tick(start)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not take the plant's guard down
                self._count("faults")
                log.exception("fault in tick")
                await self._apply(self.controller.fault(loop.time(), f"internal error: {exc!r}"))
            end = loop.time()
            counters["ticks"] += 1
            self._worst_tick_s = max(self._worst_tick_s, end - start)
            next_t += period
            if end > next_t:
                counters["overruns"] += 1
                next_t = end
            await self._sleep_until(loop, next_t)

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, t: float) -> None:
        """Wait until loop time ``t`` or :meth:`request_stop`, whichever comes first (one
        future and one timer: no task, no Event waiter per tick)."""
        if self._stop.is_set():
            return
        fut = self._sleeping = loop.create_future()
        timer = loop.call_at(t, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._sleeping = None

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        log.info("twinguard stopping: twin authority sheds (%s, %s)",
                 self.controller.authority.state.name, self.controller.state.name)
        if self._timer is not None:
            self._timer.cancel()
        await self._apply(self.controller.stop(loop.time()))
        if self._successor is not None:
            # the last word to the PLC's watchdog: the successor's first heartbeat follows
            # within its own start; systemd follows the successor from now on
            await self.plant.heartbeat(loop.time())
            self.panel.notifier.notify(f"MAINPID={self._successor.pid}")
        self.guard.close()  # disarm only once what the stop decided is out
        await self.panel.close()
        if self.link is not None:
            self.link.close()
        for task in list(self._tasks):
            task.cancel()
        # the plant is safe already: nothing below may hold the stop for long
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await asyncio.gather(*self._tasks, return_exceptions=True)
                await self.telemetry.close(loop.time())
        except TimeoutError:
            log.error("shutdown: tasks or telemetry did not finish within %.0f s; leaving them",
                      SHUTDOWN_GRACE_S)
        await self.plant.close()
        self._audit(AuditKind.AGENT_STOP, exit_code=self._exit_code)
        self._worker.shutdown(wait=True)
        if self.session.audit is not None:
            self.session.audit.close()
        log.info("twinguard stopped")

    # --- one tick ------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        # all PLC I/O of one tick shares one budget (agent.io.plant)
        until = now + self.plant.budget_s
        readings, answered = await self.plant.read_signals(now, until)
        if self.plant.watchdog_due(now):
            machine = self.controller.machine
            await self.plant.within(until, self.plant.check_watchdog(
                now, machine.outputs_safe or machine.state is State.STARTING))
        decision = self.controller.tick(readings, now, plc_reachable=answered,
                                        plc_watchdog_ok=self.plant.watchdog_configured,
                                        plc_fell_back=self.plant.watchdog_latched)
        decided_at = asyncio.get_running_loop().time()
        faultinject.checkpoint()  # test-only stall point between a decision and its write
        self.telemetry.poll(self.controller, now)
        await self.plant.within(until, self._apply(decision, decided_at))
        await self.plant.within(until, self.plant.heartbeat(now))
        # the complete tick ends here: kick right after the heartbeat write, then guard upkeep
        if await self.guard.after_tick(now, self.plant.connected, self.controller.last_written):
            if not self._hang_handled:
                await self._on_hang(asyncio.get_running_loop().time())
            self._hang_handled = False  # re-armed: the next fire is a new hang
        await self._shadow(now)
        if self._observes and not self.controller.machine.outputs_safe and now >= self._observe_at:
            await self._observe_outputs(now)
        await self._seed_authority()
        self._confirm_window(now)
        self._schedule()
        self.panel.after_tick(now, self._indication())

    async def _shadow(self, now: float) -> None:
        """Shadow mode: compare live recommendations with what the PLC holds (after the
        complete tick; only while some are live). Never writes anything."""
        book = self.controller.recommendations
        if self.controller.machine.mode is not Mode.SHADOW or not book.wanted:
            return
        actual = await self.plant.read_outputs()
        self.controller.observed(actual)
        if any(v is not None for v in actual.values()):
            self.telemetry.shadow(book.shadow(actual, now))

    async def _observe_outputs(self, now: float) -> None:
        """Read what the outputs hold (at start, then every OBSERVE_S while not safe): a local
        ramp starts from there, not from an old write of the agent's (a PLC program or an
        operator may have moved them)."""
        self._observe_at = now + OBSERVE_S
        self.controller.observed(await self.plant.read_outputs())

    async def _seed_authority(self) -> None:
        """Write authority was just gained: read what the PLC's outputs hold, so active
        control starts from there (within rate limits), not from the agent's last write."""
        if not self.controller.needs_seed:
            return
        actual = await self.plant.read_outputs()
        if all(v is not None for v in actual.values()):
            self.controller.seed(actual)
            log.info("write authority: starting from what the PLC holds: %s",
                     ", ".join(f"{k}={v:g}" for k, v in actual.items() if v is not None))

    # --- decisions -----------------------------------------------------------------------

    async def _apply(self, decision: Decision, decided_at: float | None = None) -> None:
        """Write what the controller decided (at loop time ``decided_at``, default now);
        report to it what the PLC acknowledged and, for the safe set, read back.

        Once the native watchdog has fired, the agent enters FAILSAFE ("agent hang") before
        anything else, and no decision but the safe set reaches the PLC (agent.io.plant's
        gate); "safe state written" is logged only for what the PLC acknowledged.

        The write goes out first, then the decision is noted (telemetry, audit, LEDs, the
        twin): the notes wake worker threads that would otherwise hold the GIL while the
        frame waits to be sent."""
        loop = asyncio.get_running_loop()
        if decided_at is None:
            decided_at = loop.time()
        if not decision.writes:
            self._note(decision)
            return
        try:
            if self.guard.fired() and not self._hang_handled:
                await self._on_hang(loop.time())
            values: Mapping[str, float] = decision.writes
            result = await self.plant.write(values, safe=decision.safe, decided_at=decided_at)
        finally:
            self._note(decision)
        if result is None:
            self._count("write_failures")
            if decision.safe:
                self._count("safe_write_failures")
                log.warning("safe state NOT written (%s): PLC unreachable (%s); again next tick",
                            decision.reason, self.plant.plc.session.disconnect_reason())
            return
        acked = {k: values[k] for k in result.written}
        confirmed: set[str] | None = None
        if decision.safe:
            confirmed = await self.plant.read_back(values, acked) if acked else set()
            if acked:
                self._count("safe_writes")
                log.info("safe state written (%s), acknowledged: %s", decision.reason,
                         ", ".join(f"{k}={v:g}" for k, v in acked.items()))
            if not result.ok:
                self._count("safe_write_failures")
                log.warning("safe state write FAILED (%s): %s; again next tick", decision.reason,
                            "; ".join(f"{k}: {e}" for k, e in result.failed.items()))
            elif confirmed != set(acked):
                log.warning("safe state written but not read back for %s; again next tick",
                            ", ".join(sorted(set(acked) - confirmed)))
        if not result.ok:
            self._count("write_failures")
        self.controller.written(acked, confirmed, loop.time())

    async def _on_hang(self, now: float) -> None:
        """Python runs again after the native watchdog fired: FAILSAFE, "agent hang"."""
        self._hang_handled = True
        log.error("agent hang: the loop missed its %.3f s watchdog deadline; FAILSAFE",
                  self.guard.deadline_s)
        await self._apply(self.controller.fault(
            now, f"agent hang: the loop missed its {self.guard.deadline_s:g} s watchdog "
                 "deadline"))

    def _act(self, decision: Decision) -> None:
        """Apply a decision taken outside a tick (twin message, timer) as soon as possible."""
        if decision.writes:
            self._spawn(self._apply(decision, asyncio.get_running_loop().time()),
                        "safe-state write")
        else:
            self._note(decision)
        self._schedule()

    def _note(self, decision: Decision) -> None:
        """Telemetry, audit, recent events, LEDs and the twin hear of every decision."""
        self.telemetry.decision(decision)
        self._audit_decision(decision)
        self.events.decision(decision, time.time())
        if decision.transitions or decision.link_events or decision.authority:
            self.panel.show(self._indication())
        if ((decision.transitions or decision.authority) and self.link is not None
                and self.link.connected):
            self._spawn(self._send_status(), "status to twin")

    def _indication(self) -> Indication:
        link = self.controller.link.value if self.controller.twin else "none"
        return indication(self.controller.machine, self.controller.authority, link,
                          self.profile.recovery.policy, not self.controller.unconfirmed)

    def _schedule(self) -> None:
        """The controller's next deadline as the one timer (left alone while unchanged:
        every tick and heartbeat asks, and the deadline rarely moves).

        asyncio waits in whole milliseconds, rounded up (epoll), so a timer at the deadline
        fires up to 1 ms late: the timer is set TIMER_LEAD_S early and :meth:`_on_timer`
        sleeps out the rest (under a millisecond and a half, only when a deadline is due:
        the twin is late or lost, a hold-off ends)."""
        deadline = self.controller.next_deadline()
        timer = self._timer
        if timer is not None:
            if deadline is not None and self._timer_deadline == deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer_deadline = deadline
            self._timer = asyncio.get_running_loop().call_at(
                deadline - TIMER_LEAD_S, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        early = deadline - loop.time()
        if early > 0:
            time.sleep(early)  # clock_nanosleep: microseconds, not the loop's milliseconds
        self._act(self.controller.on_timer(max(loop.time(), deadline)))

    # --- twin link callbacks -------------------------------------------------------------

    def _on_message(self, msg: Message, t: float, link: Link) -> None:
        if link is not self.link and isinstance(msg, Heartbeat | Bye):
            return  # a replaced link's last frames: its session is over
        if isinstance(msg, Heartbeat):
            self._act(self.controller.on_heartbeat(msg, t))
        elif isinstance(msg, Bye):
            self._act(self.controller.on_bye(msg, t))
        elif isinstance(msg, Recommend):
            # bound to the session it came on; from a replaced link it is stale_session
            origin = link.delivering if link is self.link else None
            verdict = self.controller.on_recommend(msg, t, origin)
            self.telemetry.verdict(verdict, t)
            link.reply(verdict.to_message())  # within the link's per-second reply budget
        elif isinstance(msg, Ack):
            self.telemetry.on_ack(msg.upto)
        elif isinstance(msg, ConfigPush):
            self._spawn(self._config_push(msg.bundle), "config push")

    def _on_connection(self, up: bool, reason: str, t: float, link: Link) -> None:
        if link is not self.link:  # a replaced link ending late: _relink handled it
            log.info("old twin link %s: %s (ignored)", "up" if up else "down", reason)
            return
        log.info("twin link %s: %s", "up" if up else "down", reason)
        if up:
            self._link_sessions += 1
            if link.session is not None:
                self.controller.on_session(link.session)
            # the twin hears the agent's state as soon as the session is up (PROTOCOL.md §3.2)
            self._spawn(self._send_status(), "status to twin")
            if self._outbox:
                self._spawn(self._flush_outbox(), "config results")
        self.telemetry.on_connection(up, t)
        if not up:
            self._act(self.controller.on_disconnect(t))

    async def _status_loop(self) -> None:
        """The agent's own heartbeat to the twin (also sent when a session comes up and on
        every state change)."""
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            if self.link is not None and self.link.connected:
                await self._send_status()

    async def _send_status(self) -> None:
        self._status_seq += 1
        await self._send(Status(
            state=self.controller.state.value,
            mode=self.controller.machine.mode.value,
            # a version-2 field: only to a twin whose hello said 2 (PROTOCOL.md §3.4)
            authority=(self.controller.authority.state.value
                       if self.link is not None and self.link.twin_protocol >= 2 else None),
            seq=self._status_seq,
            sent_ms=time.time_ns() // 1_000_000,
        ))

    # --- operator: status and acknowledgement ----------------------------------------------

    def status_snapshot(self) -> StatusSnapshot:
        """What ``twinguard status`` shows (no I/O but the real-time read-back from /proc)."""
        loop = asyncio.get_running_loop()
        pump = self.telemetry.pump
        return build_snapshot(
            self.controller, now=loop.time(), wall=time.time(), started=self._started,
            plc=self.plant.plc.stats(), loop=self.stats, watchdog=self.guard.stats().watchdog,
            watchdog_kind="native" if self.guard.native else "python",
            backlog=pump.spool.backlog() if pump is not None else None,
            config_version=self.session.version, events=self.events,
            twin_connected=None if self.link is None else self.link.connected,
            plc_watchdog=self.plant.watchdog_read,
            link=None if self.link is None else self.link.counters,
            realtime=None if self.realtime is None else self.realtime.status(),
            policy=policy_status(self.telemetry.minimiser.policy,
                                 self.telemetry.minimiser if pump is not None else None),
        )

    async def console_ack(self, source: str, who: str) -> tuple[bool, str]:
        """An operator's acknowledgement (reset button or ``twinguard ack``)."""
        now = asyncio.get_running_loop().time()
        decision, refused = self.controller.ack(now, source)
        if refused is not None:
            log.warning("ack from %s (%s) refused: %s", source, who, refused)
            self.events.add(time.time(), "ack", f"refused ({source}): {refused}")
            self._audit(AuditKind.ACK, source=source, who=who, refused=refused)
            return False, refused
        self._audit(AuditKind.ACK, source=source, who=who,
                    state=self.controller.state.value)
        self._act(decision)
        return True, self.controller.machine.cause

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", name, exc_info=t.exception())

        task.add_done_callback(done)


    # --- configuration push and audit ----------------------------------------------------

    def _audit(self, kind: AuditKind, **fields: Any) -> None:
        """Append an audit record on the worker thread (in order; never blocks the loop)."""
        audit = self.session.audit
        if audit is None:
            return

        def append() -> None:
            try:
                audit.append(kind, **fields)
            except Exception:  # an audit failure must not stop the plant's guard
                log.exception("audit record %s could not be written", kind.value)

        with contextlib.suppress(RuntimeError):  # the worker is shut down: stopping
            self._worker.submit(append)

    def _audit_decision(self, decision: Decision) -> None:
        for tr in decision.transitions:  # acks themselves: console_ack (with who acked)
            kind, fields = transition_record(tr.old.value, tr.new.value, tr.event.value,
                                             tr.cause)
            self._audit(kind, **fields)
        for at in decision.authority:
            self._audit(AuditKind.AUTHORITY, old=at.old.value, new=at.new.value,
                        event=at.event.value, cause=at.cause)
        now = time.monotonic()
        for ev in decision.link_events:
            if LinkState.LATE in (ev.old, ev.new):
                continue  # LATE is a warning: telemetry and the log have it
            if now - self._link_audited < LINK_AUDIT_MIN_S:
                self._link_unaudited += 1
                continue
            self._audit(AuditKind.TWIN_LINK, old=ev.old.value, new=ev.new.value, cause=ev.cause,
                        edges_not_recorded=self._link_unaudited)
            self._link_audited, self._link_unaudited = now, 0

    async def _config_push(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        m = self.controller.machine
        situation = Situation(m.mode, m.outputs_safe, time.time())
        step = await loop.run_in_executor(self._worker, self.session.push, data, situation,
                                          loop.time())
        await self._config_step(step)

    async def _flush_outbox(self) -> None:
        while self._outbox:
            if not await self._send(self._outbox[0]):
                return
            self._outbox.popleft()

    def _confirm_window(self, now: float) -> None:
        """While a version is pending: is the twin ALIVE on a session begun after the apply?"""
        if self.session.pending is None or self._config_busy:
            return
        alive = self.controller.link is LinkState.ALIVE and self._link_sessions > 0

        async def check() -> None:
            try:
                loop = asyncio.get_running_loop()
                step = await loop.run_in_executor(self._worker, self.session.tick, now, alive)
                await self._config_step(step)
            finally:
                self._config_busy = False

        self._config_busy = True
        self._spawn(check(), "config confirmation")

    async def _config_step(self, step: Step) -> None:
        """Answer the twin, then apply what the session decided (on the loop)."""
        for result in step.results:
            if not await self._send(result):
                self._outbox.append(result)
        if step.config is None:
            return
        self.config = step.config
        self.controller.recommendations.max_validity_s = step.config.max_validity_s
        if step.mode is not None and step.mode is not self.controller.machine.mode:
            self.controller.set_mode(step.mode)
        if step.restart:
            log.warning("configuration version %d needs a restart: handing over to a new "
                        "agent process", self.session.version)
            self._spawn(self._hand_over(), "hand-over")
            return
        if step.relink:
            self._relink(step.config)

    async def _hand_over(self) -> None:
        """Restart without stopping production (agent.runtime.handover): tick on until the
        successor is ready, then stop; if it cannot be made ready, a plain restart."""
        if self._successor is not None or self._stop.is_set():
            return
        try:
            successor = handover.spawn_successor()
        except OSError as exc:
            log.error("hand-over: cannot start a successor (%s): stopping with exit %d for "
                      "systemd to restart the agent", exc, EXIT_RESTART)
            self._exit_code = EXIT_RESTART
            self.request_stop()
            return
        self._successor = successor
        if not await successor.wait_ready():
            self._successor = None
            log.error("hand-over failed: stopping with exit %d for systemd to restart the "
                      "agent", EXIT_RESTART)
            self._exit_code = EXIT_RESTART
        else:
            log.info("hand-over: successor pid %d is ready; stopping", successor.pid)
        self.request_stop()

    def _relink(self, config: AgentConfig) -> None:
        """Replace the twin link: the old session ends now (the twin is lost: safe state)."""
        old = self.link
        try:
            self.link = self._make_link(config)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.error("new twin settings unusable (%s): no twin link until reverted", exc)
            self.link = None
        self._link_sessions = 0
        if old is not None:
            old.close()
        now = asyncio.get_running_loop().time()
        self.telemetry.on_connection(False, now)  # the old link's own report is ignored
        self._act(self.controller.on_disconnect(now))
        if self.link is not None:
            self._spawn(self.link.run(), "twin link")
