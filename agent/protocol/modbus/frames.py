"""Pre-encoded write frames built with pymodbus's own framers (pure; no I/O).

The native watchdog (``firmware_bridge``) knows nothing about Modbus: at arm time Python
hands it the bytes of the safe-state write, and on a hang it only ``write()``s them. This
module builds those bytes with pymodbus's own PDU classes and framers, an implementation
independent of the master's codec (:mod:`agent.protocol.modbus.pdu` /
:mod:`agent.protocol.modbus.adu`); ``tests/protocol/test_modbus_adu.py`` checks that both give
the same bytes for the same writes, so what the watchdog sends is exactly what the agent would
have sent::

    TCP (FramerSocket, MBAP)  [ tid:2 ][ pid=0:2 ][ len:2 ][ unit:1 ][ fc:1 ][ data ]
    RTU (FramerRTU)           [ unit:1 ][ fc:1 ][ data ][ crc16:2, little-endian ]

    fc16 data   [ address:2 ][ count:2 ][ bytes=2*count:1 ][ registers ... ]
    fc15 data   [ address:2 ][ count:2 ][ bytes:1 ][ bits, LSB first ... ]
    fc5  data   [ address:2 ][ 0xFF00 on / 0x0000 off ]

Contract: :func:`resolve_writes` and :func:`encode_write_frames` raise
:class:`~agent.model.errors.WriteRefused` for a name the profile does not declare as an output or a
value outside its limits, before any byte is produced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pymodbus.framer import FramerBase, FramerRTU, FramerSocket, FramerType
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import WriteMultipleCoilsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import WriteMultipleRegistersRequest

from agent.model.errors import WriteRefused
from agent.model.profile import Output, Profile, TcpLink
from agent.protocol.modbus.codec import encode_output
from agent.protocol.modbus.plan import WriteOp, plan_writes

SAFE_TRANSACTION_ID = 65535
"""MBAP transaction id of pre-encoded frames; the client's own ids stay below 65001."""


def resolve_writes(
    profile: Profile, values: Mapping[str, float]
) -> dict[Output, tuple[int, ...] | bool]:
    """Encode ``{output name: engineering value}``; WriteRefused for anything undeclared."""
    out: dict[Output, tuple[int, ...] | bool] = {}
    for name, value in values.items():
        try:
            output = profile.output(name)
        except KeyError:
            raise WriteRefused(f"{name!r} is not an output declared in {profile.source}") from None
        out[output] = encode_output(output, value)
    return out


def request_pdu(op: WriteOp, transaction_id: int = 0) -> ModbusPDU:
    """The pymodbus request PDU for one write operation."""
    if op.table.is_bit:
        bits = [bool(v) for v in op.values]
        if len(bits) == 1:
            return WriteSingleCoilRequest(
                address=op.address, bits=bits, dev_id=op.unit_id, transaction_id=transaction_id
            )
        return WriteMultipleCoilsRequest(
            address=op.address, bits=bits, dev_id=op.unit_id, transaction_id=transaction_id
        )
    return WriteMultipleRegistersRequest(
        address=op.address,
        registers=[int(v) for v in op.values],
        dev_id=op.unit_id,
        transaction_id=transaction_id,
    )


def framer_for(framer_type: FramerType) -> FramerBase:
    """A client-side pymodbus framer of the given type."""
    if framer_type is FramerType.SOCKET:
        return FramerSocket(DecodePDU(False))
    if framer_type is FramerType.RTU:
        return FramerRTU(DecodePDU(False))
    raise ValueError(f"unsupported framer {framer_type!r}")


def frames_for(
    ops: Sequence[WriteOp], framer_type: FramerType, transaction_id: int = SAFE_TRANSACTION_ID
) -> list[bytes]:
    """One ADU per write operation, in order."""
    framer = framer_for(framer_type)
    tid = transaction_id if framer_type is FramerType.SOCKET else 0
    return [framer.buildFrame(request_pdu(op, tid)) for op in ops]


def encode_write_frames(
    profile: Profile,
    values: Mapping[str, float],
    *,
    transaction_id: int = SAFE_TRANSACTION_ID,
) -> list[bytes]:
    """Frames writing ``values`` over the profile's transport (MBAP for TCP, RTU otherwise)."""
    ops = plan_writes(resolve_writes(profile, values))
    framer_type = FramerType.SOCKET if isinstance(profile.plc.link, TcpLink) else FramerType.RTU
    return frames_for(ops, framer_type, transaction_id)
