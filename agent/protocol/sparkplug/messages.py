"""An edge node's Sparkplug B messages: NBIRTH, NDATA, NDEATH, the seq counter, aliases.

The builders return a :class:`~.metrics.Payload` (``codec.encode_payload`` makes the bytes)
and check the specification's shape rules, raising ``ValueError`` for a caller's mistake:

* NBIRTH (6_Payloads "NBIRTH"): payload timestamp ``now_ms``
  (``tck-id-payloads-nbirth-timestamp``), seq 0 (``…-nbirth-seq``), a ``bdSeq`` metric
  (UInt64, ``…-nbirth-bdseq``), ``Node Control/Rebirth`` Boolean false
  (``…-nbirth-rebirth-req``; sent without an alias, so a host can always address it by
  name), then the node's metrics, each with a name and an alias
  (``…-alias-birth-requirement``), aliases unique (``…-alias-uniqueness``) and names
  unique, every metric with a timestamp (``…-name-birth-data-requirement``) and a datatype
  (``…-metric-datatype-req``).
* NDATA: timestamp ``now_ms``, the given seq (``…-ndata-seq``), metrics by alias only
  with their names left out (``…-alias-data-cmd-requirement``), each with a timestamp.
* NDEATH: timestamp ``now_ms``, only the ``bdSeq`` metric (UInt64, the same value as the
  NBIRTH of this session: ``…-ndeath-bdseq``), no seq (``…-ndeath-seq``).

``seq`` and ``bdSeq`` both count 0..255 and wrap to 0 (``next_seq``;
``tck-id-payloads-sequence-num-incrementing``, ``…-nbirth-bdseq-inc``).

``bdSeq`` is sent as UInt64, as in the specification's NBIRTH and NDEATH examples (its
PR #317 moved the TCK's own to Int64; hosts read the value either way), and ``bd_seq_of``
reads either. Reading a received payload (``rebirth_requested``, ``bd_seq_of``) raises
``SparkplugError`` for what breaks the rules, as the codec does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from agent.model.errors import SparkplugError

from .metrics import DataType, Metric, Payload

BDSEQ = "bdSeq"
BDSEQ_TYPE = DataType.UInt64
REBIRTH = "Node Control/Rebirth"
RESERVED = frozenset({BDSEQ, REBIRTH})
SEQ_MODULUS = 256


def _check_seq(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEQ_MODULUS:
        raise ValueError(f"{what} must be an int in 0..{SEQ_MODULUS - 1}, got {value!r}")


def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (seq or bdSeq): one more, 255 wraps to 0."""
    _check_seq("seq", seq)
    return (seq + 1) % SEQ_MODULUS


def _stamped(metric: Metric, now_ms: int) -> Metric:
    return metric if metric.timestamp_ms is not None else dataclasses.replace(
        metric, timestamp_ms=now_ms)


def bd_seq_metric(bd_seq: int, now_ms: int) -> Metric:
    """The ``bdSeq`` metric (UInt64, no alias) of an NBIRTH or NDEATH."""
    _check_seq("bd_seq", bd_seq)
    return Metric(name=BDSEQ, alias=None, datatype=BDSEQ_TYPE, value=bd_seq,
                  timestamp_ms=now_ms)


def nbirth(bd_seq: int, metrics: Iterable[Metric], now_ms: int) -> Payload:
    """The NBIRTH payload of a session whose Will carries ``bd_seq``: seq 0, ``bdSeq``,
    ``Node Control/Rebirth`` = false, then ``metrics`` (each with a name and an alias,
    both unique; a metric without a timestamp gets ``now_ms``)."""
    given = [_stamped(m, now_ms) for m in metrics]
    names: set[str] = set()
    aliases: set[int] = set()
    for m in given:
        if m.name is None or m.alias is None:
            raise ValueError(f"NBIRTH metric {m.label} needs both a name and an alias")
        if m.name in RESERVED:
            raise ValueError(f"NBIRTH metric name {m.name!r} is the builder's own")
        if m.name in names:
            raise ValueError(f"NBIRTH metric name {m.name!r} appears twice")
        if m.alias in aliases:
            raise ValueError(f"NBIRTH alias {m.alias} appears twice ({m.name!r})")
        if m.datatype is DataType.Unknown:
            raise ValueError(f"NBIRTH metric {m.name!r} needs a datatype")
        names.add(m.name)
        aliases.add(m.alias)
    rebirth = Metric(name=REBIRTH, alias=None, datatype=DataType.Boolean, value=False,
                     timestamp_ms=now_ms)
    return Payload(timestamp_ms=now_ms, seq=0,
                   metrics=(bd_seq_metric(bd_seq, now_ms), rebirth, *given))


