"""The master's codec (agent.protocol.modbus pdu / adu) against pymodbus's framers, and its checks.

The encoder is cross-checked byte for byte against pymodbus's FramerSocket / FramerRTU
(an independent implementation), and correct replies are built with pymodbus's response
classes, so the codec is never tested against itself. Every malformed kind of issue 10 is
a table row with the reason it must give.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from agent.protocol.modbus import adu, pdu
from agent.protocol.modbus.plan import WriteOp

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def pymodbus_request(req: pdu.Request, tid: int) -> ModbusPDU:
    a, n, u = req.address, req.count, req.unit_id
    bits = [bool(v) for v in req.values]
    return {
        1: lambda: ReadCoilsRequest(address=a, count=n, dev_id=u, transaction_id=tid),
        2: lambda: ReadDiscreteInputsRequest(address=a, count=n, dev_id=u, transaction_id=tid),
        3: lambda: ReadHoldingRegistersRequest(address=a, count=n, dev_id=u, transaction_id=tid),
        4: lambda: ReadInputRegistersRequest(address=a, count=n, dev_id=u, transaction_id=tid),
        5: lambda: WriteSingleCoilRequest(address=a, bits=bits, dev_id=u, transaction_id=tid),
        6: lambda: WriteSingleRegisterRequest(
            address=a, registers=list(req.values), dev_id=u, transaction_id=tid),
        15: lambda: WriteMultipleCoilsRequest(address=a, bits=bits, dev_id=u, transaction_id=tid),
        16: lambda: WriteMultipleRegistersRequest(
            address=a, registers=list(req.values), dev_id=u, transaction_id=tid),
    }[req.fc]()


def pymodbus_reply(req: pdu.Request, values: list[int] | list[bool]) -> ModbusPDU:
    """The correct reply to ``req`` as pymodbus's server side builds it."""
    a, u = req.address, req.unit_id
    match req.fc:
        case 1:
            return ReadCoilsResponse(bits=list(values), dev_id=u)
        case 2:
            return ReadDiscreteInputsResponse(bits=list(values), dev_id=u)
        case 3:
            return ReadHoldingRegistersResponse(registers=list(values), dev_id=u)
        case 4:
            return ReadInputRegistersResponse(registers=list(values), dev_id=u)
        case 5:
            return WriteSingleCoilResponse(address=a, bits=[bool(req.values[0])], dev_id=u)
        case 6:
            return WriteSingleRegisterResponse(address=a, registers=[req.values[0]], dev_id=u)
        case 15:
            return WriteMultipleCoilsResponse(address=a, count=req.count, dev_id=u)
        case _:
            return WriteMultipleRegistersResponse(address=a, count=req.count, dev_id=u)


def server_frame(reply: ModbusPDU, tid: int, rtu: bool = False) -> bytes:
    reply.transaction_id = tid
    framer = FramerRTU(DecodePDU(True)) if rtu else FramerSocket(DecodePDU(True))
    return bytes(framer.buildFrame(reply))


