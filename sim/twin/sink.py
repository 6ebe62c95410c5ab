"""What the simulated twin does with telemetry: dedup, contiguous frontier, ack decisions.

Pure bookkeeping (no I/O, no clock). The agent sends ``resume {after}`` once per connection,
then ``telemetry {seq, prev, ...}`` records, where ``prev`` is the record before ``seq`` in
its spool (nothing exists between them). The sink keeps the *frontier* F: every record of the
agent up to F is held here (or was declared gone by a resume). A record whose ``prev`` is at
or below F and whose ``seq`` is above it moves F to ``seq``; records that arrive ahead of the
frontier (live data sent before the backlog) wait in ``ahead`` until the chain reaches them::

    F=100 ── receive(seq=130, prev=129) ── waits in ahead {129: 130}
          ── receive(seq=101, prev=100) ── F=101 ... (backlog) ... F=129 → F=130

Counters: ``duplicates`` (a seq received before, or at/below F: at-least-once resends),
``discontinuities`` (a record whose ``prev`` is not the seq received just before it on the
same connection: the live/history switch or a real hole), ``holes`` (records waiting
ahead of the frontier now). ``order`` keeps every new seq in arrival order.

The data-minimisation header (PROTOCOL.md §7.2.1) of every new record is recorded:
``devices`` (the device names records carried, with counts), ``policies`` (each policy
``id`` seen, with its header and count), ``unheadered`` (records without one: the spool's
own events), ``signal_names`` (how many poll records carried each signal / vote name, and
with a ``raw`` value), the last ``POLLS_MAX`` poll records and the ``aggregate`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORDER_MAX = 2_000_000
EVENTS_MAX = 20_000
POLLS_MAX = 2_000


@dataclass
class Sink:
    frontier: int | None = None
    acked: int | None = None  # last frontier acknowledged
    received: set[int] = field(default_factory=set)
    order: list[int] = field(default_factory=list)
    historical: int = 0
    duplicates: int = 0
    discontinuities: int = 0
    resumes: int = 0
    ahead: dict[int, int] = field(default_factory=dict)  # prev -> seq, above the frontier
    events: list[dict[str, Any]] = field(default_factory=list)
    last_poll: dict[str, Any] | None = None
    bad_bodies: int = 0
    devices: dict[str, int] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> header, count
    unheadered: int = 0
    signal_names: dict[str, dict[str, int]] = field(default_factory=dict)
    polls: list[dict[str, Any]] = field(default_factory=list)
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    _last_on_conn: dict[int, int] = field(default_factory=dict)
    _since_ack: int = 0

    def resume(self, conn: int, after: int) -> None:
        """A connection starts: everything up to ``after`` is acknowledged or gone."""
        self.resumes += 1
        self._last_on_conn[conn] = after
        if self.frontier is None or after > self.frontier:
            self.frontier = after
            self._advance()

    def receive(self, conn: int, seq: int, prev: int, historical: bool) -> bool:
        """Record one telemetry message; True if it was new (not a duplicate)."""
        last = self._last_on_conn.get(conn)
        if last is not None and prev != last:
            self.discontinuities += 1
        self._last_on_conn[conn] = seq
        if seq in self.received or (self.frontier is not None and seq <= self.frontier):
            self.duplicates += 1
            return False
        self.received.add(seq)
        if len(self.order) < ORDER_MAX:
            self.order.append(seq)
        self.historical += historical
        if self.frontier is None:
            self.frontier = prev  # no resume seen (should not happen): trust the first
        self.ahead[max(prev, self.frontier)] = seq
        self._advance()
        return True

    def _advance(self) -> None:
        assert self.frontier is not None
        while self.frontier in self.ahead:
            old = self.frontier
            self.frontier = self.ahead.pop(old)
            self._since_ack += 1
        stale = [p for p, s in self.ahead.items() if s <= self.frontier]
        for p in stale:
            del self.ahead[p]

    def ack_due(self, every: int) -> int | None:
        """The frontier to acknowledge if ``every`` records advanced it since the last ack."""
        if self.frontier is None or self.frontier == self.acked:
            return None
        if self._since_ack >= every:
            return self.mark_acked()
        return None

    def mark_acked(self) -> int:
        assert self.frontier is not None
        self.acked = self.frontier
        self._since_ack = 0
        return self.frontier

    def note_body(self, seq: int, body: dict[str, Any] | None) -> None:
        """Keep event records (and the latest poll) for the stats."""
        if body is None:
            self.bad_bodies += 1
            return
        self._note_header(body)
        kind = body.get("type")
        if kind == "poll":
            self.last_poll = body
            self._note_names(body)
            self.polls = [*self.polls[-(POLLS_MAX - 1):], _plain(body)]
        elif kind == "aggregate":
            if len(self.aggregates) < EVENTS_MAX:
                self.aggregates.append({"seq": seq, **_plain(body)})
        elif len(self.events) < EVENTS_MAX:
            self.events.append({"seq": seq, **{k: _plain(v) for k, v in body.items()}})

    def _note_header(self, body: dict[str, Any]) -> None:
        device, policy = body.get("device"), body.get("policy")
        if not isinstance(device, str) or not isinstance(policy, dict) \
                or not isinstance(policy.get("id"), str):
            self.unheadered += 1
            return
        self.devices[device] = self.devices.get(device, 0) + 1
        seen = self.policies.setdefault(policy["id"], {"header": _plain(policy), "count": 0})
        seen["count"] += 1

    def _note_names(self, poll: dict[str, Any]) -> None:
        for section in ("signals", "votes"):
            entries = poll.get(section)
            if not isinstance(entries, dict):
                continue
            for name, entry in entries.items():
                counts = self.signal_names.setdefault(f"{section}.{name}",
                                                      {"records": 0, "raw": 0})
                counts["records"] += 1
                counts["raw"] += isinstance(entry, dict) and entry.get("raw") is not None

    def stats(self) -> dict[str, Any]:
        return {
            "frontier": self.frontier, "acked": self.acked, "received": len(self.received),
            "historical": self.historical, "duplicates": self.duplicates,
            "discontinuities": self.discontinuities, "holes": len(self.ahead),
            "resumes": self.resumes, "events": len(self.events), "bad_bodies": self.bad_bodies,
            "devices": dict(self.devices), "policies": {k: dict(v) for k, v in
                                                        self.policies.items()},
            "unheadered": self.unheadered, "aggregates": len(self.aggregates),
            "max_seq": max(self.received) if self.received else None,
        }


    def report(self, seqs: bool = False, events: bool = False,
               policy: bool = False) -> dict[str, Any]:
        """What a twin's ``telemetry`` command answers: :meth:`stats` and ``last_poll``;
        ``seqs`` adds ``order``, ``events`` the ``event_records``, ``policy`` what data
        minimisation is judged by (``signal_names``, ``polls``, ``aggregate_records``)."""
        out: dict[str, Any] = self.stats()
        if seqs:
            out["order"] = list(self.order)
        if events:
            out["event_records"] = list(self.events)
        if policy:
            out["signal_names"] = {k: dict(v) for k, v in self.signal_names.items()}
            out["polls"] = list(self.polls)
            out["aggregate_records"] = list(self.aggregates)
        out["last_poll"] = self.last_poll
        return out


def _plain(value: Any) -> Any:
    """JSON-able copy of a msgpack value (bytes become hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
