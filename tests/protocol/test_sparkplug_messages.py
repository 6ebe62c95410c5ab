"""NBIRTH, NDATA and NDEATH shapes, the seq counter and aliases, keyed by the Sparkplug 3.0
tck-ids (6_Payloads and 4_Topics). Each shape is checked on the decoded bytes, so what
is asserted is what a host would read off the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.protocol.sparkplug import (
    BDSEQ,
    REBIRTH,
    AliasTable,
    DataType,
    Metric,
    Payload,
    SparkplugError,
    bd_seq_of,
    decode_payload,
    encode_payload,
    nbirth,
    ndata,
    ndeath,
    next_seq,
    rebirth_requested,
    sparkplug_b_pb2,
)

pytestmark = pytest.mark.timeout(60)

NOW = 1_700_000_000_123


def _wire(payload: Payload) -> Payload:
    return decode_payload(encode_payload(payload))


def _signals() -> list[Metric]:
    table = AliasTable.build(["signals/temp", "twinguard/state", "twinguard/spool/seq"])
    return [
        Metric("signals/temp", table.alias("signals/temp"), DataType.Double, 21.5),
        Metric("twinguard/state", table.alias("twinguard/state"), DataType.String, "NORMAL",
               timestamp_ms=NOW - 5),
        Metric("twinguard/spool/seq", table.alias("twinguard/spool/seq"), DataType.UInt64,
               2**40),
    ]


# --- NBIRTH ------------------------------------------------------------------------------

def test_nbirth_seq_is_zero_and_timestamp_is_now() -> None:
    """tck-id-payloads-nbirth-seq, tck-id-topics-nbirth-seq-num,
    tck-id-payloads-sequence-num-zero-nbirth, tck-id-payloads-nbirth-timestamp."""
    birth = _wire(nbirth(7, _signals(), NOW))
    assert birth.seq == 0
    assert birth.timestamp_ms == NOW


def test_nbirth_carries_the_bdseq_metric() -> None:
    """tck-id-payloads-nbirth-bdseq, tck-id-topics-nbirth-bdseq-included (the same value
    as the Will's NDEATH: tck-id-topics-nbirth-bdseq-matching)."""
    birth = _wire(nbirth(7, _signals(), NOW))
    bd = birth.metric(BDSEQ)
    assert (bd.datatype, bd.value, bd.alias) == (DataType.UInt64, 7, None)
    assert _wire(ndeath(7, NOW)).metric(BDSEQ).value == bd.value


def test_nbirth_carries_rebirth_false_without_alias() -> None:
    """tck-id-payloads-nbirth-rebirth-req, tck-id-topics-nbirth-rebirth-metric."""
    rebirth = _wire(nbirth(0, _signals(), NOW)).metric(REBIRTH)
    assert (rebirth.datatype, rebirth.value, rebirth.alias) == (DataType.Boolean, False, None)


def test_nbirth_metrics_have_name_alias_datatype_and_timestamp() -> None:
    """tck-id-payloads-alias-birth-requirement, tck-id-payloads-name-birth-data-requirement,
    tck-id-payloads-metric-datatype-req, tck-id-topics-nbirth-metrics."""
    birth = _wire(nbirth(0, _signals(), NOW))
    assert [m.name for m in birth.metrics] == [BDSEQ, REBIRTH, "signals/temp",
                                               "twinguard/state", "twinguard/spool/seq"]
    for m in birth.metrics[2:]:
        assert m.name and m.alias is not None and m.datatype is not DataType.Unknown
    assert all(m.timestamp_ms is not None for m in birth.metrics)
    assert birth.metric("twinguard/state").timestamp_ms == NOW - 5  # its own stays
    assert birth.metric("signals/temp").timestamp_ms == NOW
    assert birth.metric("twinguard/spool/seq").value == 2**40


def test_nbirth_refuses_repeated_aliases() -> None:
    """tck-id-payloads-alias-uniqueness."""
    twins = [Metric("a", 1, DataType.Boolean, True), Metric("b", 1, DataType.Boolean, False)]
    with pytest.raises(ValueError, match="alias 1 appears twice"):
        nbirth(0, twins, NOW)


@pytest.mark.parametrize(("metric", "reason"), [
    (Metric("a", None, DataType.Boolean, True), "both a name and an alias"),
    (Metric(None, 3, DataType.Boolean, True), "both a name and an alias"),
    (Metric(BDSEQ, 3, DataType.UInt64, 1), "builder's own"),
    (Metric(REBIRTH, 3, DataType.Boolean, False), "builder's own"),
    (Metric("a", 3, DataType.Unknown, 1), "needs a datatype"),
])
def test_nbirth_refuses_a_metric_out_of_shape(metric: Metric, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        nbirth(0, [metric], NOW)


def test_nbirth_refuses_a_repeated_name() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        nbirth(0, [Metric("a", 1, DataType.Boolean, True),
                   Metric("a", 2, DataType.Boolean, True)], NOW)


@pytest.mark.parametrize("bd_seq", [-1, 256, True, 1.0])
def test_bdseq_stays_in_0_to_255(bd_seq: object) -> None:
    """tck-id-payloads-nbirth-bdseq-inc: "This value MUST never exceed 255"."""
    with pytest.raises(ValueError, match="bd_seq"):
        nbirth(bd_seq, [], NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bd_seq"):
        ndeath(bd_seq, NOW)  # type: ignore[arg-type]


# --- NDATA -------------------------------------------------------------------------------

def test_ndata_has_the_seq_and_the_timestamp() -> None:
    """tck-id-payloads-ndata-seq, tck-id-payloads-ndata-timestamp,
    tck-id-payloads-sequence-num-always-included."""
    data = _wire(ndata(42, _signals()[:1], NOW))
    assert (data.seq, data.timestamp_ms) == (42, NOW)


def test_ndata_carries_aliases_only() -> None:
    """tck-id-payloads-alias-data-cmd-requirement: names are left out on the wire;
    tck-id-payloads-name-birth-data-requirement: every metric has a timestamp."""
    backlog = Metric(None, 3, DataType.UInt64, 9, timestamp_ms=NOW - 60_000,
                     is_historical=True)
    data = _wire(ndata(1, [*_signals(), backlog], NOW))
    assert [m.name for m in data.metrics] == [None] * 4
    assert [m.alias for m in data.metrics] == [1, 2, 3, 3]
    assert [m.timestamp_ms for m in data.metrics] == [NOW, NOW - 5, NOW, NOW - 60_000]
    assert [m.is_historical for m in data.metrics] == [False, False, False, True]
    raw = encode_payload(ndata(1, _signals(), NOW))
    assert b"signals/temp" not in raw and b"twinguard/state" not in raw


def test_ndata_refuses_a_metric_without_alias() -> None:
    with pytest.raises(ValueError, match="needs an alias"):
        ndata(1, [Metric("a", None, DataType.Boolean, True)], NOW)


@pytest.mark.parametrize("seq", [-1, 256, None])
def test_ndata_seq_stays_in_0_to_255(seq: object) -> None:
    with pytest.raises(ValueError, match="seq"):
        ndata(seq, [], NOW)  # type: ignore[arg-type]


# --- NDEATH ------------------------------------------------------------------------------

def test_ndeath_is_bdseq_only_without_seq() -> None:
    """tck-id-payloads-ndeath-seq (no sequence number), tck-id-payloads-ndeath-bdseq."""
    raw = encode_payload(ndeath(255, NOW))
    death = decode_payload(raw)
    assert death.seq is None
    assert not sparkplug_b_pb2.Payload.FromString(raw).HasField("seq")
    assert [(m.name, m.datatype, m.value, m.alias) for m in death.metrics] == [
        (BDSEQ, DataType.UInt64, 255, None)]
    assert death.timestamp_ms == NOW


# --- seq ---------------------------------------------------------------------------------

def test_seq_counts_up_and_wraps_after_255() -> None:
    """tck-id-payloads-sequence-num-incrementing, tck-id-payloads-ndata-seq-inc,
    tck-id-topics-ndata-seq-num; the same wrap for bdSeq (tck-id-payloads-nbirth-bdseq-inc)."""
    seen = [0]
    for _ in range(600):
        seen.append(next_seq(seen[-1]))
    assert seen[:3] == [0, 1, 2]
    assert seen[255:258] == [255, 0, 1]
    assert max(seen) == 255 and min(seen) == 0


@pytest.mark.parametrize("seq", [-1, 256, True, "1"])
def test_next_seq_refuses_what_is_not_a_seq(seq: object) -> None:
    with pytest.raises(ValueError, match="seq"):
        next_seq(seq)  # type: ignore[arg-type]


# --- aliases -----------------------------------------------------------------------------

@given(st.lists(st.text(min_size=1, max_size=10).filter(lambda n: n not in (BDSEQ, REBIRTH)),
                unique=True, max_size=50))
def test_alias_table_gives_every_name_its_own_alias(names: list[str]) -> None:
    """tck-id-payloads-alias-uniqueness: one alias per name, none shared, both ways."""
    table = AliasTable.build(names)
    aliases = [table.alias(n) for n in names]
    assert len(set(aliases)) == len(names) == len(table)
    assert all(table.name(table.alias(n)) == n for n in names)
    assert aliases == list(range(1, len(names) + 1))


def test_alias_table_refuses_repeats_and_reserved_names() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        AliasTable.build(["a", "b", "a"])
    with pytest.raises(ValueError, match="without an alias"):
        AliasTable.build(["a", REBIRTH])
    with pytest.raises(ValueError, match="non-empty"):
        AliasTable.build([""])
    table = AliasTable.build(["x"], start=100)
    assert table.alias("x") == 100 and "x" in table and "y" not in table
    with pytest.raises(KeyError):
        table.name(1)


# --- reading what a host sends ---------------------------------------------------------

# 6_Payloads "NCMD": the spec's rebirth request, by name, no seq (tck-id-payloads-ncmd-seq);
# bytes by hand: boolean_value is field 14, varint (14 << 3 = 0x70)
SPEC_NCMD = (b"\x08\xea\xf2\xf5\xa8\xa0\x2b" + b"\x12\x21" + b"\x0a\x14Node Control/Rebirth"
             + b"\x18\xea\xf2\xf5\xa8\xa0\x2b" + b"\x20\x0b" + b"\x70\x01")


def test_the_specs_ncmd_asks_for_a_rebirth() -> None:
    command = decode_payload(SPEC_NCMD)
    assert command.seq is None
    assert rebirth_requested(command)


def test_a_rebirth_by_alias_needs_the_alias_table() -> None:
    command = Payload(NOW, None, (Metric(None, 9, DataType.Boolean, True),))
    assert not rebirth_requested(command)
    assert rebirth_requested(command, {9: REBIRTH})
    assert not rebirth_requested(command, {9: "signals/temp"})


@pytest.mark.parametrize(("metrics", "asked"), [
    ((), False),
    ((Metric(REBIRTH, None, DataType.Boolean, False),), False),
    ((Metric("other", None, DataType.Boolean, True),), False),
    ((Metric(REBIRTH, None, DataType.Boolean, False),
      Metric(REBIRTH, None, DataType.Boolean, True)), True),
])
def test_only_a_true_rebirth_metric_asks(metrics: tuple[Metric, ...], asked: bool) -> None:
    assert rebirth_requested(_wire(Payload(NOW, None, metrics))) is asked


@pytest.mark.parametrize("metric", [Metric(REBIRTH, None, DataType.String, "true"),
                                    Metric(REBIRTH, None, DataType.Boolean, None),
                                    Metric(REBIRTH, None, DataType.UInt8, 1)])
def test_a_rebirth_metric_of_another_type_is_an_error(metric: Metric) -> None:
    with pytest.raises(SparkplugError, match="must be a Boolean"):
        rebirth_requested(_wire(Payload(NOW, None, (metric,))))


def test_bd_seq_of_reads_birth_and_death() -> None:
    assert bd_seq_of(_wire(nbirth(17, _signals(), NOW))) == 17
    assert bd_seq_of(_wire(ndeath(255, NOW))) == 255
    as_int64 = Payload(NOW, None, (Metric(BDSEQ, None, DataType.Int64, 3),))
    assert bd_seq_of(_wire(as_int64)) == 3


@pytest.mark.parametrize("metrics", [
    (),
    (Metric(BDSEQ, None, DataType.UInt64, 1), Metric(BDSEQ, None, DataType.UInt64, 1)),
    (Metric(BDSEQ, None, DataType.UInt64, 256),),
    (Metric(BDSEQ, None, DataType.Int64, -1),),
    (Metric(BDSEQ, None, DataType.String, "1"),),
    (Metric(BDSEQ, None, DataType.UInt64, None),),
])
def test_a_missing_or_bad_bd_seq_is_an_error(metrics: tuple[Metric, ...]) -> None:
    with pytest.raises(SparkplugError, match="bdSeq"):
        bd_seq_of(_wire(Payload(NOW, None, metrics)))