requests = st.one_of(
    st.builds(pdu.read, st.sampled_from([1, 2]), st.integers(0, 247), st.integers(0, 60000),
              st.integers(1, 2000)),
    st.builds(pdu.read, st.sampled_from([3, 4]), st.integers(0, 247), st.integers(0, 60000),
              st.integers(1, 125)),
    st.builds(pdu.write_coil, st.integers(0, 247), st.integers(0, 65535), st.booleans()),
    st.builds(pdu.write_register, st.integers(0, 247), st.integers(0, 65535),
              st.integers(0, 65535)),
    st.builds(pdu.write_coils, st.integers(0, 247), st.integers(0, 60000),
              st.lists(st.booleans(), min_size=1, max_size=1968).map(tuple)),
    st.builds(pdu.write_registers, st.integers(0, 247), st.integers(0, 60000),
              st.lists(st.integers(0, 65535), min_size=1, max_size=123).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(req=requests, tid=st.integers(1, 65000))
def test_request_frames_are_pymodbus_frames(req: pdu.Request, tid: int) -> None:
    """TCP and RTU request ADUs byte for byte as pymodbus's client framers build them."""
    ours_tcp = adu.tcp_frame(req, tid)
    theirs_tcp = FramerSocket(DecodePDU(False)).buildFrame(pymodbus_request(req, tid))
    assert ours_tcp == theirs_tcp
    theirs_rtu = FramerRTU(DecodePDU(False)).buildFrame(pymodbus_request(req, 0))
    assert adu.rtu_frame(req) == theirs_rtu


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_crc_matches_pymodbus(data: bytes) -> None:
    assert adu.crc16(data).to_bytes(2, "little") == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def _values(req: pdu.Request) -> list[int] | list[bool]:
    if req.fc in (1, 2):
        return [(i * 7 + req.address) % 3 == 0 for i in range(req.count)]
    return [(req.address * 31 + i * 257) & 0xFFFF for i in range(req.count)]


@settings(max_examples=300, deadline=None)
@given(req=requests, tid=st.integers(1, 65000), split=st.integers(1, 40))
def test_correct_replies_from_pymodbus_decode_to_their_values(
    req: pdu.Request, tid: int, split: int
) -> None:
    values = _values(req)
    frame = server_frame(pymodbus_reply(req, values), tid)
    if split < len(frame):
        assert adu.scan_tcp(frame[:split], req, tid) == adu.NeedMore(
            split, len(frame) if split >= 6 else None)
    got = adu.scan_tcp(frame, req, tid)
    assert isinstance(got, adu.Answer) and got.used == len(frame)
    rtu = server_frame(pymodbus_reply(req, values), 0, rtu=True)
    got_rtu = adu.scan_rtu(rtu, req)
    assert isinstance(got_rtu, adu.Answer) and got_rtu.used == len(rtu)
    assert got_rtu.reply == got.reply
    reply = got.reply
    if req.fc in (1, 2):
        assert reply == pdu.Bits(tuple(bool(v) for v in values))
    elif req.fc in (3, 4):
        assert reply == pdu.Registers(tuple(int(v) for v in values))
    else:
        assert isinstance(reply, pdu.WriteEcho) and reply.address == req.address


READ10 = pdu.read(3, 1, 0, 10)
REGS10 = bytes(range(20))


def mbap(tid: int, body: bytes, *, pid: int = 0, unit: int = 1, length: int | None = None) -> bytes:
    n = len(body) + 1 if length is None else length
    return tid.to_bytes(2, "big") + pid.to_bytes(2, "big") + n.to_bytes(2, "big") + bytes(
        [unit]) + body


MALFORMED_TCP = [
    ("wrong function code", READ10, mbap(7, bytes([4, 20]) + REGS10),
     "function code 4, expected 3"),
    ("one register more", READ10, mbap(7, bytes([3, 22]) + REGS10 + b"\0\0"),
     "byte count 22, expected 20 for 10 registers"),
    ("125 registers for 10", READ10, mbap(7, bytes([3, 250]) + bytes(250)),
     "byte count 250, expected 20 for 10 registers"),
    ("odd byte count", READ10, mbap(7, bytes([3, 21]) + REGS10 + b"\0"),
     "byte count 21, expected 20 for 10 registers"),
    ("wrong transaction id", READ10, mbap(8, bytes([3, 20]) + REGS10),
     "transaction id 8, expected 7"),
    ("wrong unit id", READ10, mbap(7, bytes([3, 20]) + REGS10, unit=2),
     "unit id 2, expected 1"),
    ("wrong protocol id", READ10, mbap(7, bytes([3, 20]) + REGS10, pid=1),
     "protocol id 1, expected 0"),
    ("exception for another fc", READ10, mbap(7, bytes([0x84, 2])),
     "exception reply for function code 4, expected 3"),
    ("exception too long", READ10, mbap(7, bytes([0x83, 2, 0])),
     "MBAP length 4: exception reply of 3 bytes, expected 2"),
    ("MBAP length longer than the PDU", READ10, mbap(7, bytes([3, 20]) + REGS10 + b"\0\0"),
     "MBAP length 25: 22 data bytes after byte count 20"),
    ("MBAP length too short", READ10, mbap(7, b"", length=1),
     "MBAP length 1, too short for a unit id and a function code"),
    ("MBAP length too long", READ10, mbap(7, b"", length=300),
     "MBAP length 300, more than the 254 a frame can carry"),
    ("write echo address", pdu.write_registers(1, 100, (1, 2)),
     mbap(7, bytes([16, 0, 101, 0, 2])), "write echo address 101, expected 100"),
    ("write echo count", pdu.write_registers(1, 100, (1, 2)),
     mbap(7, bytes([16, 0, 100, 0, 3])), "write echo count 3, expected 2"),
    ("write echo value", pdu.write_coil(1, 0, True),
     mbap(7, bytes([5, 0, 0, 0, 0])), "write echo value 0x0000, expected 0xFF00"),
    ("write reply too short", pdu.write_registers(1, 100, (1, 2)),
     mbap(7, bytes([16, 0, 100])), "MBAP length 4: write reply of 3 bytes, expected 5"),
    ("exception code 0", READ10, mbap(7, bytes([0x83, 0])), "exception code 0"),
]


@pytest.mark.parametrize(("kind", "req", "frame", "reason"), MALFORMED_TCP,
                         ids=[m[0] for m in MALFORMED_TCP])
def test_malformed_tcp_replies_name_what_is_wrong(
    kind: str, req: pdu.Request, frame: bytes, reason: str
) -> None:
    assert adu.scan_tcp(frame, req, 7) == adu.Bad(reason), kind


def test_exception_reply_to_the_request_is_an_answer() -> None:
    got = adu.scan_tcp(mbap(7, bytes([0x83, 2])), READ10, 7)
    assert got == adu.Answer(pdu.ExceptionReply(3, 2), 9)


def test_late_reply_is_stale_and_the_right_one_follows() -> None:
    late = mbap(6, bytes([3, 20]) + bytes(20))
    right = mbap(7, bytes([3, 20]) + REGS10)
    assert adu.scan_tcp(late + right, READ10, 7, late={6}) == adu.Stale(6, len(late))
    got = adu.scan_tcp(right, READ10, 7, late={6})
    assert isinstance(got, adu.Answer) and got.reply == pdu.Registers(
        tuple(int.from_bytes(REGS10[i:i + 2], "big") for i in range(0, 20, 2)))
    # without the timed-out id on record, the same bytes are a crossed stream
    assert adu.scan_tcp(late, READ10, 7) == adu.Bad("transaction id 6, expected 7")


def rtu(body: bytes, crc: int | None = None) -> bytes:
    c = adu.crc16(body) if crc is None else crc
    return body + c.to_bytes(2, "little")


MALFORMED_RTU = [
    ("bad CRC", rtu(bytes([1, 3, 20]) + REGS10, crc=0x1234), "CRC 0x1234, computed 0x"),
    ("wrong unit", rtu(bytes([2, 3, 20]) + REGS10), "unit id 2, expected 1"),
    ("wrong fc", rtu(bytes([1, 4, 20]) + REGS10), "function code 4, expected 3"),
    ("unknown fc", bytes([1, 0x2B, 1, 2]), "function code 43, expected 3"),
    ("more registers", rtu(bytes([1, 3, 22]) + REGS10 + b"\0\0"),
     "byte count 22, expected 20 for 10 registers"),
]


@pytest.mark.parametrize(("kind", "frame", "reason"), MALFORMED_RTU,
                         ids=[m[0] for m in MALFORMED_RTU])
def test_malformed_rtu_replies_name_what_is_wrong(kind: str, frame: bytes, reason: str) -> None:
    got = adu.scan_rtu(frame, READ10)
    assert isinstance(got, adu.Bad) and got.reason.startswith(reason), (kind, got)


@settings(max_examples=2000, deadline=None)
@given(req=requests, data=st.binary(max_size=300), tid=st.integers(1, 65000))
def test_scanners_never_raise_and_answers_fit_the_request(
    req: pdu.Request, data: bytes, tid: int
) -> None:
    for got in (adu.scan_tcp(data, req, tid, late={tid ^ 1}), adu.scan_rtu(data, req)):
        assert isinstance(got, adu.NeedMore | adu.Answer | adu.Stale | adu.Bad)
        if isinstance(got, adu.Answer):
            reply = got.reply
            if isinstance(reply, pdu.Bits):
                assert req.fc in (1, 2) and len(reply.bits) == req.count
            elif isinstance(reply, pdu.Registers):
                assert req.fc in (3, 4) and len(reply.registers) == req.count
            elif isinstance(reply, pdu.WriteEcho):
                assert req.fc in (5, 6, 15, 16) and reply.address == req.address
            else:
                assert reply.fc == req.fc


@pytest.mark.parametrize("bad", [
    lambda: pdu.read(3, 1, 0, 126), lambda: pdu.read(1, 1, 0, 2001), lambda: pdu.read(7, 1, 0, 1),
    lambda: pdu.read(3, 1, 65530, 10), lambda: pdu.write_register(1, 0, 70000),
    lambda: pdu.write_registers(1, 0, tuple(range(124))), lambda: pdu.read(3, 256, 0, 1),
])
def test_request_builders_refuse_what_modbus_cannot_carry(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


@pytest.mark.parametrize("module", ["agent/protocol/modbus/pdu.py", "agent/protocol/modbus/adu.py"])
def test_codec_is_sans_io(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    io = {"asyncio", "socket", "serial", "pymodbus", "time", "select", "termios", "os"}
    assert not {m.split(".")[0] for m in imported} & io
    assert all(m.split(".")[0] in {"__future__", "collections", "dataclasses"}
               or m.startswith("agent.protocol.modbus.pdu") or m == "agent.protocol.modbus.pdu"
               for m in imported if m.startswith(("agent", "__", "coll", "data")))


def pymodbus_frame(op: WriteOp, tcp: bool, transaction_id: int) -> bytes:
    """The frame pymodbus's own request classes and framers build for ``op`` (an
    implementation independent of ours)."""
    tid = transaction_id if tcp else 0
    request: ModbusPDU
    if op.table.is_bit:
        bits = [bool(v) for v in op.values]
        kind = WriteSingleCoilRequest if len(bits) == 1 else WriteMultipleCoilsRequest
        request = kind(address=op.address, bits=bits, dev_id=op.unit_id, transaction_id=tid)
    else:
        request = WriteMultipleRegistersRequest(
            address=op.address, registers=[int(v) for v in op.values], dev_id=op.unit_id,
            transaction_id=tid)
    framer = FramerSocket(DecodePDU(False)) if tcp else FramerRTU(DecodePDU(False))
    return bytes(framer.buildFrame(request))


@pytest.mark.parametrize("ref", ["sim-tank", "pi4-rs485-rtu", "pi-modbus-tcp"])
def test_watchdog_frames_are_pymodbus_frames(ref: str) -> None:
    """The native watchdog's pre-encoded safe set (agent.protocol.modbus.frames, our codec)
    is byte for byte what pymodbus builds for the same writes."""
    from agent.config.profile.load import load_profile
    from agent.model.profile import TcpLink
    from agent.protocol.modbus.frames import (
        SAFE_TRANSACTION_ID,
        encode_write_frames,
        resolve_writes,
    )
    from agent.protocol.modbus.plan import plan_writes

    profile = load_profile(ref)
    safe = {o.name: o.safe_value for o in profile.outputs}
    tcp = isinstance(profile.plc.link, TcpLink)
    theirs = [pymodbus_frame(op, tcp, SAFE_TRANSACTION_ID)
              for op in plan_writes(resolve_writes(profile, safe))]
    assert encode_write_frames(profile, safe) == theirs
