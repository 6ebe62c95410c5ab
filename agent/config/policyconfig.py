"""``[telemetry.policy]``: data minimisation before telemetry leaves the device (parsing).

::

    [telemetry.policy]                 # role: operator (agent/config/roles.py)
    device = "pseudonym"               # id (default) | pseudonym
    pseudonym_key = "pseudonym.key"    # with "pseudonym": a local secret file, >= 32 bytes,
                                       # relative to the configuration file

    [telemetry.policy.signals]         # a signal or a group of the profile = its rule;
    temp_a = "send"                    # every name not listed is "send"
    temp_b = "drop"
    temp_c = { action = "quantize", step = 0.5 }
    pressure = { action = "aggregate", window_s = 10 }

A rule is a string (``send`` or ``drop``) or a table ``{action, window_s}`` (aggregate,
``0 < window_s <= 86400``) / ``{action, step}`` (quantize, ``step >= 1e-9``). Unknown keys,
a parameter that does not belong to the action and a missing one are errors at their key
path. Whether the names exist in the profile is checked by :func:`check_policy` once the
profile is known (as the ``[overrides]`` names are), with a suggestion for a near miss.

The key file is *not* read here (parsing does no I/O): the telemetry feed reads it when it
starts, and refuses to send telemetry under the real id if it cannot
(``agent.runtime.telemetry_feed``). The secret is deliberately a file and not a value in the
configuration: a configuration travels in signed bundles through the twin, the very party
the pseudonym hides the device from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent.config.fields import Fields, Problems, describe, suggest
from agent.model.errors import ConfigError
from agent.model.policy import Action, DeviceName, Rule, TelemetryPolicy
from agent.model.profile import Profile

__all__ = ["POLICY_KEYS", "check_policy", "parse_policy"]

POLICY_KEYS = ("device", "pseudonym_key", "signals")
_RULE_KEYS = ("action", "window_s", "step")
WINDOW_MAX_S = 86_400.0
STEP_MIN = 1e-9
_AT = "telemetry.policy"


def parse_policy(out: Problems, data: object, base: Path) -> TelemetryPolicy:
    """The policy of ``[telemetry.policy]`` (``data``); problems go to ``out``."""
    f = Fields(out, _AT, data, POLICY_KEYS)
    device = f.enum("device", DeviceName, DeviceName.ID)
    key: Path | None = None
    if f.has("pseudonym_key"):
        p = Path(f.text("pseudonym_key"))
        key = p if p.is_absolute() else base / p
    if f.ok("device", "pseudonym_key"):
        if device is DeviceName.PSEUDONYM and key is None:
            f.fail("pseudonym_key", 'missing: device = "pseudonym" needs a local secret file')
        elif device is DeviceName.ID and key is not None:
            f.fail("pseudonym_key", 'only with device = "pseudonym" (it would be ignored)')
    signals = f.data.get("signals", {})
    rules: dict[str, Rule] = {}
    if not isinstance(signals, Mapping):
        f.fail("signals", f"expected a table of name = rule, got {describe(signals)}")
    else:
        for name, value in signals.items():
            rule = _rule(out, f"{_AT}.signals.{name}", value)
            if rule is not None:
                rules[str(name)] = rule
    return TelemetryPolicy(rules=rules, device=device, pseudonym_key=key)


def _rule(out: Problems, at: str, value: object) -> Rule | None:
    if isinstance(value, str):
        try:
            action = Action(value)
        except ValueError:
            names = [a.value for a in Action]
            out.add(at, f"expected one of {', '.join(map(repr, names))}, got "
                        f"{describe(value)}{suggest(value, names)}")
            return None
        if action is Action.AGGREGATE:
            out.add(at, 'aggregate needs a window: { action = "aggregate", window_s = N }')
            return None
        if action is Action.QUANTIZE:
            out.add(at, 'quantize needs a step: { action = "quantize", step = X }')
            return None
        return Rule(action)
    if not isinstance(value, Mapping):
        out.add(at, f"expected a rule (a string or a table), got {describe(value)}")
        return None
    f = Fields(out, at, value, _RULE_KEYS)
    action = f.enum("action", Action)
    if not f.ok("action"):
        return None
    window = step = None
    if action is Action.AGGREGATE:
        window = f.number("window_s", gt=0)
        if f.ok("window_s") and window > WINDOW_MAX_S:
            f.fail("window_s", f"at most {WINDOW_MAX_S:g} s (one day), got {window:g}")
    else:
        f.forbid("window_s", f"only for action = \"aggregate\", not {action.value!r}")
    if action is Action.QUANTIZE:
        step = f.number("step", ge=STEP_MIN)
    else:
        f.forbid("step", f"only for action = \"quantize\", not {action.value!r}")
    if f.bad:
        return None
    return Rule(action, window_s=window, step=step)


def check_policy(profile: Profile, policy: TelemetryPolicy, source: str) -> None:
    """``ConfigError`` naming every rule whose name is neither a signal nor a group of
    ``profile`` (the telemetry names a poll record carries)."""
    known = [s.name for s in profile.signals] + [g.name for g in profile.groups]
    out = Problems(source)
    for name in policy.rules:
        if name not in known:
            out.add(f"{_AT}.signals.{name}", f"the profile has no signal or group {name!r}"
                                             f"{suggest(name, known)}")
    if out.items:
        raise ConfigError(out.items)
