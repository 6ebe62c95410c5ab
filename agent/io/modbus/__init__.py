"""The Modbus master's I/O: ``transport`` (asyncio TCP, pyserial RTU), ``exchange`` (one
attempt on the wire), ``session`` (one connection: retries, reconnects, dead units, the
counters) and ``client`` (the PLC's register map turned into requests). The codec under it is
``agent.protocol.modbus``."""
