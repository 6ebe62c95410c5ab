"""A failure-mode playbook for the machine, derived from the profile in force (sans-IO).

``derive(profile, setting, encode)`` turns the effective hardware profile (the profile with
the configuration's ``[overrides]`` applied) and what the configuration says about this agent
(:class:`Setting`: device, mode, twin or not, the trust store, the role table) into a
:class:`Playbook`: one :class:`Case` per hazard (every trip, every redundancy group, the PLC's
communication loss, an agent hang caught by the native watchdog, the PLC's own watchdog) and
the twin's loss, each with what the agent detects, what it does (the safe set: value, raw
registers or coil, ``failsafe`` policy per output; the recovery policy and hold-off; per
output its ``on_twin_loss`` shed; the return policy and hold-off), what the LEDs show (asked
of :func:`agent.core.leds.rule_for`, the table the agent itself uses), what the operator
checks and does, and how to acknowledge; then who may change what (the role table with the
keys of the trust store). ``agent.cli.playbook`` renders it as Markdown or HTML.

Nothing here is generic text about "a hazard": every sentence names the profile's own
signals, limits, outputs and times. Pure: no I/O; nothing raises for a valid profile.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.core.leds import Indication, rule_for
from agent.model.mode import Mode
from agent.model.profile import (
    FailsafePolicy,
    Output,
    Profile,
    RecoveryPolicy,
    ReturnPolicy,
    TripCondition,
    TwinLossPolicy,
)

__all__ = ["Case", "Leds", "Playbook", "RoleRights", "SafeWrite", "Setting", "Signer",
           "TwinLoss", "derive", "fingerprint", "raw_text"]

Raw = tuple[int, ...] | bool | None
Encode = Callable[[Output, float], Raw]


@dataclass(frozen=True)
class Signer:
    """One ``[[trust]]`` key: its id, role and fingerprint (:func:`fingerprint`)."""

    key_id: str
    role: str
    fingerprint: str


@dataclass(frozen=True)
class Setting:
    """What the agent configuration says about this agent, as plain data."""

    config: str  # the configuration file (for the heading)
    device_id: str
    mode: Mode
    twin: bool  # a [twin] table is configured
    trust: tuple[Signer, ...]
    role_table: tuple[tuple[str, str], ...]  # (key path pattern, role), first match wins
    default_role: str  # the role of a key the table does not list
    approvers_for_active: int


@dataclass(frozen=True)
class Leds:
    """What the three LEDs show in one phase of a case, and the table row's meaning."""

    phase: str
    green: str
    amber: str
    red: str
    meaning: str

    def __str__(self) -> str:
        return f"green {self.green}, amber {self.amber}, red {self.red}: {self.meaning}"


@dataclass(frozen=True)
class SafeWrite:
    """One point of the safe set: value (engineering units), raw, ``failsafe`` policy."""

    output: str
    value: float
    unit: str
    raw: Raw
    policy: str


@dataclass(frozen=True)
class TwinLoss:
    """One output's shed when the twin's authority over it ends."""

    output: str
    policy: str  # hold | local | release | safe
    does: str


@dataclass(frozen=True)
class Case:
    """One failure mode: what detects it, what the agent does, the LEDs, the operator."""

    kind: str  # trip | group | plc-comm | agent-hang | plc-watchdog | twin-loss
    name: str
    title: str
    detects: tuple[str, ...]
    agent_does: tuple[str, ...]
    leds: tuple[Leds, ...]
    operator: tuple[str, ...]


@dataclass(frozen=True)
class RoleRights:
    """One signer role: the configuration keys it may change and its keys in the store."""

    role: str
    keys: tuple[str, ...]
    signers: tuple[Signer, ...]


