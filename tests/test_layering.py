"""Layering: the sans-IO cores import no I/O, no clock, no thread, no adapter.

Their imports are read with ``ast`` (no import side effects), following every ``agent.*``
module they pull in, package ``__init__`` files included. Each must be on the allow-list;
anything on the deny-list gets a message that names it. A subprocess then imports the cores
for real and checks that no I/O library came along.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
CORES = ("agent.core.heartbeat", "agent.core.voting", "agent.core.trips", "agent.core.safety",
         "agent.core.outputs")

# anywhere in what a core pulls in: I/O, clocks, threads, adapters
FORBIDDEN = {
    "pymodbus", "gpiozero", "serial", "socket", "ssl", "sqlite3", "threading", "asyncio",
    "time", "select", "selectors", "subprocess", "signal", "msgpack", "firmware_bridge", "sim",
}  # fmt: skip
# what a core itself may import: pure standard library ...
ALLOWED_STDLIB = {
    "__future__", "abc", "bisect", "collections", "dataclasses", "enum", "functools",
    "itertools", "logging", "math", "operator", "statistics", "typing",
}  # fmt: skip
# ... and agent modules of pure data or other cores, never an adapter
ALLOWED_AGENT = {
    "agent", "agent.model", "agent.model.errors", "agent.model.readings", "agent.model.profile",
    "agent.model.mode", "agent.model.messages", "agent.core", *CORES,
}  # fmt: skip
# agent packages a core may reach indirectly (through a package __init__): profile parsing
# is a pure core of its own (DESIGN.md), its loader only reads files when called
REACHABLE_AGENT = ()


def _file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(module: str, source: str | None = None) -> set[str]:
    """Absolute names imported by ``module`` (its file, or ``source`` if given), including
    the packages they live in."""
    path = _file(module)
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names.add(mod)
            for alias in node.names:  # `from agent import heartbeat` imports a module
                if mod.startswith("agent") and _file(f"{mod}.{alias.name}").exists():
                    names.add(f"{mod}.{alias.name}")
    closed = set(names)
    for name in names:  # importing a.b.c runs a/__init__ and a/b/__init__ too
        parts = name.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return closed


def _closure(start: str) -> dict[str, set[str]]:
    """Every agent module reachable from ``start``, with its own imports."""
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = _imports(module)
        todo.extend(m for m in seen[module] if m.split(".")[0] == "agent")
    return seen


def _direct_problems(core: str, imports: set[str]) -> list[str]:
    problems = []
    for name in sorted(imports):
        top = name.split(".")[0]
        if top == "agent":
            if name not in ALLOWED_AGENT:
                problems.append(f"{core} imports {name} (not a pure agent module)")
        elif top not in ALLOWED_STDLIB:
            problems.append(f"{core} imports {name} (not on the allow-list)")
    return problems


@pytest.mark.parametrize("core", CORES)
def test_core_imports_only_pure_modules(core: str) -> None:
    assert _direct_problems(core, _imports(core)) == []


@pytest.mark.parametrize("core", CORES)
def test_nothing_a_core_pulls_in_does_io(core: str) -> None:
    problems = []
    for module, imports in sorted(_closure(core).items()):
        for name in sorted(imports):
            if name.split(".")[0] in FORBIDDEN or name in FORBIDDEN:
                problems.append(f"{module} imports {name} (forbidden under a sans-IO core)")
            elif (
                name.startswith("agent.")
                and name not in ALLOWED_AGENT
                and not name.startswith(REACHABLE_AGENT)
            ):
                problems.append(f"{module} imports {name} (an adapter under a sans-IO core)")
    assert problems == []


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("import time", "time"),
        ("import socket as s", "socket"),
        ("from threading import Lock", "threading"),
        ("from pymodbus.client import ModbusTcpClient", "pymodbus.client"),
        ("from agent.modbus import frames", "agent.modbus"),
        ("from ..model import readings", None),
        ("from ..model.profile import Group", None),
        ("import math", None),
    ],
)
def test_the_checker_sees_every_import_form(line: str, flagged: str | None) -> None:
    source = f"from __future__ import annotations\n{line}\n"
    problems = _direct_problems("agent.core.voting", _imports("agent.core.voting", source))
    if flagged is None:
        assert problems == []
    else:
        assert any(f"imports {flagged} " in p for p in problems), problems


def test_importing_the_cores_loads_no_io_library() -> None:
    code = (
        "import json, sys\n"
        f"for m in {list(CORES)!r}: __import__(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(json.loads(out.stdout))
    io_libs = {"pymodbus", "gpiozero", "serial", "socket", "ssl", "sqlite3", "asyncio"}
    assert loaded & io_libs == set()
    assert not any(m.startswith(("agent.modbus", "sim", "firmware_bridge")) for m in loaded)
