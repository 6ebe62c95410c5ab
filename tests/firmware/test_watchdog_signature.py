"""One ``arm()`` signature, and one core signature checked everywhere it is written.

``arm()`` is written once, in ``firmware_bridge.api.WatchdogAPI``; both public classes must
inherit it (and the rest of the public API) rather than write their own. The core's methods
are written three times, by necessity: the C code (its ``__text_signature__``), the stub
``_watchdog.pyi`` (parsed here with ``ast``, the source of truth) and the twin's ``PyCore``,
plus the abstract declarations in ``WatchdogAPI``; each must match the stub.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from firmware_bridge import WatchdogAPI, _watchdog, native, pywatchdog

STUB = Path(_watchdog.__file__).with_name("_watchdog.pyi")
PUBLIC = ("arm", "disarm", "close", "stats")


def stub_core() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    core = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Core")
    return {f.name: f for f in core.body
            if isinstance(f, ast.FunctionDef) and f.name != "__init__"}


def stub_params(f: ast.FunctionDef) -> list[tuple[str, str, str | None]]:
    """(name, kind, annotation) per parameter after ``self``, as inspect names the kinds."""
    a = f.args
    out = [(p.arg, "POSITIONAL_ONLY", p.annotation) for p in a.posonlyargs]
    out += [(p.arg, "POSITIONAL_OR_KEYWORD", p.annotation) for p in a.args]
    out += [(p.arg, "KEYWORD_ONLY", p.annotation) for p in a.kwonlyargs]
    return [(n, k, None if ann is None else ast.unparse(ann)) for n, k, ann in out[1:]]


def py_params(func: object, *, annotations: bool) -> list[tuple[str, str, str | None]]:
    sig = inspect.signature(func)  # type: ignore[arg-type]
    return [(p.name, p.kind.name,
             None if not annotations or p.annotation is inspect.Parameter.empty
             else str(p.annotation))
            for p in list(sig.parameters.values())[1:]]


def test_the_stub_lists_exactly_the_c_core_methods() -> None:
    c_names = {n for n, v in vars(_watchdog.Core).items()
               if not n.startswith("__") and (callable(v) or inspect.isdatadescriptor(v))}
    assert set(stub_core()) == c_names


@pytest.mark.parametrize("name", sorted(stub_core()))
def test_every_core_method_matches_the_stub(name: str) -> None:
    f = stub_core()[name]
    is_property = any(ast.unparse(d) == "property" for d in f.decorator_list)
    want = stub_params(f)
    for where, impl in (("C", _watchdog.Core), ("PyCore", pywatchdog.PyCore),
                        ("WatchdogAPI", WatchdogAPI)):
        member = inspect.getattr_static(impl, name)
        if is_property:
            assert inspect.isdatadescriptor(member) and not callable(member), where
            continue
        # the C signature comes from its docstring's text signature: names and kinds only
        typed = where != "C"
        got = py_params(member, annotations=typed)
        expected = want if typed else [(n, k, None) for n, k, _ in want]
        assert got == expected, where


@pytest.mark.parametrize("cls", [native.Watchdog, pywatchdog.Watchdog], ids=["native", "python"])
def test_arm_and_the_public_api_are_written_once(cls: type[WatchdogAPI]) -> None:
    for name in PUBLIC:
        assert getattr(cls, name) is getattr(WatchdogAPI, name), name
        for base in cls.__mro__:
            if base is not WatchdogAPI:
                assert name not in vars(base), f"{base.__name__} writes {name} again"
    assert inspect.signature(cls.arm) == inspect.signature(WatchdogAPI.arm)
    assert cls.native is (cls is native.Watchdog)