def ndata(seq: int, metrics: Iterable[Metric], now_ms: int) -> Payload:
    """An NDATA payload with sequence number ``seq``: ``metrics`` by alias only (a name is
    left out; a metric without an alias is a ``ValueError``), each stamped ``now_ms`` if it
    has no timestamp of its own."""
    _check_seq("seq", seq)
    out = []
    for m in metrics:
        if m.alias is None:
            raise ValueError(f"NDATA metric {m.label} needs an alias")
        out.append(_stamped(dataclasses.replace(m, name=None), now_ms))
    return Payload(timestamp_ms=now_ms, seq=seq, metrics=tuple(out))


def ndeath(bd_seq: int, now_ms: int) -> Payload:
    """The NDEATH payload (the CONNECT Will, or published before a clean disconnect):
    only ``bdSeq``, no seq."""
    return Payload(timestamp_ms=now_ms, seq=None, metrics=(bd_seq_metric(bd_seq, now_ms),))


def bd_seq_of(payload: Payload) -> int:
    """The ``bdSeq`` of a received NBIRTH or NDEATH (UInt64 or Int64, 0..255);
    ``SparkplugError`` if it has none or a bad one."""
    found = [m for m in payload.metrics if m.name == BDSEQ]
    if len(found) != 1:
        raise SparkplugError(f"payload has {len(found)} bdSeq metrics, not one")
    (metric,) = found
    if metric.datatype not in (DataType.UInt64, DataType.Int64, DataType.Unknown):
        raise SparkplugError(f"bdSeq is a {metric.datatype.name}, not a UInt64")
    value = metric.value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEQ_MODULUS:
        raise SparkplugError(f"bdSeq {value!r} is not in 0..{SEQ_MODULUS - 1}")
    return value


def rebirth_requested(command: Payload, aliases: Mapping[int, str] | None = None) -> bool:
    """Whether an NCMD asks for a rebirth: a ``Node Control/Rebirth`` metric (by name, or
    by an alias that ``aliases`` maps to that name) with the Boolean value true. A rebirth
    metric of another type or value is ``SparkplugError``."""
    asked = False
    for metric in command.metrics:
        name = metric.name
        if name is None and aliases is not None and metric.alias is not None:
            name = aliases.get(metric.alias)
        if name != REBIRTH:
            continue
        if metric.datatype not in (DataType.Boolean, DataType.Unknown) or \
                not isinstance(metric.value, bool):
            raise SparkplugError(f"{REBIRTH} must be a Boolean, got {metric.datatype.name} "
                                 f"{metric.value!r}")
        asked = asked or metric.value
    return asked


@dataclasses.dataclass(frozen=True)
class AliasTable:
    """Metric names and their aliases, one to one: aliases ``start``, ``start + 1``, … in
    the order the names were given. Build with :meth:`build`."""

    by_name: Mapping[str, int]
    by_alias: Mapping[int, str]

    @classmethod
    def build(cls, names: Iterable[str], start: int = 1) -> AliasTable:
        """The table for ``names`` (unique, none of the builders' own ``bdSeq`` and
        ``Node Control/Rebirth``, which travel without an alias); ``ValueError`` if a name
        repeats."""
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be an int >= 0, got {start!r}")
        by_name: dict[str, int] = {}
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a metric name must be a non-empty str, got {name!r}")
            if name in RESERVED:
                raise ValueError(f"{name!r} travels without an alias")
            if name in by_name:
                raise ValueError(f"metric name {name!r} appears twice")
            by_name[name] = start + len(by_name)
        return cls(by_name, {alias: name for name, alias in by_name.items()})

    def alias(self, name: str) -> int:
        """The alias of ``name``; ``KeyError`` if it has none."""
        return self.by_name[name]

    def name(self, alias: int) -> str:
        """The name behind ``alias``; ``KeyError`` if no metric has it."""
        return self.by_alias[alias]

    def __len__(self) -> int:
        return len(self.by_name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name
