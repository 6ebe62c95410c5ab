"""The people who sign configuration, done with the real CLI as a plant would do it.

:meth:`Signer.create` runs ``twinguard keys new`` once per person (in parallel: each is its
own process) and keeps the ``[[trust]]`` entries the command prints, for the agent's
factory configuration::

    keys/trusted/approver-ann.key   approver   first of the two-person rule for ``active``
    keys/trusted/approver-bob.key   approver   second approver (co-signs Ann's bundle)
    keys/trusted/safety-sam.key     safety     safety settings (trips, safe values, trust)
    keys/trusted/operator-olga.key  operator   telemetry and reporting (a restart to apply)
    keys/attacker/mallory.key       (none)     NOT in the trust store: the forger

:meth:`Signer.sign` writes a configuration text to a file and runs ``twinguard config sign``
with the first key and ``twinguard config cosign`` with each further one (each person signs
on their own machine), returning the bundle file. :func:`tampered` replaces a signed
bundle's configuration and keeps its signatures (what a man in the middle would try).

A CLI call that fails raises :class:`SigningError` with the command's stderr.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.config.bundle import decode

log = logging.getLogger(__name__)

APPROVERS = ("approver-ann", "approver-bob")
SAFETY = "safety-sam"
OPERATOR = "operator-olga"
ATTACKER = "mallory"
TRUSTED = {APPROVERS[0]: "approver", APPROVERS[1]: "approver", SAFETY: "safety",
           OPERATOR: "operator"}
CLI_TIMEOUT_S = 30.0


class SigningError(RuntimeError):
    """A ``twinguard keys`` / ``twinguard config`` command failed."""


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def _check(proc: subprocess.CompletedProcess[str], argv: Sequence[str]) -> str:
    if proc.returncode != 0:
        raise SigningError(f"{' '.join(argv[2:])} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


def cli(*args: str) -> str:
    """Run ``twinguard ARGS`` (this interpreter); its stdout. SigningError on failure."""
    argv = _argv(*args)
    proc = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603 - our own CLI
                          timeout=CLI_TIMEOUT_S, check=False)
    return _check(proc, argv)


def trust_entry(stdout: str) -> str:
    """The ``[[trust]]`` entry printed by ``twinguard keys new`` (its comment line dropped)."""
    lines = [ln for ln in stdout.splitlines() if not ln.startswith("#")]
    if not lines or lines[0].strip() != "[[trust]]":
        raise SigningError(f"keys new printed no [[trust]] entry: {stdout!r}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Signer:
    """Key files by key id, and the trust store (TOML) naming the trusted ones."""

    device_id: str
    keys: dict[str, Path]
    trust_toml: str
    work: Path

    @classmethod
    def create(cls, keys_dir: Path, device_id: str) -> Signer:
        """Make every key of the module docstring under ``keys_dir`` (must not hold them)."""
        wanted = [(kid, role, keys_dir / "trusted") for kid, role in TRUSTED.items()]
        wanted.append((ATTACKER, "safety", keys_dir / "attacker"))  # a role; no trust entry
        procs = []
        for kid, role, out in wanted:
            argv = _argv("keys", "new", "--id", kid, "--role", role, "--out", str(out))
            procs.append((kid, argv, subprocess.Popen(  # noqa: S603 - our own CLI
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        entries: list[str] = []
        keys: dict[str, Path] = {}
        for (kid, argv, proc), (_k, _role, out) in zip(procs, wanted, strict=True):
            stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
            done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
            text = _check(done, argv)
            keys[kid] = out / f"{kid}.key"
            if kid in TRUSTED:
                entries.append(trust_entry(text))
        log.info("demo signing keys made in %s: %s", keys_dir, ", ".join(keys))
        work = keys_dir / "bundles"
        work.mkdir(parents=True, exist_ok=True)
        return cls(device_id, keys, "\n" + "\n".join(entries), work)

    def sign(self, text: str, version: int, signers: Sequence[str], name: str) -> Path:
        """A bundle of ``text`` (version ``version``) signed by ``signers`` in order via the
        CLI; the bundle file (``work/NAME.bundle``). SigningError if a command fails."""
        if not signers:
            raise ValueError("a bundle needs at least one signer")
        source = self.work / f"{name}.toml"
        source.write_text(text, encoding="utf-8")
        bundle = self.work / f"{name}.bundle"
        cli("config", "sign", "--key", str(self.keys[signers[0]]), "--version", str(version),
            "--device", self.device_id, "--expires-in", "3600", str(source), "-o", str(bundle))
        for kid in signers[1:]:
            cli("config", "cosign", "--key", str(self.keys[kid]), str(bundle), "-o", str(bundle))
        return bundle


def tampered(bundle: Path, config: str, out: Path) -> Path:
    """A copy of ``bundle`` with its configuration replaced by ``config`` and its signatures
    kept: every one of them is now over other bytes (what a man in the middle would send)."""
    original = decode(bundle.read_bytes())
    out.write_bytes(replace(original, config=config).encode())
    return out
