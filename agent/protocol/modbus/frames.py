"""Pre-encoded write frames for the native watchdog (pure; no I/O).

The native watchdog (``firmware_bridge``) knows nothing about Modbus: at arm time Python
hands it the bytes of the safe-state write, and on a hang it only ``write()``s them. This
module builds those bytes with the master's own codec (:mod:`agent.protocol.modbus.pdu` /
:mod:`agent.protocol.modbus.adu`), so what the watchdog sends is exactly what the agent would
have sent; ``tests/protocol/test_modbus_frames.py`` decodes them with pymodbus's framers and
``tests/protocol/test_modbus_adu.py`` compares them with frames pymodbus builds, an
implementation independent of ours (pymodbus is not imported by the running agent: it costs
a megabyte of memory for nothing the loop needs)::

    TCP (MBAP)  [ tid:2 ][ pid=0:2 ][ len:2 ][ unit:1 ][ fc:1 ][ data ]
    RTU         [ unit:1 ][ fc:1 ][ data ][ crc16:2, little-endian ]

    fc16 data   [ address:2 ][ count:2 ][ bytes=2*count:1 ][ registers ... ]
    fc15 data   [ address:2 ][ count:2 ][ bytes:1 ][ bits, LSB first ... ]
    fc5  data   [ address:2 ][ 0xFF00 on / 0x0000 off ]

Contract: :func:`resolve_writes` and :func:`encode_write_frames` raise
:class:`~agent.model.errors.WriteRefused` for a name the profile does not declare as an output or a
value outside its limits, before any byte is produced.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.model.errors import WriteRefused
from agent.model.profile import Output, Profile, Table, TcpLink
from agent.protocol.modbus import adu, pdu
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


def write_request(op: WriteOp) -> pdu.Request:
    """The request that performs ``op``: fc 5 for one coil, 15 for several, 16 for registers
    (the master's writes and the native watchdog's frames alike)."""
    if op.table is Table.COIL:
        bits = tuple(bool(v) for v in op.values)
        if len(bits) == 1:
            return pdu.write_coil(op.unit_id, op.address, bits[0])
        return pdu.write_coils(op.unit_id, op.address, bits)
    return pdu.write_registers(op.unit_id, op.address, tuple(int(v) for v in op.values))


def encode_write_frames(
    profile: Profile,
    values: Mapping[str, float],
    *,
    transaction_id: int = SAFE_TRANSACTION_ID,
) -> list[bytes]:
    """Frames writing ``values`` over the profile's transport (MBAP for TCP, RTU otherwise),
    one per write operation, in order."""
    ops = plan_writes(resolve_writes(profile, values))
    if isinstance(profile.plc.link, TcpLink):
        return [adu.tcp_frame(write_request(op), transaction_id) for op in ops]
    return [adu.rtu_frame(write_request(op)) for op in ops]
