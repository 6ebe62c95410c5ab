"""Pre-encoded safe-state frames decode back, with pymodbus's own framers, to the writes."""

from __future__ import annotations

import dataclasses
import random

import pytest
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU

from agent.core.backoff import Backoff, UnitGuard
from agent.model.errors import WriteRefused
from agent.model.profile import (
    Board,
    DataType,
    FailsafePolicy,
    Output,
    Parity,
    PlcConnection,
    PlcWatchdog,
    Profile,
    Recovery,
    RecoveryPolicy,
    RtuLink,
    Table,
    TcpLink,
    Timing,
    WordOrder,
)
from agent.protocol.modbus.frames import SAFE_TRANSACTION_ID, encode_write_frames

pytestmark = pytest.mark.timeout(30)


def _out(  # noqa: PLR0917
    name: str,
    address: int,
    safe: float,
    table: Table = Table.HOLDING,
    dtype: DataType = DataType.UINT16,
    scale: float = 0.1,
) -> Output:
    return Output(
        name,
        table,
        address,
        dtype,
        WordOrder.BIG,
        scale,
        0.0,
        "%",
        0.0,
        100.0 if dtype is not DataType.BOOL else 1.0,
        20.0,
        safe,
        FailsafePolicy.SAFE_VALUE,
        1,
    )


def _profile(tcp: bool = True) -> Profile:
    link: TcpLink | RtuLink = (
        TcpLink("127.0.0.1", 15020) if tcp else RtuLink("/dev/null", 19200, Parity.NONE, 1, 8)
    )
    return Profile(
        source="test.toml",
        board=Board("b", None, None, None, None, 2.0, None, None, None, "1"),
        plc=PlcConnection(link, 1, 0.25, 1, 0.1, 2.0),
        signals=(),
        groups=(),
        outputs=(
            _out("heater_power", 100, 0.0),
            _out("cooling_valve", 101, 100.0),
            _out("alarm", 5, 1.0, Table.COIL, DataType.BOOL, 1.0),
        ),
        trips=(),
        plc_watchdog=PlcWatchdog(200, 201, 1000, 0, 0, 1),
        timing=Timing(0.05, 0.5, 0.25, 0.2),
        recovery=Recovery(RecoveryPolicy.AUTO, 3.0),
        require_native_watchdog=False,
        sim=None,
    )


def _decode_requests(framer: FramerSocket | FramerRTU, frame: bytes) -> list[object]:
    # decode as the server would: a request decoder
    server = type(framer)(DecodePDU(True))
    used, pdu = server.handleFrame(frame, 0, 0)
    assert used == len(frame)
    assert pdu is not None
    return [pdu]


def test_tcp_safe_frame_is_one_fc16_mbap_frame() -> None:
    frames = encode_write_frames(_profile(), {"heater_power": 0.0, "cooling_valve": 100.0})
    assert len(frames) == 1
    frame = frames[0]
    assert int.from_bytes(frame[0:2], "big") == SAFE_TRANSACTION_ID
    assert frame[2:4] == b"\x00\x00"
    assert int.from_bytes(frame[4:6], "big") == len(frame) - 6
    (pdu,) = _decode_requests(FramerSocket(DecodePDU(True)), frame)
    assert pdu.function_code == 16  # type: ignore[attr-defined]
    assert pdu.dev_id == 1  # type: ignore[attr-defined]
    assert pdu.address == 100  # type: ignore[attr-defined]
    assert list(pdu.registers) == [0, 1000]  # type: ignore[attr-defined]


def test_rtu_frames_carry_a_valid_crc_and_decode_back() -> None:
    frames = encode_write_frames(
        _profile(tcp=False), {"cooling_valve": 100.0, "heater_power": 0.0, "alarm": 1.0}
    )
    assert len(frames) == 2
    decoded = []
    for frame in frames:
        crc = int.from_bytes(frame[-2:], "big")
        assert FramerRTU.check_CRC(frame[:-2], crc)
        (pdu,) = _decode_requests(FramerRTU(DecodePDU(True)), frame)
        decoded.append(pdu)
    by_fc = {p.function_code: p for p in decoded}  # type: ignore[attr-defined]
    assert list(by_fc[16].registers) == [0, 1000]  # type: ignore[attr-defined]
    assert by_fc[5].address == 5 and by_fc[5].bits[0] is True  # type: ignore[attr-defined]
    # a corrupted byte is rejected by the CRC check
    bad = bytes([frames[0][0]]) + bytes([frames[0][1] ^ 0x01]) + frames[0][2:]
    assert not FramerRTU.check_CRC(bad[:-2], int.from_bytes(bad[-2:], "big"))


def test_undeclared_or_out_of_limits_is_refused_before_any_byte() -> None:
    with pytest.raises(WriteRefused, match="not an output"):
        encode_write_frames(_profile(), {"heater_power": 0.0, "mystery": 1.0})
    with pytest.raises(WriteRefused, match="limits"):
        encode_write_frames(_profile(), {"heater_power": 150.0})


def test_profile_with_changed_unit_id_changes_the_frame() -> None:
    p = _profile()
    o = dataclasses.replace(p.outputs[0], unit_id=7)
    p = dataclasses.replace(p, outputs=(o,))
    (frame,) = encode_write_frames(p, {"heater_power": 50.0})
    assert frame[6] == 7


# --- backoff (sans-IO) -------------------------------------------------------------------


def test_backoff_is_capped_jittered_and_resets() -> None:
    b = Backoff(0.1, 2.0, random.Random(1))
    delays = [b.failed(now=10.0) for _ in range(12)]
    assert all(0.1 <= d <= 2.0 for d in delays)
    assert delays[-1] >= 1.0  # grew to the cap's half at least
    assert len(set(delays)) > 1  # jitter
    assert not b.due(10.0) and b.due(10.0 + delays[-1])
    b.succeeded()
    assert b.due(0.0)
    assert b.failed(0.0) <= 0.1 + 1e-12


def test_unit_guard_backs_off_a_dead_unit_only() -> None:
    g = UnitGuard(0.5, 4.0, threshold=2, rng=random.Random(2))
    g.timed_out(3, now=0.0)
    assert g.available(3, 0.0) and not g.backed_off(3)
    g.timed_out(3, now=0.1)
    assert g.backed_off(3) and not g.available(3, 0.2)
    assert g.available(1, 0.2)  # other units are unaffected
    assert g.backed_off_units() == (3,)
    assert g.available(3, 0.1 + 0.5 + 1e-9)  # probe let through after the delay
    g.answered(3)
    assert not g.backed_off(3) and g.available(3, 0.2)
