"""Layering: every module of every ``agent`` package imports only what its layer allows.

The modules are found on disk (every ``*.py`` under ``agent/``, none listed by hand) and
their imports read with ``ast`` (no import side effects): top-level, inside functions and
under ``TYPE_CHECKING`` alike, relative imports resolved. :data:`LAYERS` is the one table of
what each package may import; it says in code what each package's docstring says in words.
The sans-IO layers (``model``, ``core``, ``config``, ``protocol``) may not import I/O, a
clock or threads (:data:`IO`), directly or through anything they pull in; nothing in
``agent`` imports ``sim`` except the demo command, and nothing outside ``agent.cli``
imports it. The module graph has no import cycle. A subprocess then imports every sans-IO
module for real and checks that no I/O library came along.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"

# I/O, clocks, threads, processes, hardware: never under a sans-IO layer
IO = frozenset({
    "time", "asyncio", "socket", "ssl", "sqlite3", "threading", "select", "selectors",
    "subprocess", "signal", "os", "shutil", "tempfile", "concurrent", "multiprocessing",
    "termios", "fcntl", "pymodbus", "serial", "gpiozero", "firmware_bridge", "sim", "rich",
})  # fmt: skip


@dataclass(frozen=True)
class Layer:
    """What the modules of one ``agent`` package may import.

    ``agent``: the ``agent`` packages (``""`` is ``agent`` itself, for its version);
    ``libraries``: the third-party top-level modules (``None``: any); ``pure``: a sans-IO
    layer, which imports nothing in :data:`IO` (standard library or not).
    """

    agent: frozenset[str]
    libraries: frozenset[str] | None
    pure: bool


def _layer(agent: str, libraries: str | None, *, pure: bool) -> Layer:
    names = None if libraries is None else frozenset(filter(None, libraries.split(",")))
    return Layer(frozenset(agent.split(",")), names, pure)


LAYERS: dict[str, Layer] = {
    "model": _layer("model", "", pure=True),
    "core": _layer("model,core", "", pure=True),
    "config": _layer("model,config", "msgpack,cryptography", pure=True),
    "protocol": _layer("model,core,protocol", "msgpack,cryptography", pure=True),
    "io": _layer(",model,core,protocol,io", None, pure=False),
    "runtime": _layer(",model,core,protocol,config,io,runtime", None, pure=False),
    "cli": _layer(",model,core,protocol,config,io,runtime,cli", None, pure=False),
}
# the exceptions, each with its reason: module -> what else it may import
EXCEPTIONS: dict[str, frozenset[str]] = {
    # the demo entry is the simulated plant's own command
    "agent.cli.demo": frozenset({"sim"}),
    # twinguard drill --sim: the fault campaign on the simulated plant (sim.drill)
    "agent.cli.drillsim": frozenset({"sim"}),
}
# third-party libraries only the modules of one package may import (the optional extras):
# package -> libraries. Protobuf (``google``) comes with ``twinguard[fleet]``; an agent on
# the default transport never imports the package (test_the_default_agent_never_loads_...).
PACKAGE_LIBRARIES: dict[str, frozenset[str]] = {
    "agent.protocol.sparkplug": frozenset({"google"}),
    # the fleet link (aiomqtt over paho-mqtt), imported by the runtime only for mqtt
    "agent.io.fleet": frozenset({"aiomqtt", "paho"}),
}
# directly in agent/: only these (and the layer packages)
TOP_LEVEL = {"__init__.py", "__main__.py", "py.typed", "README.md"}
STDLIB = frozenset(sys.stdlib_module_names)


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_name(p): p for p in sorted(AGENT.rglob("*.py"))}


def _is_module(name: str) -> bool:
    return name in MODULES


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(module: str, source: str | None = None, *, typing_too: bool = True) -> set[str]:
    """Absolute names ``module`` imports (from its file, or ``source``): modules, and for
    ``from X import y`` the module ``X.y`` where that is one. ``typing_too=False`` leaves
    out what is imported only under ``if TYPE_CHECKING:``."""
    path = MODULES.get(module, AGENT / "_probe.py")
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    skip = set() if typing_too else _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
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
            names.update(f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}"))
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and module in MODULES
                                           and MODULES[module].name == "__init__.py") else None


def problems(module: str, source: str | None = None) -> list[str]:
    """Every import of ``module`` that its layer does not allow, in words."""
    layer_name = layer_of(module)
    found = []
    for name in sorted(imports(module, source)):
        top = name.split(".")[0]
        if layer_name is None:  # agent/__init__.py, agent/__main__.py
            if top == "agent" and name.startswith("agent.") and not name.startswith("agent.cli"):
                found.append(f"{module} imports {name} (the entry point only runs the CLI)")
            continue
        layer = LAYERS[layer_name]
        allowed_extra = EXCEPTIONS.get(module, frozenset()).union(
            *(libs for pkg, libs in PACKAGE_LIBRARIES.items()
              if module == pkg or module.startswith(pkg + ".")))
        if top in allowed_extra:
            continue
        if top == "agent":
            package = name.split(".")[1] if "." in name else ""
            if package not in layer.agent:
                found.append(f"{module} imports {name} (agent.{layer_name} may not import "
                             f"{'agent' if not package else 'agent.' + package})")
        elif top == "sim":
            found.append(f"{module} imports {name} (only the demo and drill --sim commands "
                         "import sim)")
        elif layer.pure and top in IO:
            found.append(f"{module} imports {name} (I/O, clock or threads in a sans-IO layer)")
        elif top not in STDLIB and layer.libraries is not None and top not in layer.libraries:
            found.append(f"{module} imports {name} (agent.{layer_name} may not import {top})")
    return found


def test_the_modules_were_found() -> None:
    """The walk sees every layer, so an empty glob cannot pass the tests below."""
    assert {layer_of(m) for m in MODULES} - {None} == set(LAYERS)
    assert len(MODULES) > 60


def test_nothing_but_the_entry_points_lives_directly_in_agent() -> None:
    loose = {p.name for p in AGENT.iterdir() if p.is_file()} - TOP_LEVEL
    packages = {p.name for p in AGENT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert loose == set()
    assert packages == set(LAYERS)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_layer_says_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((AGENT / package / "__init__.py").read_text()))
    assert doc is not None and "Lives here" in doc and "May import" in doc


def test_every_subpackage_says_what_lives_there() -> None:
    missing = [m for m, p in MODULES.items()
               if p.name == "__init__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_what_its_layer_allows(module: str) -> None:
    assert problems(module) == []


def _closure(start: str) -> set[str]:
    """Every agent module importing ``start`` runs, ``start`` included (with the packages
    the names live in: importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        for name in imports(module, typing_too=False):
            parts = name.split(".")
            todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return seen


PURE = sorted(m for m in MODULES if (layer := layer_of(m)) is not None and LAYERS[layer].pure)


@pytest.mark.parametrize("module", PURE)
def test_nothing_a_sans_io_module_pulls_in_does_io(module: str) -> None:
    found = [f"{m} imports {name}"
             for m in sorted(_closure(module))
             for name in sorted(imports(m, typing_too=False))
             if name.split(".")[0] in IO - EXCEPTIONS.get(m, frozenset())]
    assert found == []


def _cycles() -> list[list[str]]:
    """The import cycles among agent modules (what runs at import time), as paths."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        edges = set()
        for name in imports(module, typing_too=False):
            parts = name.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {e for e in edges if e in MODULES and e != module
                         and not module.startswith(e + ".")}  # a module runs its package
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def test_there_is_no_import_cycle() -> None:
    assert _cycles() == []


def test_nothing_outside_the_cli_imports_it() -> None:
    found = [f"{m} imports {name}" for m in MODULES
             if layer_of(m) not in ("cli", None)
             for name in imports(m) if name == "agent.cli" or name.startswith("agent.cli.")]
    assert found == []


# --- the checker itself: a forbidden line in a real module is seen ----------------------------

@pytest.mark.parametrize(
    ("module", "line", "flagged"),
    [
        ("agent.core.controller", "import time", "time"),
        ("agent.core.controller", "from agent.io.plant import PlantIO", "agent.io.plant"),
        ("agent.core.controller", "from ..io import guard", "agent.io"),
        ("agent.core.controller", "import socket as s", "socket"),
        ("agent.core.voting", "from threading import Lock", "threading"),
        ("agent.core.heartbeat", "import msgpack", "msgpack"),
        ("agent.model.status", "from agent.core.safety import State", "agent.core.safety"),
        ("agent.model.errors", "import sqlite3", "sqlite3"),
        ("agent.config.roles", "import time", "time"),
        ("agent.config.push", "from agent.io.configstore import ConfigStore",
         "agent.io.configstore"),
        ("agent.protocol.twin.frames", "import asyncio", "asyncio"),
        ("agent.protocol.modbus.codec", "from pymodbus.pdu import ModbusPDU", "pymodbus.pdu"),
        ("agent.protocol.twin.frames", "from google.protobuf import message", "google.protobuf"),
        ("agent.protocol.sparkplug.codec", "import asyncio", "asyncio"),
        ("agent.protocol.sparkplug.topics", "import aiomqtt", "aiomqtt"),
        ("agent.io.plant", "from agent.runtime.loop import Runtime", "agent.runtime.loop"),
        ("agent.io.audit", "import sim.stack", "sim.stack"),
        ("agent.runtime.loop", "from agent.cli import common", "agent.cli"),
    ],
)
def test_the_checker_sees_a_forbidden_import(module: str, line: str, flagged: str) -> None:
    source = MODULES[module].read_text()
    assert problems(module, source) == []
    indented = "def _late() -> None:\n    " + line + "\n"  # a local import is seen too
    for extra in (line + "\n", indented, "if TYPE_CHECKING:\n    " + line + "\n"):
        found = problems(module, source + "\n" + extra)
        assert any(f"imports {flagged} " in p for p in found), (extra, found)


@pytest.mark.parametrize(
    "line", ["from ..model import readings", "from agent.model.profile import Group",
             "import math", "from . import trips"],
)
def test_the_checker_lets_an_allowed_import_pass(line: str) -> None:
    source = MODULES["agent.core.safety"].read_text() + "\n" + line + "\n"
    assert problems("agent.core.safety", source) == []


def test_the_cycle_finder_sees_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    real = imports

    def with_back_edge(module: str, source: str | None = None, *,
                       typing_too: bool = True) -> set[str]:
        names = real(module, source, typing_too=typing_too)
        return names | {"agent.core.controller"} if module == "agent.core.recommend" else names

    monkeypatch.setattr(sys.modules[__name__], "imports", with_back_edge)
    assert ["agent.core.controller", "agent.core.recommend", "agent.core.controller"] in _cycles()


def _loaded_by(modules: list[str]) -> list[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imported ``modules``."""
    code = (
        "import json, sys\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    names: list[str] = json.loads(out.stdout)
    return names


def test_importing_the_sans_io_layers_loads_no_io_library() -> None:
    names = _loaded_by([m for m in PURE if m not in EXCEPTIONS])
    loaded = {m.split(".")[0] for m in names}
    io_libs = {"pymodbus", "gpiozero", "serial", "socket", "ssl", "sqlite3", "asyncio", "sim",
               "firmware_bridge", "rich"}
    assert loaded & io_libs == set()
    assert not any(m.startswith(("agent.io", "agent.runtime", "agent.cli")) for m in names)


FLEET_LIBRARIES = ("google", "aiomqtt", "paho")


def test_the_default_agent_never_loads_the_fleet_extra() -> None:
    """Every agent module outside the fleet packages imports, for real, without loading
    protobuf or the MQTT client: the core's footprint is unchanged without the extra."""
    fleet = tuple(PACKAGE_LIBRARIES)
    modules = [m for m in MODULES if m != "agent.__main__"  # runs the CLI
               and not any(m == pkg or m.startswith(pkg + ".") for pkg in fleet)]
    assert "agent.cli.main" in modules and "agent.protocol.sparkplug.codec" not in modules
    names = _loaded_by(modules)
    assert {m.split(".")[0] for m in names} & set(FLEET_LIBRARIES) == set()
    assert not any(m.startswith(fleet) for m in names)


def test_the_fleet_package_does_load_protobuf() -> None:
    """The check above can fail: importing the Sparkplug codec does load protobuf."""
    assert "google.protobuf" in _loaded_by(["agent.protocol.sparkplug.codec"])
