"""The PLC's write log: every write request received, in memory and as JSON lines on disk.

One record per line (``--write-log PATH``, flushed per record)::

    {"seq": 0, "t": 12345.678901, "unit": 1, "fc": 6, "table": "holding", "address": 100,
     "values": [400], "names": ["heater_power"], "accepted": true, "error": null,
     "source": "modbus", "t_decoded": 12345.678950}

``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC, comparable across processes on one machine)
when the request's bytes reached the PLC: taken first thing in the server's data-received
callback, for the read that brought the request's first byte (``sim.plc.ordered``).
``t_decoded`` is the same clock when pymodbus' framer had decoded the whole request (the
write's ``t`` before issue 14; ``t <= t_decoded``), null for pseudo-entries. The write takes
effect in the register image later still, when its turn in the connection's queue comes.
``fc`` 0 marks a pseudo-entry made by the PLC itself (``"source": "plc watchdog"`` for the
fallback, ``"control"`` for set_output), stamped when the PLC made it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteRecord:
    seq: int
    t: float
    unit: int
    fc: int
    table: str
    address: int
    values: tuple[int, ...]
    names: tuple[str, ...]
    accepted: bool
    error: str | None
    source: str
    t_decoded: float | None = None  # a Modbus request decoded (None: a pseudo-entry)

    def to_json(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies every field, a quarter of the PLC's time
        # per write request (profiled); the PLC answers after logging
        return {"seq": self.seq, "t": self.t, "unit": self.unit, "fc": self.fc,
                "table": self.table, "address": self.address, "values": list(self.values),
                "names": list(self.names), "accepted": self.accepted, "error": self.error,
                "source": self.source, "t_decoded": self.t_decoded}


class WriteLog:
    """Append-only; ``since(n)`` returns records with ``seq >= n``. A failing file is logged
    once and the in-memory log goes on (losing the disk copy is not a reason to stop the PLC).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._records: list[WriteRecord] = []
        self._file: TextIO | None = None
        if path is not None:
            self._file = Path(path).open("a", encoding="utf-8")  # noqa: SIM115

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self,
        *,
        t: float,
        unit: int,
        fc: int,
        table: str,
        address: int,
        values: tuple[int, ...],
        names: tuple[str, ...],
        accepted: bool,
        error: str | None = None,
        source: str = "modbus",
        t_decoded: float | None = None,
    ) -> WriteRecord:
        rec = WriteRecord(
            len(self._records),
            t,
            unit,
            fc,
            table,
            address,
            values,
            names,
            accepted,
            error,
            source,
            t_decoded,
        )
        self._records.append(rec)
        if self._file is not None:
            try:
                self._file.write(json.dumps(rec.to_json()) + "\n")
                self._file.flush()
            except OSError:
                log.exception("write log file failed; keeping the log in memory only")
                self._file = None
        return rec

    def since(self, seq: int = 0) -> list[WriteRecord]:
        return self._records[max(0, seq) :]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
