"""Twin authority: who decides the outputs, the twin (REMOTE) or local control (sans-IO).

The second of the agent's two axes. *Plant safety* (``agent.core.safety``) answers "is the
plant safe?" and moves only on hazards; *twin authority* answers "who is in charge?" and
moves on the twin's presence, the mode and the plant's state. The twin's loss changes who is
in charge, not whether the plant runs: it **sheds** authority to local control, as a
FOUNDATION Fieldbus block in RCas/ROut sheds on ``SHED_RCAS``/``SHED_ROUT``; what each output
does then is its profile policy (``on_twin_loss``, applied by the controller).

States::

    LOCAL ──eligible──▶ RETURNING ──hold-off elapsed (auto) / ACK──▶ REMOTE
      ▲                     │                                          │
      └──────── shed ───────┴──────────────── shed ────────────────────┘

*Eligible*: mode ACTIVE, the twin ALIVE on a current session, the plant NORMAL. *Shed*:
anything else that ends eligibility for good — the twin LOST (silence, ``bye``,
``healthy: false``, a dropped link or a bad frame), a new epoch, the mode leaving ACTIVE, the
plant leaving NORMAL, the agent stopping. LATE is neither: REMOTE keeps authority while
the twin is late (a warning, not a loss), a RETURNING climb restarts (``return_holdoff_s``
is of *continuous* healthy heartbeats), LOCAL stays.

The one literal table is :data:`TRANSITIONS`; the return policy (``[authority] return``)
decides the two cells that depend on it (:func:`transitions_for`). A (state, event) pair the
table does not list drives LOCAL with the cause "unexpected EVENT in STATE": LOCAL is this
axis' safe side. An ACK that changes nothing is a :class:`Refusal`. The agent starts LOCAL
("agent started"); the first takeover follows the same return rule as every later one.
LOCAL and RETURNING carry the shed reason and the time it happened.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from agent.model.profile import AuthoritySettings, ReturnPolicy

log = logging.getLogger(__name__)


class Authority(enum.Enum):
    LOCAL = "local"  # local control decides (the PLC program, the agent's local policy)
    RETURNING = "returning"  # eligible again; waiting for the hold-off (auto) or an ack
    REMOTE = "remote"  # the twin's recommendations are written, within limits


class AuthEvent(enum.Enum):
    SHED = "shed"  # eligibility ended for good (a loss); the reason comes with it
    LATE = "late"  # the twin's heartbeat is late: not a loss, not healthy either
    ELIGIBLE = "eligible"  # mode ACTIVE, twin ALIVE on a current session, plant NORMAL
    HOLDOFF_ELAPSED = "holdoff_elapsed"  # auto return: return_holdoff_s continuously eligible
    ACK = "ack"  # operator: button or `twinguard ack`


_A = Authority
_E = AuthEvent

# The cells that do not depend on the return policy; see transitions_for for the two that do.
TRANSITIONS: dict[Authority, dict[AuthEvent, Authority]] = {
    _A.LOCAL: {
        _E.SHED: _A.LOCAL,
        _E.LATE: _A.LOCAL,
        _E.ELIGIBLE: _A.RETURNING,
        _E.ACK: _A.LOCAL,  # refused: nothing to acknowledge
    },
    _A.RETURNING: {
        _E.SHED: _A.LOCAL,
        _E.LATE: _A.LOCAL,  # the hold-off is of continuous healthy heartbeats: start again
        _E.ELIGIBLE: _A.RETURNING,
        _E.ACK: _A.REMOTE,  # manual return; under auto a deliberate act cuts the hold-off
    },
    _A.REMOTE: {
        _E.SHED: _A.LOCAL,
        _E.LATE: _A.REMOTE,  # a warning only
        _E.ELIGIBLE: _A.REMOTE,
        _E.ACK: _A.REMOTE,  # refused: nothing to acknowledge
    },
}


def transitions_for(policy: ReturnPolicy) -> dict[Authority, dict[AuthEvent, Authority]]:
    """The table under ``policy``: only AUTO lets a RETURNING climb complete on
    HOLDOFF_ELAPSED (under MANUAL that event is unexpected, so it drives LOCAL)."""
    table = {state: dict(row) for state, row in TRANSITIONS.items()}
    if policy is ReturnPolicy.AUTO:
        table[Authority.RETURNING][AuthEvent.HOLDOFF_ELAPSED] = Authority.REMOTE
    return table


@dataclass(frozen=True)
class AuthTransition:
    """``old`` --``event``--> ``new`` at monotonic ``t``; ``cause`` is for people."""

    old: Authority
    event: AuthEvent
    new: Authority
    cause: str
    t: float


@dataclass(frozen=True)
class AuthRefusal:
    """An ACK that changed nothing on this axis, and why."""

    state: Authority
    reason: str
    t: float


class AuthorityMachine:
    """The twin's authority over the outputs; see the module docstring."""

    def __init__(self, settings: AuthoritySettings, now: float = 0.0) -> None:
        self._settings = settings
        self._table = transitions_for(settings.return_policy)
        self._state = Authority.LOCAL
        self._cause = "agent started"
        self._since = now  # when the current state was entered (the shed time in LOCAL)
        self._shed_at: float | None = now
        self._shed_reason = "agent started"

    @property
    def state(self) -> Authority:
        return self._state

    @property
    def cause(self) -> str:
        return self._cause

    @property
    def shed_reason(self) -> str | None:
        """Why the twin has no authority (None while REMOTE)."""
        return None if self._state is Authority.REMOTE else self._shed_reason

    @property
    def shed_at(self) -> float | None:
        """When authority was shed (monotonic; None while REMOTE)."""
        return None if self._state is Authority.REMOTE else self._shed_at

    @property
    def settings(self) -> AuthoritySettings:
        return self._settings

    def holdoff_deadline(self) -> float | None:
        """When an auto return completes if eligibility holds (for the caller's timer)."""
        if self._state is not Authority.RETURNING:
            return None
        if self._settings.return_policy is not ReturnPolicy.AUTO:
            return None
        return self._since + self._settings.return_holdoff_s

    def handle(self, event: AuthEvent, cause: str,
               now: float) -> AuthTransition | AuthRefusal | None:
        """Apply one event: a transition if the state changed (or the event was unexpected),
        a refusal for an ACK that changes nothing, None otherwise."""
        old = self._state
        new = self._table[old].get(event)
        if event is AuthEvent.HOLDOFF_ELAPSED and new is not None:
            deadline = self.holdoff_deadline()
            if deadline is None or now < deadline:
                new = None  # not really elapsed: a caller bug
        if event is AuthEvent.ACK and new is old:
            return AuthRefusal(old, f"twin authority is {old.name}: nothing to acknowledge", now)
        if new is None:
            cause = f"unexpected {event.name} in {old.name}"
            log.warning("%s: authority LOCAL", cause)
            new = Authority.LOCAL
        if new is old:
            if event is AuthEvent.SHED:  # the latest reason to stay LOCAL (not a new shed)
                self._cause = self._shed_reason = cause
            return None
        self._state = new
        self._cause = cause
        self._since = now
        if new is Authority.LOCAL:
            self._shed_reason = cause
            self._shed_at = now
        return AuthTransition(old, event, new, cause, now)

    def step(self, event: AuthEvent, cause: str, now: float) -> list[AuthTransition]:
        """Apply ``event``, then complete an auto return whose hold-off has elapsed."""
        out: list[AuthTransition] = []
        result = self.handle(event, cause, now)
        if isinstance(result, AuthTransition):
            out.append(result)
        deadline = self.holdoff_deadline()
        if event is AuthEvent.ELIGIBLE and deadline is not None and now >= deadline:
            done = self.handle(AuthEvent.HOLDOFF_ELAPSED,
                               f"{self._settings.return_holdoff_s:g} s of continuous healthy "
                               "heartbeats", now)
            if isinstance(done, AuthTransition):
                out.append(done)
        return out
