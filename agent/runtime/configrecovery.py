"""At start: no stored configuration without an audit record of who signed it.

A push is stored as a journal (``agent.io.configstore``): staged, audited
(``bundle_accepted``), committed. A crash (``kill -9``, power cut) can stop it anywhere;
before the agent uses what is in force, ``recover`` settles what it finds:

- a **staged** version whose ``bundle_accepted`` record was written (and no
  ``bundle_rejected`` after it: the session refuses a version it could not put in force):
  the crash came after the commit point, so it is committed (in force now, with a fresh
  confirmation window like any unconfirmed version);
- a staged version refused that way is removed;
- a staged version without either record: it never came in force and the twin never
  heard back; it is recorded ``bundle_rejected`` with reason ``interrupted`` and the
  signers its stored bundle names, then its files are removed (its version number stays burnt);
- any other stored version without a ``bundle_accepted`` record (written by an agent older
  than the journal, which audited after the commit): it gets one now, ``recovered: true``,
  with the signers its stored bundle names and whether it is the version in force.

The record is written before the files are touched, so a crash inside ``recover`` at worst
writes the same record again at the next start; it never loses one. Errors of the store or
the audit log propagate (``OSError`` / ``sqlite3.Error``): the agent refuses to start rather
than run a configuration whose signers it cannot record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.config.bundle import decode
from agent.io.audit import AuditKind, AuditLog
from agent.io.configstore import ConfigStore
from agent.model.errors import BundleError

__all__ = ["INTERRUPTED", "Recovery", "recover"]

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # bundle_rejected reason: stopped before the bundle was audited


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did (versions, ascending)."""

    committed: int = 0  # the staged version put in force (0: none)
    abandoned: int = 0  # the staged version removed (0: none)
    recorded: tuple[int, ...] = ()  # versions given a ``recovered`` bundle_accepted record


def signers_of(bundle: bytes | None) -> list[str]:
    """The key ids a stored bundle's signatures name, sorted, once each ([] if the bundle is
    missing or cannot be decoded; it was verified when it was accepted)."""
    if bundle is None:
        return []
    try:
        return sorted(set(decode(bundle).key_ids))
    except BundleError:
        return []


def recover(store: ConfigStore, audit: AuditLog) -> Recovery:
    """Settle the store against the audit log (see the module docstring)."""
    audit.remove_stale_temps()
    staged = store.recover()
    audited = audit.versions(AuditKind.BUNDLE_ACCEPTED)
    refused = audit.versions(AuditKind.BUNDLE_REJECTED)
    committed = abandoned = 0
    if staged and staged in audited and staged not in refused:
        store.commit(staged)
        committed = staged
        log.warning("configuration version %d was audited but not in force when the agent "
                    "stopped: it is in force now", staged)
    elif staged:
        if staged not in refused:
            audit.append(AuditKind.BUNDLE_REJECTED, version=staged, reason=INTERRUPTED,
                         detail="the agent stopped before the bundle was audited; never in "
                                "force", keys=signers_of(store.bundle_of(staged)))
        store.abandon(staged)
        abandoned = staged
    recorded = []
    current = store.current_version
    for version in store.versions():
        if version in audited:
            continue
        keys = signers_of(store.bundle_of(version))
        audit.append(AuditKind.BUNDLE_ACCEPTED, version=version, keys=keys, recovered=True,
                     in_force=version == current,
                     detail="stored without an audit record (the agent stopped before it was "
                            "written); recorded at start from the stored bundle")
        recorded.append(version)
        log.warning("configuration version %d had no audit record: recorded now (signed by "
                    "%s)", version, ", ".join(keys) or "nobody named")
    return Recovery(committed, abandoned, tuple(recorded))
