"""Typed, problem-collecting access to one TOML table (the building block of the parser).

``Fields`` wraps one table (``board``, ``signals[2]``...) found at a key path. Every getter
checks type and range and, on failure, records a ``Problem`` at ``path.key`` and returns a
placeholder of the right type (0, "", the first enum member): the caller keeps reading so
that every problem is found, and discards the section if any problem was recorded
(``len(problems)`` before/after). ``ok(key)`` tells whether a key was valid (or absent),
so cross-checks between keys only run on values that are real.

TOML has no null, so an absent key is the only "no value". Booleans are never numbers. Every
number is finite and within ±``NUMBER_MAX`` (1e15), so no arithmetic on profile values can
overflow.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from agent.model.errors import Problem
from agent.model.profile import Voting

__all__ = ["NUMBER_MAX", "Fields", "Problems", "describe", "is_identifier", "suggest"]

E = TypeVar("E", bound=enum.Enum)

NUMBER_MAX = 1e15
"""The largest magnitude any number in a profile or configuration may have: beyond it a value
is no engineering quantity, loses integer precision (2^53 is about 9e15), and arithmetic on
it (scaling, rates) could overflow."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_VOTING = re.compile(r"([1-9][0-9]?)oo([1-9][0-9]?)")


def is_identifier(name: str) -> bool:
    """Letters, digits and '_', not starting with a digit, at most 64 characters."""
    return _IDENTIFIER.fullmatch(name) is not None


def describe(value: object) -> str:
    """A short human description of a TOML value for messages: ``a string ('x')``."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value:g})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    import difflib  # noqa: PLC0415 - only for an error message, never on the running path

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Problems:
    """The problems found in one file, in the order found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Problem] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(Problem(self.file, path or "(top level)", reason))

    def __len__(self) -> int:
        return len(self.items)


