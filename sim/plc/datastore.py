"""The simulated PLC's pymodbus datastore: the address rule, applied with exact counts.

pymodbus' simulator (``SimRuntime``) validates coils and discrete inputs in whole 16-bit
words and hands the device ``action`` the number of *words* touched, not the number of bits
asked for; so the action alone cannot refuse a bit read that runs past the last readable bit.
``PlcDatastore`` sits where the request PDUs call the datastore, sees the real address and
count of every request, and answers exception 2 (illegal data address) before pymodbus'
blocks are touched when the ``RegisterMap`` says the access is not allowed:

    request (fc, address, count)            PlcDatastore            SimRuntime + SimPlc action
    read  fc 1/2/3/4 (and 23's read)  ->  map.check_read   --ok-->  faults, image refresh
    write fc 5/6/15/16 (and 22/23)    ->  map.check_write  --ok-->  image, watchdog
                                           |
                                           +-- refused: ExcCodes.ILLEGAL_ADDRESS

An unknown unit id gets exception 2 too (an RTU server never sees one: ``SimPlc.trace_pdu``
swallows them). Anything else (dropout, slow replies) stays in ``SimPlc``'s action.
"""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.simulator.simcore import SimCore

from sim.plc.plc import FC_TABLE, SimPlc


class PlcDatastore(SimCore):
    """pymodbus ``SimCore`` over ``plc.devices()`` that applies ``plc.map``'s address rule.

    Returns ``ExcCodes`` (never raises) for refused or unsupported accesses, as pymodbus'
    datastore contract asks.
    """

    def __init__(self, plc: SimPlc) -> None:
        super().__init__(plc.devices())
        self._map = plc.map

    def _refuse(
        self, device_id: int, func_code: int, address: int, count: int, *, write: bool
    ) -> ExcCodes | None:
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if device_id not in self._map.units:
            return ExcCodes.ILLEGAL_ADDRESS
        check = self._map.check_write if write else self._map.check_read
        if not check(device_id, table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        exc = self._refuse(device_id, func_code, address, count, write=False)
        if exc is not None:
            return exc
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        exc = self._refuse(device_id, func_code, address, len(values), write=True)
        if exc is not None:
            return exc
        return await super().async_setValues(device_id, func_code, address, values)
