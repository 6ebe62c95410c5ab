"""The sim PLC's write log: every field of a record reaches its JSON line, and back."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from sim.plc.writelog import WriteLog, WriteRecord

pytestmark = pytest.mark.timeout(10)


def test_each_json_line_holds_every_field_of_its_record(tmp_path: Path) -> None:
    path = tmp_path / "writes.jsonl"
    log = WriteLog(path)
    rec = log.add(t=12.5, unit=1, fc=16, table="holding", address=100, values=(0, 1000),
                  names=("heater_power", "cooling_valve"), accepted=False,
                  error="exception 2", t_decoded=12.6)
    log.close()
    (line,) = path.read_text().splitlines()
    got = json.loads(line)
    assert set(got) == {f.name for f in fields(WriteRecord)}
    assert got == {"seq": 0, "t": 12.5, "unit": 1, "fc": 16, "table": "holding",
                   "address": 100, "values": [0, 1000],
                   "names": ["heater_power", "cooling_valve"], "accepted": False,
                   "error": "exception 2", "source": "modbus", "t_decoded": 12.6}
    assert rec.to_json() == got