class Fields:
    """One table at ``path``; unknown keys (not in ``allowed``) are reported on creation."""

    def __init__(self, out: Problems, path: str, data: object, allowed: Sequence[str]) -> None:
        self.out = out
        self.path = path
        self.bad: set[str] = set()
        self.data: Mapping[str, Any]
        if isinstance(data, Mapping):
            self.data = data
        else:
            out.add(path, f"expected a table, got {describe(data)}")
            self.data = {}
        for key in self.data:
            if key not in allowed:
                self.fail(str(key), "unknown key" + suggest(str(key), allowed))

    # --- bookkeeping ---------------------------------------------------------------------

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, reason: str) -> None:
        """Record a problem at ``path.key`` and mark the key invalid."""
        self.bad.add(key)
        self.out.add(self.at(key), reason)

    def ok(self, *keys: str) -> bool:
        """True if none of ``keys`` was found invalid (absent optional keys are fine)."""
        return self.bad.isdisjoint(keys)

    def has(self, key: str) -> bool:
        return key in self.data

    def forbid(self, key: str, reason: str) -> None:
        """The key must not be present here (it would be silently meaningless)."""
        if key in self.data and key not in self.bad:
            self.fail(key, reason)

    def _get(self, key: str, required: bool) -> object:
        if key in self.data:
            return self.data[key]
        if required:
            self.fail(key, "missing required key")
        return None

    # --- scalars -------------------------------------------------------------------------

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {describe(value)}")
            return default
        return value

    def text(self, key: str, default: str | None = None, *, allow_empty: bool = False) -> str:
        """A string; required unless ``default`` is given."""
        value = self._get(key, default is None)
        if value is None:
            return default or ""
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {describe(value)}")
            return ""
        if not allow_empty and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def opt_path(self, key: str) -> str | None:
        """An optional absolute file path (device or sysfs file)."""
        if key not in self.data:
            return None
        value = self.text(key)
        if self.ok(key) and not value.startswith("/"):
            self.fail(key, f"must be an absolute path, got {value!r}")
        return value

    def integer(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        """An integer in ``lo..hi``; required unless ``default`` is given."""
        value = self._get(key, default is None)
        if value is None:
            return default if default is not None else lo
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {describe(value)}")
            return lo
        if not lo <= value <= hi:
            self.fail(key, f"must be between {lo} and {hi}, got {value}")
            return lo
        return value

    def opt_integer(self, key: str, lo: int, hi: int) -> int | None:
        return self.integer(key, lo, hi) if key in self.data else None

    def one_of_int(self, key: str, choices: Sequence[int], default: int) -> int:
        value = self.integer(key, min(choices), max(choices), default)
        if self.ok(key) and value not in choices:
            self.fail(key, f"must be one of {', '.join(map(str, choices))}, got {value}")
        return value

    def number(self, key: str, default: float | None = None, *, gt: float | None = None,
               ge: float | None = None, allow_bool: bool = False) -> float:
        """A finite number (an integer is fine); required unless ``default`` is given.

        ``gt``/``ge`` bound it from below. ``allow_bool`` accepts true/false as 1/0 (for the
        safe value of a coil).
        """
        value = self._get(key, default is None)
        if value is None:
            return default if default is not None else 0.0
        if isinstance(value, bool) and allow_bool:
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {describe(value)}")
            return 0.0
        number = float(value)
        if not math.isfinite(number):
            self.fail(key, f"must be a finite number, got {number}")
        elif abs(number) > NUMBER_MAX:
            self.fail(key, f"{number:g} is out of range: numbers here must lie within "
                           f"±{NUMBER_MAX:g}")
        elif gt is not None and not number > gt:
            self.fail(key, f"must be greater than {gt:g}, got {number:g}")
        elif ge is not None and not number >= ge:
            self.fail(key, f"must be at least {ge:g}, got {number:g}")
        return number

    def opt_number(self, key: str, *, gt: float | None = None,
                   ge: float | None = None) -> float | None:
        return self.number(key, gt=gt, ge=ge) if key in self.data else None

    def enum(self, key: str, cls: type[E], default: E | None = None) -> E:
        """One of the values of ``cls``; required unless ``default`` is given."""
        members = list(cls)
        value = self._get(key, default is None)
        if value is None:
            return default if default is not None else members[0]
        names = [str(m.value) for m in members]
        if not isinstance(value, str) or value not in names:
            shown = describe(value)
            hint = suggest(value, names) if isinstance(value, str) else ""
            self.fail(key, f"expected one of {', '.join(map(repr, names))}, got {shown}{hint}")
            return default if default is not None else members[0]
        return cls(value)

    # --- composites ----------------------------------------------------------------------

    def span(self, key: str, default: tuple[float, float] | None = None) -> tuple[float, float]:
        """``[low, high]`` with low < high; required unless ``default`` is given."""
        value = self._get(key, default is None)
        if value is None:
            return default if default is not None else (0.0, 0.0)
        if (not isinstance(value, list) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)):
            self.fail(key, f"expected [low, high] (two numbers), got {describe(value)}")
            return (0.0, 0.0)
        low, high = float(value[0]), float(value[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            self.fail(key, "low and high must be finite numbers")
        elif max(abs(low), abs(high)) > NUMBER_MAX:
            self.fail(key, f"[{low:g}, {high:g}] is out of range: numbers here must lie "
                           f"within ±{NUMBER_MAX:g}")
        elif not low < high:
            self.fail(key, f"low ({low:g}) must be less than high ({high:g})")
        return (low, high)

    def names(self, key: str) -> tuple[str, ...]:
        """A required, non-empty array of non-empty strings."""
        value = self._get(key, True)
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty array of names, got {describe(value)}")
            return ()
        bad = [i for i, v in enumerate(value) if not isinstance(v, str) or not v]
        if bad:
            self.fail(key, f"entry {bad[0]} is not a name: {describe(value[bad[0]])}")
            return ()
        return tuple(value)

    def voting(self, key: str) -> Voting:
        """A required ``"MooN"`` string with 1 <= M <= N (e.g. ``"2oo3"``)."""
        text = self.text(key)
        if not self.ok(key):
            return Voting(1, 1)
        match = _VOTING.fullmatch(text)
        if match is None:
            self.fail(key, f"expected 'MooN' such as '2oo3', got {text!r}")
            return Voting(1, 1)
        m, n = int(match[1]), int(match[2])
        if m > n:
            self.fail(key, f"{text}: M ({m}) must not exceed N ({n})")
            return Voting(1, 1)
        return Voting(m, n)
