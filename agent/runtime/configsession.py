"""The agent's side of configuration push: what is in force, pushes, the confirmation window.

Where the agent's configuration comes from (``twinguard run --config C --state-dir D``):

- ``C`` is the *factory* configuration, version 0. Its ``[[trust]]`` store is the first one;
  relative paths in every configuration (``twin.ca`` ...) resolve against ``C``'s directory.
- Pushed configurations live in ``D/config`` (``agent.io.configstore``). At start, if the
  store's current version is above 0 it wins over ``C`` (versions only go up; ``C`` is 0).
- The audit log is ``D/audit.sqlite`` (``agent.io.audit``).

A push (``push``) is evaluated (``agent.config.push``) against what is in force; refused ones
are answered and audited. An accepted one is stored as a journal: the version counter, the
staged files, then its ``bundle_accepted`` audit record (who signed it), and only then the
``current`` pointer; a version whose record cannot be written is abandoned and refused
(``store_failed``): no configuration comes in force without a record of its signers. At
start, ``agent.runtime.configrecovery`` settles what a crash left half done before anything
is loaded. The accepted version is then applied:

- **live** if it changes only the mode, the trust store, the confirmation window, the
  recommendation limits or the twin connection (``Step.relink``: the runtime re-dials);
- **by restart** if it changes ``telemetry``, ``spool`` or ``overrides`` (they shape the
  spool, the controller and the native guard's pre-encoded safe frames, all built at start):
  the result says "restart required", the runtime writes the safe state and exits with
  ``EXIT_RESTART`` (systemd's ``Restart=always`` starts it again on the new version).

Then the **confirmation window** (``confirm.window_s`` of the new config): ``tick(now,
twin_alive)`` confirms the version (``good`` pointer) once the twin is ALIVE after the
apply; if the window closes first, ``current`` goes back to the last good version (or the
factory one), which is applied the same way (live or by restart), reported ``reverted`` and
audited. A version still unconfirmed when the agent starts (it restarted to apply it, or
crashed inside its window) gets a fresh window from the start.

``now`` is monotonic seconds from the caller; the wall clock is only read by the caller
for bundle expiry (``Situation.wall_now``). Store and audit failures are logged and counted
(``errors``): a bundle that cannot be stored or audited is refused with ``store_failed``.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.agentconfig import AgentConfig, parse_config
from agent.config.effective import effective_profile
from agent.config.policyconfig import check_policy
from agent.config.push import Accepted, Current, Situation, evaluate
from agent.config.roles import changed_paths
from agent.io.audit import AuditKind, AuditLog, audit_path
from agent.io.configstore import ConfigStore
from agent.model.errors import ConfigError, Problem
from agent.model.messages import TEXT_MAX, ConfigResult
from agent.model.mode import Mode
from agent.model.profile import Profile
from agent.runtime.configrecovery import recover

__all__ = ["EXIT_RESTART", "RESTART_PREFIXES", "ConfigSession", "Step"]

log = logging.getLogger(__name__)

EXIT_RESTART = 75  # EX_TEMPFAIL: systemd (Restart=always) starts the agent again
RESTART_PREFIXES = ("telemetry.", "spool.", "overrides.")


@dataclass(frozen=True)
class Step:
    """What the runtime must do after a push or a tick."""

    results: tuple[ConfigResult, ...] = ()  # to send to the twin
    config: AgentConfig | None = None  # a new configuration is in force (apply it)
    mode: Mode | None = None  # set this control mode (with ``config``)
    relink: bool = False  # the twin connection settings changed: re-dial
    restart: bool = False  # write the safe state and exit with EXIT_RESTART


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_MAX else flat[: TEXT_MAX - 3] + "..."


def _read_data(config: AgentConfig) -> tuple[Mapping[str, Any], Path]:
    path = Path(config.source)
    if config.source == AgentConfig.default().source or not path.is_file():
        return {}, Path.cwd()
    return tomllib.loads(path.read_text(encoding="utf-8")), path.parent.resolve()


class ConfigSession:
    """See the module docstring. Build with :meth:`open`."""

    def __init__(self, hardware: Profile, factory: AgentConfig, *,
                 factory_data: Mapping[str, Any], base: Path, store: ConfigStore,
                 audit: AuditLog | None, now: float) -> None:
        self.hardware = hardware
        self.store = store
        self.audit = audit
        self.base = base
        self.errors = 0
        self._factory = (factory, factory_data)
        self.pending: tuple[int, float] | None = None  # (version, window deadline)
        self.version = store.current_version
        config, data = self._load(self.version)
        profile = effective_profile(hardware, config.overrides, config.source)
        check_policy(profile, config.telemetry.policy, config.source)
        self.current = Current(config, data, profile, store.last_version, base)
        if self.version != store.good_version:
            self.pending = (self.version, now + config.confirm_window_s)
            log.warning("configuration version %d is not confirmed yet: %.1f s to see the "
                        "twin", self.version, config.confirm_window_s)

    @classmethod
    def open(cls, hardware: Profile, factory: AgentConfig, state_dir: Path,
             now: float) -> ConfigSession:
        """The session for ``state_dir``; ConfigError if what is in force does not fit the
        profile (or a stored version cannot be parsed), OSError / sqlite3.Error for storage."""
        data, base = _read_data(factory)
        audit = AuditLog(audit_path(state_dir))
        store = ConfigStore(state_dir / "config")
        try:
            recover(store, audit)
        except BaseException:
            audit.close()
            raise
        return cls(hardware, factory, factory_data=data, base=base, store=store, audit=audit,
                   now=now)

    @property
    def config(self) -> AgentConfig:
        return self.current.config

    @property
    def profile(self) -> Profile:
        """The effective profile (hardware profile + the overrides in force)."""
        return self.current.profile

    def _load(self, version: int) -> tuple[AgentConfig, Mapping[str, Any]]:
        if version == 0:
            return self._factory
        stored = self.store.current() if version == self.store.current_version else None
        text = stored.text if stored is not None else \
            self.store.path_of(version).read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([Problem(f"config store v{version}", "(syntax)", str(exc))]) \
                from exc
        return parse_config(data, f"config store v{version}", self.base), data

    def _audit(self, kind: AuditKind, **fields: Any) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, **fields)
        except (OSError, sqlite3.Error):
            self.errors += 1
            log.exception("audit record %s could not be written", kind.value)

    # --- push ----------------------------------------------------------------------------

    def push(self, data: bytes, situation: Situation, now: float) -> Step:
        """Evaluate, store and apply one pushed bundle (see the module docstring)."""
        outcome = evaluate(data, self.current, situation)
        if not isinstance(outcome, Accepted):
            log.warning("config bundle v%s refused: %s: %s", outcome.version,
                        outcome.reason.value, outcome.detail)
            self._audit(AuditKind.BUNDLE_REJECTED, version=outcome.version,
                        reason=outcome.reason.value, detail=outcome.detail,
                        keys=list(outcome.key_ids))
            return Step((ConfigResult(outcome.version or 0, False, outcome.reason.value,
                                      _short(outcome.detail)),))
        restart = any(p.startswith(RESTART_PREFIXES) for p in outcome.changes)
        refused = self._store(outcome, data, restart)
        if refused is not None:
            return Step((refused,))
        old = self.current
        self.current = Current(outcome.config, outcome.data, outcome.profile, outcome.version,
                               self.base)
        self.version = outcome.version
        self.pending = (outcome.version, now + outcome.config.confirm_window_s)
        detail = f"{len(outcome.changes)} changes" + ("; restart required" if restart else "")
        log.info("config bundle v%d accepted (signed by %s): %s", outcome.version,
                 ", ".join(outcome.signers), ", ".join(outcome.changes) or "mode only")
        return self._switch(old, (ConfigResult(outcome.version, True, "accepted", detail),),
                            restart)

    def _store(self, outcome: Accepted, data: bytes, restart: bool) -> ConfigResult | None:
        """The journal of the module docstring; None once in force, else the refusal."""
        version = outcome.version
        try:
            self.store.record_version(version)
            self.store.stage(version, outcome.bundle.config, data)
        except (OSError, ValueError) as exc:
            return self._store_failed(outcome, "could not be stored", str(exc))
        try:
            if self.audit is not None:
                self.audit.append(AuditKind.BUNDLE_ACCEPTED, version=version,
                                  keys=list(outcome.signers), changes=list(outcome.changes),
                                  mode=outcome.config.mode.value, restart=restart)
        except (OSError, sqlite3.Error) as exc:
            self._abandon(version)
            return self._store_failed(outcome, "could not be audited",
                                      f"audit log: {exc}")
        try:
            self.store.commit(version)
        except (OSError, ValueError) as exc:
            self._abandon(version)  # its bundle_rejected record (below) outranks the accepted
            return self._store_failed(outcome, "could not be put in force", str(exc))
        return None

    def _abandon(self, version: int) -> None:
        try:
            self.store.abandon(version)
        except (OSError, ValueError):
            self.errors += 1
            log.exception("config bundle v%d could not be abandoned", version)

    def _store_failed(self, outcome: Accepted, what: str, detail: str) -> ConfigResult:
        self.errors += 1
        log.exception("config bundle v%d %s", outcome.version, what)
        self._audit(AuditKind.BUNDLE_REJECTED, version=outcome.version, reason="store_failed",
                    detail=detail, keys=list(outcome.signers))
        return ConfigResult(outcome.version, False, "store_failed", _short(detail))

    def _switch(self, old: Current, results: tuple[ConfigResult, ...], restart: bool) -> Step:
        new = self.current.config
        if old.config.mode is not new.mode:
            self._audit(AuditKind.MODE_CHANGE, old=old.config.mode.value, new=new.mode.value,
                        version=self.version)
        return Step(results, new, new.mode, relink=old.config.twin != new.twin,
                    restart=restart)

    # --- confirmation window -------------------------------------------------------------

    def tick(self, now: float, twin_alive: bool) -> Step:
        """Confirm the pending version when the twin is ALIVE, revert it when its window
        closes first; nothing to do returns an empty ``Step``."""
        if self.pending is None:
            return Step()
        version, deadline = self.pending
        if twin_alive:
            self.pending = None
            try:
                self.store.confirm(version)
            except (OSError, ValueError):
                self.errors += 1
                log.exception("could not mark configuration version %d good", version)
            self._audit(AuditKind.CONFIG_CONFIRMED, version=version)
            return Step((ConfigResult(version, True, "confirmed", "twin alive"),))
        if now < deadline:
            return Step()
        self.pending = None
        return self._revert(version)

    def _revert(self, version: int) -> Step:
        old = self.current
        try:
            self.store.revert()
            good = self.store.good_version
            config, data = self._load(good)
            profile = effective_profile(self.hardware, config.overrides, config.source)
            check_policy(profile, config.telemetry.policy, config.source)
        except (OSError, ValueError) as exc:  # ConfigError is a ValueError
            self.errors += 1
            log.exception("revert of configuration version %d failed: restarting", version)
            self._audit(AuditKind.CONFIG_REVERTED, version=version, to=None, error=str(exc))
            return Step((ConfigResult(version, False, "reverted", "revert failed: restart"),),
                        restart=True)
        self.current = dataclasses.replace(old, config=config, data=data, profile=profile,
                                           last_version=self.store.last_version)
        self.version = good
        changes = changed_paths(old.data, data)
        restart = any(p.startswith(RESTART_PREFIXES) for p in changes)
        detail = f"twin not alive within the window; back to version {good}"
        log.warning("configuration version %d reverted: %s", version, detail)
        self._audit(AuditKind.CONFIG_REVERTED, version=version, to=good, restart=restart,
                    cause="twin not alive within the confirmation window")
        return self._switch(old, (ConfigResult(version, False, "reverted", _short(detail)),),
                            restart)