@dataclass(frozen=True)
class Playbook:
    profile: str
    config: str
    device_id: str
    mode: str
    twin: bool
    board: str
    safe_set: tuple[SafeWrite, ...]
    recovery: str
    acknowledge: str
    cases: tuple[Case, ...]
    twin_loss: tuple[TwinLoss, ...]
    twin_return: str
    unconfirmed: Leds  # what every hazard shows until the PLC confirmed the safe set
    roles: tuple[RoleRights, ...]
    mode_rule: str


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` and the unpadded base64 of the raw key's SHA-256 (as ssh-keygen shows)."""
    digest = base64.b64encode(hashlib.sha256(public_key).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _num(value: float, unit: str = "") -> str:
    return f"{value:g} {unit}".strip()


def _leds(phase: str, state: str, setting: Setting, *, link: str = "", ack: bool = False,
          authority: str = "local", confirmed: bool = True) -> Leds:
    link = link or ("alive" if setting.twin else "none")
    rule = rule_for(Indication(state, setting.mode.value, link, ack, confirmed, authority))
    if rule is None:  # pattern_for's fallback: never reached for a valid indication
        return Leds(phase, "off", "off", "fast blink", "no LED rule: the FAILSAFE pattern")
    p = rule.pattern
    return Leds(phase, p.green.value, p.amber.value, p.red.value, rule.meaning)


def raw_text(raw: Raw) -> str:
    """Raw registers as hex words (``0x03e8``), a coil as ``true``/``false``, None as ``-``."""
    if raw is None:
        return "-"
    return str(raw).lower() if isinstance(raw, bool) else " ".join(f"0x{v:04x}" for v in raw)


def _safe_set(profile: Profile, encode: Encode | None) -> tuple[SafeWrite, ...]:
    out = []
    for o in profile.writes:
        raw: Raw = None
        if encode is not None:
            try:
                raw = encode(o, o.safe_value)
            except (ValueError, PermissionError):  # WriteRefused; a parsed profile encodes
                raw = None
        policy = o.failsafe.value
        if o.failsafe is FailsafePolicy.RAMP and o.max_rate is not None:
            policy = f"ramp at {_num(o.max_rate, o.unit)}/s"
        elif o.failsafe is FailsafePolicy.HOLD_LAST:
            policy = "hold_last (the last value the agent wrote; the safe value if none)"
        out.append(SafeWrite(o.name, o.safe_value, o.unit, raw, policy))
    return tuple(out)


def _recovery(profile: Profile) -> str:
    r = profile.recovery
    if r.policy is RecoveryPolicy.MANUAL:
        return (f"manual: once the plant is healthy the agent waits (RECOVERING, outputs still "
                f"safe) for an acknowledgement; hold-off {r.holdoff_s:g} s")
    return (f"auto: after {r.holdoff_s:g} s of continuous health the agent leaves FAILSAFE "
            "by itself (an acknowledgement may cut the hold-off short)")


def _acknowledge(profile: Profile) -> str:
    b = profile.board
    button = ("no reset button on this board" if b.reset_button is None else
              f"hold the reset button (GPIO {b.reset_button}) for {b.reset_hold_s:g} s")
    return f"{button}, or run `twinguard ack` on the device (root or the twinguard group)"


def _hazard_tail(profile: Profile, setting: Setting, safe: Sequence[SafeWrite]
                 ) -> tuple[tuple[str, ...], tuple[Leds, ...]]:
    """What every FAILSAFE does and shows, after the cause."""
    flag = profile.plc_remote
    first = ("" if flag is None else f", the remote flag ({flag.table.value} {flag.address}) "
             f"at {flag.remote_value} first")
    does = [f"FAILSAFE (latched), in either mode: the safe set ({len(safe)} points{first}), "
            "written again every tick until the PLC acknowledged it and reads it back",
            f"recovery {profile.recovery.policy.value}"]
    manual = profile.recovery.policy is RecoveryPolicy.MANUAL
    leds = (
        _leds("latched", "failsafe", setting),
        _leds("healthy again", "recovering", setting, ack=manual),
    )
    return tuple(does), leds


def _ack_step(profile: Profile) -> str:
    if profile.recovery.policy is RecoveryPolicy.MANUAL:
        return "when the cause is gone: acknowledge (reset button or `twinguard ack`)"
    return (f"when the cause is gone the agent returns after {profile.recovery.holdoff_s:g} s "
            "of health (sooner: reset button or `twinguard ack`)")


def _trip_cases(profile: Profile, setting: Setting, safe: Sequence[SafeWrite]) -> list[Case]:
    does, leds = _hazard_tail(profile, setting, safe)
    out = []
    for t in profile.trips:
        g = profile.group(t.group)
        unit = profile.signal(g.signals[0]).unit if g.signals else ""
        if t.condition is TripCondition.BAD:
            rule = f"group {g.name} BAD (fewer than {g.min_healthy} healthy channels)"
        else:
            rule = f"voted {g.name} {t.condition.value} {_num(t.limit or 0.0, unit)}"
        out.append(Case(
            "trip", t.name, f"trip {t.name}: {rule}",
            (rule, f"signals {', '.join(g.signals)} ({g.voting}, on disagreement the "
                   f"{g.safe_direction.value}er reading is believed)"),
            does, leds,
            (f"check {g.name} on the PLC's display and the sensors {', '.join(g.signals)}; "
             "`twinguard status` shows the votes and the trip",
             "remove the cause (the process, a sensor, its wiring)", _ack_step(profile)),
        ))
    return out


def _group_cases(profile: Profile, setting: Setting, safe: Sequence[SafeWrite]) -> list[Case]:
    hdoes, hleds = _hazard_tail(profile, setting, safe)
    out = []
    for g in profile.groups:
        unit = profile.signal(g.signals[0]).unit if g.signals else ""
        excl = [f"further than {_num(g.discrepancy, unit)} from the others",
                f"older than {g.max_age_s:g} s", "outside its range"]
        if g.max_rate is not None:
            excl.append(f"changing faster than {_num(g.max_rate, unit)}/s")
        if g.stuck_after_s is not None:
            excl.append(f"frozen for {g.stuck_after_s:g} s while its peers move")
        detects = (f"channels {', '.join(g.signals)}, voted {g.voting}, at least "
                   f"{g.min_healthy} healthy", "a channel is excluded when " + ", ".join(excl))
        degraded = _leds("a channel out", "degraded", setting)
        if g.required:
            does = ("a channel out: DEGRADED, the plant runs on the others",
                    f"below {g.min_healthy} healthy: group BAD, required, so a hazard", *hdoes)
            leds = (degraded, *hleds)
        else:
            does = ("a channel out: DEGRADED, the plant runs on the others",
                    f"below {g.min_healthy} healthy: group BAD, not required: still DEGRADED, "
                    "no safe set (a trip on it still acts)")
            leds = (degraded,)
        out.append(Case(
            "group", g.name, f"group {g.name}: channels disagree, go stale or fail",
            detects, does, leds,
            (f"`twinguard status` names the excluded channel and why; compare "
             f"{', '.join(g.signals)} with the PLC's display",
             "replace or rewire the faulty sensor; the channel is taken back when it agrees",
             *((_ack_step(profile),) if g.required else ())),
        ))
    return out


def _plc_cases(profile: Profile, setting: Setting, safe: Sequence[SafeWrite]) -> list[Case]:
    does, leds = _hazard_tail(profile, setting, safe)
    plc, wd = profile.plc, profile.plc_watchdog
    comm = Case(
        "plc-comm", "plc-comm", "PLC communication lost",
        (f"no valid reply within {plc.timeout_s:g} s after {plc.retries} retr"
         f"{'y' if plc.retries == 1 else 'ies'}; reconnect from {plc.reconnect_min_s:g} s "
         f"doubling to {plc.reconnect_max_s:g} s",),
        ("the PLC unreachable is a hazard", *does,
         f"while nothing reaches the PLC, its own watchdog applies its fallback after "
         f"{wd.expected_timeout_ms} ms without a heartbeat change"),
        leds,
        ("check the cable / network to the PLC and that the PLC is powered and in RUN",
         "`twinguard status` shows the PLC client's last error", _ack_step(profile)),
    )
    fault = ("" if wd.fault_address is None else
             f"; its fault latch is discrete input {wd.fault_address}")
    reset = ("" if wd.reset_address is None else
             f"the agent clears the PLC's latch through coil {wd.reset_address}")
    plcwd = Case(
        "plc-watchdog", "plc-watchdog", "the PLC's communication watchdog",
        (f"the agent changes holding register {wd.heartbeat_address} every complete tick; the "
         f"PLC's timeout (holding {wd.timeout_address}) must read {wd.expected_timeout_ms} ms"
         f"{fault}",),
        ("the agent dead or the board without power: the PLC applies its fallback outputs "
         f"by itself after {wd.expected_timeout_ms} ms",
         "a timeout not as expected, or the PLC fallen back while the agent runs, is a hazard",
         *does, *((reset,) if reset else ())),
        (Leds("agent not running", "off", "off", "off", "all dark: the agent is not running"),
         *leds),
        ("all LEDs dark: `systemctl status twinguard`, the board's power; the PLC runs its "
         "fallback meanwhile",
         f"a timeout mismatch: set the PLC's watchdog to {wd.expected_timeout_ms} ms",
         _ack_step(profile)),
    )
    return [comm, plcwd]


def _hang_case(profile: Profile, setting: Setting, safe: Sequence[SafeWrite]) -> Case:
    does, leds = _hazard_tail(profile, setting, safe)
    b = profile.board
    fault_led = ("" if b.fault_led is None else
                 f"; writes {b.fault_led_value!r} to the fault LED {b.fault_led}")
    hw = ("" if b.hw_watchdog is None else
          f"; stops feeding {b.hw_watchdog}, so the board reboots")
    native = "required" if profile.require_native_watchdog else "used where built"
    return Case(
        "agent-hang", "agent-hang", "the agent hangs (Python stalled)",
        (f"the native watchdog thread (C, {native}) sees no complete tick for "
         f"{profile.timing.watchdog_deadline_s:g} s",),
        (f"the native watchdog sends the pre-encoded safe set{fault_led}{hw}; systemd "
         "restarts the agent",
         "nothing decided before the hang is written after it; when Python runs again: "
         "FAILSAFE (\"agent hang\")", *does[1:]),
        (Leds("hung", "frozen", "frozen", "frozen",
              "a pattern that stops blinking: the agent is gone or hung"), *leds),
        ("`journalctl -u twinguard` for the cause; `twinguard status` once it answers",
         _ack_step(profile)),
    )


def _twin_loss(profile: Profile, setting: Setting) -> tuple[tuple[TwinLoss, ...], Case]:
    flag = profile.plc_remote
    rows = []
    for o in profile.outputs:
        rate = "" if o.max_rate is None else f" at {_num(o.max_rate, o.unit)}/s"
        if o.on_twin_loss is TwinLossPolicy.HOLD:
            does = "keeps what the PLC holds now: nothing written"
        elif o.on_twin_loss is TwinLossPolicy.LOCAL:
            does = f"ramps{rate} to its local value {_num(o.local_value or 0.0, o.unit)}"
        elif o.on_twin_loss is TwinLossPolicy.RELEASE:
            where = ("" if flag is None else
                     f": the remote flag ({flag.table.value} {flag.address}) to "
                     f"{flag.local_value}")
            does = f"handed back to the PLC program{where}"
        else:
            does = (f"a hazard: FAILSAFE, the safe set (this output "
                    f"{_num(o.safe_value, o.unit)})")
        rows.append(TwinLoss(o.name, o.on_twin_loss.value, does))
    t = profile.timing
    shadow = setting.mode is Mode.SHADOW
    detects: tuple[str, ...] = (
        f"no heartbeat for {t.heartbeat_timeout_s:g} s (late after {t.heartbeat_late_s:g} s: a "
        "warning only), the link drops, the twin says bye or unhealthy",)
    if not setting.twin:
        detects = ("no [twin] in the configuration: the agent is a local guard, the twin "
                   "never has authority",)
    agent = [("mode shadow: the twin only advises; its loss writes nothing" if shadow else
             "mode active: the twin's authority sheds to local control, per output as below"),
            "production goes on (not a hazard)" if not profile.twin_loss_is_hazard or shadow
            else "an output sheds to safe: in active mode the loss is a hazard (FAILSAFE)"]
    leds = [_leds("twin not heard", "normal", setting, link="lost" if setting.twin else "none")]
    operator = ["nothing to do for the plant; tell the twin platform's operations",
                "`twinguard status` shows the shed's reason and time"]
    if setting.twin and not shadow:
        leds.append(_leds("twin back, return hold-off", "normal", setting,
                          authority="returning",
                          ack=profile.authority.return_policy is ReturnPolicy.MANUAL))
        operator.append(_return(profile))
    case = Case("twin-loss", "twin-loss", "the twin goes away", detects, tuple(agent),
                tuple(leds), tuple(operator))
    return tuple(rows), case


def _return(profile: Profile) -> str:
    a = profile.authority
    if a.return_policy is ReturnPolicy.MANUAL:
        return ("return manual: the twin gets its authority back only on an acknowledgement "
                f"({_acknowledge(profile)})")
    return (f"return auto: after {a.return_holdoff_s:g} s of continuous healthy heartbeats the "
            "twin regains its authority, without a bump")


def _roles(setting: Setting) -> tuple[RoleRights, ...]:
    order: list[str] = []
    for _, role in setting.role_table:
        if role not in order:
            order.append(role)
    for role in (setting.default_role, *(s.role for s in setting.trust), "approver"):
        if role not in order:
            order.append(role)
    out = []
    for role in order:
        keys = [p for p, r in setting.role_table if r == role]
        if role == setting.default_role:
            keys.append("anything not listed")
        if role == "approver":
            keys.append(f"mode = active (with {setting.approvers_for_active - 1} more approver)")
        out.append(RoleRights(role, tuple(keys),
                              tuple(s for s in setting.trust if s.role == role)))
    return tuple(out)


def derive(profile: Profile, setting: Setting, encode: Encode | None = None) -> Playbook:
    """The playbook of ``profile`` (the effective one) under ``setting``.

    ``encode`` gives the raw registers or coil of an output's value (the Modbus codec's
    ``encode_output``); without it, or where it refuses, the raw is ``None``.
    """
    safe = _safe_set(profile, encode)
    twin_rows, twin_case = _twin_loss(profile, setting)
    cases = (*_trip_cases(profile, setting, safe), *_group_cases(profile, setting, safe),
             *_plc_cases(profile, setting, safe), _hang_case(profile, setting, safe),
             twin_case)
    return Playbook(
        profile=profile.source, config=setting.config, device_id=setting.device_id,
        mode=setting.mode.value, twin=setting.twin, board=profile.board.name, safe_set=safe,
        recovery=_recovery(profile), acknowledge=_acknowledge(profile), cases=cases,
        twin_loss=twin_rows, twin_return=_return(profile),
        unconfirmed=_leds("safe set not yet confirmed", "failsafe", setting, confirmed=False),
        roles=_roles(setting),
        mode_rule=(f"mode = active needs {setting.approvers_for_active} distinct approver keys; "
                   "back to shadow any trusted signer"),
    )
