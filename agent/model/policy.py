"""The telemetry policy (data minimisation) as parsed data: what may leave the device.

``[telemetry.policy]`` of the agent configuration (parsed by ``agent.config.policyconfig``,
applied by ``agent.core.minimise``) names, per signal or voted group of the profile, one
:class:`Action`; every name it does not list is ``send``. The device is named in telemetry
by its id or by a keyed pseudonym (:class:`DeviceName`).

``header()`` is what every telemetry record carries as ``policy`` (PROTOCOL.md §7.2.1): the
rules that are not ``send``, whether the device name is a pseudonym, and ``id``, a short
digest of exactly that, so a twin can tell two policies apart without comparing maps.

Plain data: no I/O, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Action", "DeviceName", "Rule", "TelemetryPolicy"]


class Action(enum.Enum):
    """What happens to one signal's (or group's) values before they are recorded."""

    SEND = "send"  # as read (the default)
    DROP = "drop"  # never recorded for the twin
    AGGREGATE = "aggregate"  # min/mean/max/count per window of ``window_s``
    QUANTIZE = "quantize"  # rounded to a multiple of ``step``; raw registers withheld


class DeviceName(enum.Enum):
    """How telemetry names the device: its ``device_id`` or a keyed pseudonym."""

    ID = "id"
    PSEUDONYM = "pseudonym"


@dataclass(frozen=True)
class Rule:
    action: Action
    window_s: float | None = None  # AGGREGATE only
    step: float | None = None  # QUANTIZE only

    def wire(self) -> list[Any]:
        """``[action]``, ``["aggregate", window_s]`` or ``["quantize", step]``."""
        param = self.window_s if self.action is Action.AGGREGATE else self.step
        return [self.action.value] if param is None else [self.action.value, param]

    def __str__(self) -> str:
        if self.action is Action.AGGREGATE:
            return f"aggregate {self.window_s:g} s"
        if self.action is Action.QUANTIZE:
            return f"quantize {self.step:g}"
        return str(self.action.value)


SEND = Rule(Action.SEND)


@dataclass(frozen=True)
class TelemetryPolicy:
    """The policy in force; the default sends everything under the device id."""

    rules: Mapping[str, Rule] = field(default_factory=dict)  # signal or group name -> rule
    device: DeviceName = DeviceName.ID
    pseudonym_key: Path | None = None  # with DeviceName.PSEUDONYM: the local secret file

    def rule(self, name: str) -> Rule:
        return self.rules.get(name, SEND)

    @property
    def minimised(self) -> tuple[str, ...]:
        """The names whose values do not leave as read (every rule but ``send``), sorted."""
        return tuple(sorted(n for n, r in self.rules.items() if r.action is not Action.SEND))

    def header(self) -> dict[str, Any]:
        """``{"id", "pseudonym", "rules"}`` (see the module docstring); deterministic."""
        rules = {name: self.rules[name].wire() for name in self.minimised}
        pseudonym = self.device is DeviceName.PSEUDONYM
        text = json.dumps([rules, pseudonym], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return {"id": digest, "pseudonym": pseudonym, "rules": rules}
