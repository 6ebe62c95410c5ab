"""``twinguard playbook --profile P --config C [-o FILE.md|FILE.html]``: the failure-mode
playbook for the machine, from the profile and configuration in force.

The profile is loaded and the configuration's ``[overrides]`` applied (the effective
profile, as ``twinguard run`` would use it); ``agent.core.playbook.derive`` makes the content
and this module renders it: Markdown on stdout (default) or to ``FILE.md``, or a
self-contained printable page ``FILE.html`` (inline CSS, no script, no external asset;
print CSS for A4). A bad profile or configuration is one ``FILE: KEY.PATH: reason`` line per
problem and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path

from agent.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    profile_option,
    report_problems,
)
from agent.config.agentconfig import Role, load_config
from agent.config.effective import effective_profile
from agent.config.profile.load import load_profile
from agent.config.roles import APPROVERS_FOR_ACTIVE, ROLE_TABLE
from agent.core.playbook import (
    Leds,
    Playbook,
    Setting,
    Signer,
    derive,
    fingerprint,
    raw_text,
)
from agent.model.errors import ConfigError, ProfileError
from agent.protocol.modbus.codec import encode_output

EXIT_CODES = """exit status:
  0  the playbook was written
  1  FILE cannot be written
  2  bad usage (-o FILE not .md or .html), a profile or configuration with problems
     (one FILE: KEY.PATH: reason line each), a missing file"""

OUTPUTS = (".md", ".html")


def options(parser: argparse.ArgumentParser) -> None:
    profile_option(parser)
    parser.add_argument("--config", "-c", metavar="C", default=None,
                        help="the agent configuration (default: none, shadow mode, no twin)")
    parser.add_argument("-o", "--output", metavar="FILE", type=Path, default=None,
                        help="write to FILE (.md Markdown, .html a printable page) instead "
                             "of Markdown on stdout")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"twinguard playbook: {message}", file=sys.stderr)
    return code


def build(profile_ref: str | None, config_ref: str | None) -> Playbook:
    """The playbook for a profile and a configuration file (None: the defaults).

    Raises ``ProfileError`` / ``ConfigError`` (every problem, each naming its file).
    """
    profile = load_profile(profile_ref)
    config = load_config(config_ref)
    profile = effective_profile(profile, config.overrides, config.source)
    setting = Setting(
        config=config.source, device_id=config.device_id, mode=config.mode,
        twin=config.twin is not None,
        trust=tuple(Signer(k.key_id, k.role.value, fingerprint(k.public_key))
                    for k in config.trust),
        role_table=tuple((pattern, role.value) for pattern, role in ROLE_TABLE),
        default_role=Role.SAFETY.value, approvers_for_active=APPROVERS_FOR_ACTIVE,
    )
    return derive(profile, setting, encode_output)


def playbook(args: argparse.Namespace) -> int:
    """Write the failure-mode playbook for a profile and configuration (Markdown or HTML)."""
    out: Path | None = args.output
    if out is not None and out.suffix.lower() not in OUTPUTS:
        return _fail(f"-o {out}: the playbook is written as .md or .html")
    try:
        book = build(args.profile, args.config)
    except (ProfileError, ConfigError) as error:
        code = report_problems(error)
        print("twinguard playbook: fix the file named above (`twinguard check --profile P` "
              "checks a profile)", file=sys.stderr)
        return code
    text = page(book) if out is not None and out.suffix.lower() == ".html" else markdown(book)
    if out is None:
        print(text, end="")
        return EXIT_OK
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_FAILED)
    return EXIT_OK


# --- Markdown --------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(b: Playbook) -> str:
    """The playbook as Markdown."""
    lines = [f"# Failure-mode playbook: {b.device_id}", "",
             f"Profile `{b.profile}` ({b.board}); configuration `{b.config}`; mode "
             f"**{b.mode}**; twin {'configured' if b.twin else 'none (local guard)'}.", "",
             "## Safe set", "", "| output | safe value | raw | failsafe |", "|---|---|---|---|"]
    lines += [f"| {w.output} | {w.value:g} {w.unit} | {raw_text(w.raw)} | {_cell(w.policy)} |"
              for w in b.safe_set]
    lines += ["", f"Recovery: {b.recovery}.", "", f"Acknowledge: {b.acknowledge}.", "",
              f"Every hazard, until the PLC confirmed the safe set: {b.unconfirmed}.", "",
              "## Failure modes", ""]
    for c in b.cases:
        lines += [f"### {c.title}", "", "**Detects:** " + "; ".join(c.detects), "",
                  "**The agent:** " + "; ".join(c.agent_does), "", "**LEDs:**", ""]
        lines += [f"- {led.phase}: {led}" for led in c.leds]
        lines += ["", "**Operator:**", ""]
        lines += [f"{i}. {step}" for i, step in enumerate(c.operator, 1)]
        lines.append("")
    lines += ["## Twin loss per output", "", "| output | on twin loss | the agent |",
              "|---|---|---|"]
    lines += [f"| {t.output} | {t.policy} | {_cell(t.does)} |" for t in b.twin_loss]
    lines += ["", f"Return: {b.twin_return}.", "", "## Who may change what", "",
              "| role | configuration keys | keys in the trust store |", "|---|---|---|"]
    for r in b.roles:
        signers = ", ".join(f"{s.key_id} `{s.fingerprint}`" for s in r.signers) or "none"
        lines.append(f"| {r.role} | {_cell(', '.join(f'`{k}`' for k in r.keys))} | "
                     f"{signers} |")
    lines += ["", f"{b.mode_rule}.", ""]
    return "\n".join(lines)


# --- HTML ------------------------------------------------------------------------------

CSS = """body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:1.2em;color:#222;
font-size:10pt}h1{font-size:1.25em;margin:.2em 0}h2{font-size:1.05em;margin:.8em 0 .3em}
h3{font-size:.95em;margin:.5em 0 .2em}table{border-collapse:collapse;width:100%;
font-size:.85em;margin-bottom:.4em}th,td{border:1px solid #bbb;padding:2px 5px;
vertical-align:top;text-align:left}th{background:#eee}.case{border:1px solid #ccc;
padding:3px 6px;margin:.3em 0;break-inside:avoid}.case p,.case ul,.case ol{margin:.15em 0}
.led{list-style:none;padding-left:.5em}.small{color:#555;font-size:.85em}
.l{border:1px solid #888;border-radius:3px;padding:0 3px;white-space:nowrap;font-size:.9em}
.l.off{color:#777;background:#fff}.l.g.on{background:#43a047;color:#fff}
.l.a.on{background:#ff8f00;color:#fff}.l.r.on{background:#c62828;color:#fff}
.l.g.slow{background:#a5d6a7}.l.a.slow{background:#ffcc80}.l.r.slow{background:#ef9a9a}
.l.g.fast{background:#e8f5e9}.l.a.fast{background:#fff3e0}.l.r.fast{background:#ffebee}
.l.frozen{background:#eee;font-style:italic}
@page{size:A4;margin:10mm}@media print{body{margin:0;font-size:7.5pt}
.cases{columns:2;column-gap:5mm}h2{break-after:avoid}}"""


def _list(items: tuple[str, ...], tag: str = "ul") -> str:
    return f"<{tag}>" + "".join(f"<li>{escape(i)}</li>" for i in items) + f"</{tag}>"


LED_CLASS = {"off": "off", "on": "on", "slow blink": "slow", "fast blink": "fast",
             "frozen": "frozen"}


def _led(led: Leds) -> str:
    """The three LEDs as small marks (G/A/R, filled: on, half: slow, light: fast blink)
    with their modes spelled out, then the meaning."""
    marks = " ".join(f'<span class="l {colour[0]} {LED_CLASS.get(mode, "on")}" '
                     f'title="{colour} {escape(mode)}">{colour[0].upper()} {escape(mode)}</span>'
                     for colour, mode in (("green", led.green), ("amber", led.amber),
                                          ("red", led.red)))
    return f"{marks}: {escape(led.meaning)}"


def page(b: Playbook) -> str:
    """The playbook as one self-contained HTML page (pure)."""
    safe = "".join(f'<tr class="output" data-output="{escape(w.output)}"><td>'
                   f"{escape(w.output)}</td><td>{w.value:g} {escape(w.unit)}</td><td>"
                   f"{escape(raw_text(w.raw))}</td><td>{escape(w.policy)}</td></tr>"
                   for w in b.safe_set)
    cases = "".join(
        f'<div class="case" id="case-{escape(c.kind)}-{escape(c.name)}"><h3>{escape(c.title)}'
        f"</h3><p><b>Detects:</b> {escape('; '.join(c.detects))}</p><p><b>The agent:</b> "
        f"{escape('; '.join(c.agent_does))}</p><p><b>LEDs:</b></p><ul class=\"led\">"
        + "".join(f"<li>{escape(led.phase)}: {_led(led)}</li>" for led in c.leds)
        + f"</ul><p><b>Operator:</b></p>{_list(c.operator, 'ol')}</div>" for c in b.cases)
    loss = "".join(f'<tr data-output="{escape(t.output)}"><td>{escape(t.output)}</td><td>'
                   f"{escape(t.policy)}</td><td>{escape(t.does)}</td></tr>" for t in b.twin_loss)
    roles = "".join(
        f"<tr><td>{escape(r.role)}</td><td>{escape(', '.join(r.keys))}</td><td>"
        + (", ".join(f"{escape(s.key_id)} <code>{escape(s.fingerprint)}</code>"
                     for s in r.signers) or "none") + "</td></tr>" for r in b.roles)
    title = f"twinguard playbook {b.device_id}"
    twin = "configured" if b.twin else "none (local guard)"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>Failure-mode playbook: {escape(b.device_id)}</h1>
<p class="small">Profile {escape(b.profile)} ({escape(b.board)}); configuration
{escape(b.config)}; mode <b>{escape(b.mode)}</b>; twin {twin}.</p>
<h2>Safe set</h2>
<table id="safe-set"><thead><tr><th>output</th><th>safe value</th><th>raw</th>
<th>failsafe</th></tr></thead><tbody>{safe}</tbody></table>
<p><b>Recovery:</b> {escape(b.recovery)}. <b>Acknowledge:</b> {escape(b.acknowledge)}.
<b>Every hazard</b>, until the PLC confirmed the safe set: {_led(b.unconfirmed)}.</p>
<h2>Failure modes</h2><div class="cases">{cases}</div>
<h2>Twin loss per output</h2>
<table id="twin-loss"><thead><tr><th>output</th><th>on twin loss</th><th>the agent</th></tr>
</thead><tbody>{loss}</tbody></table>
<p><b>Return:</b> {escape(b.twin_return)}.</p>
<h2>Who may change what</h2>
<table id="roles"><thead><tr><th>role</th><th>configuration keys</th>
<th>keys in the trust store</th></tr></thead><tbody>{roles}</tbody></table>
<p>{escape(b.mode_rule)}.</p>
</body></html>
"""
