"""Which characters a twin protocol ``text`` may hold: one fixed table (PROTOCOL.md §3).

The rule does not depend on the Python or Unicode version the agent runs on: it is the
table below, not ``str.isprintable()`` or ``unicodedata`` (whose answers change when a
newer Unicode assigns a character). A code point is **refused** if it lies in one of
``REFUSED`` (inclusive ranges, with the class a message names); every other Unicode scalar
value is allowed, including code points no Unicode version has assigned yet.

The table is Unicode 14.0's general categories Cc, Cf, Zs (except U+0020 SPACE), Zl and
Zp, the surrogates (Cs), the private-use planes (Co) and the 66 noncharacters, frozen
here. Controls, surrogates, private use and noncharacters can never change (Unicode's
stability policy); a format or space character assigned after 14.0 is allowed until this
table (and the protocol version, §3.4) changes.
"""

from __future__ import annotations

import bisect

__all__ = ["REFUSED", "first_refused", "is_refused", "printable_only"]

# (first, last, class), sorted, not overlapping
REFUSED: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x001F, "Cc"),
    (0x007F, 0x009F, "Cc"),
    (0x00A0, 0x00A0, "Zs"),
    (0x00AD, 0x00AD, "Cf"),
    (0x0600, 0x0605, "Cf"),
    (0x061C, 0x061C, "Cf"),
    (0x06DD, 0x06DD, "Cf"),
    (0x070F, 0x070F, "Cf"),
    (0x0890, 0x0891, "Cf"),
    (0x08E2, 0x08E2, "Cf"),
    (0x1680, 0x1680, "Zs"),
    (0x180E, 0x180E, "Cf"),
    (0x2000, 0x200A, "Zs"),
    (0x200B, 0x200F, "Cf"),
    (0x2028, 0x2028, "Zl"),
    (0x2029, 0x2029, "Zp"),
    (0x202A, 0x202E, "Cf"),
    (0x202F, 0x202F, "Zs"),
    (0x205F, 0x205F, "Zs"),
    (0x2060, 0x2064, "Cf"),
    (0x2066, 0x206F, "Cf"),
    (0x3000, 0x3000, "Zs"),
    (0xD800, 0xDFFF, "Cs"),
    (0xE000, 0xF8FF, "Co"),
    (0xFDD0, 0xFDEF, "noncharacter"),
    (0xFEFF, 0xFEFF, "Cf"),
    (0xFFF9, 0xFFFB, "Cf"),
    (0xFFFE, 0xFFFF, "noncharacter"),
    (0x110BD, 0x110BD, "Cf"),
    (0x110CD, 0x110CD, "Cf"),
    (0x13430, 0x13438, "Cf"),
    (0x1BCA0, 0x1BCA3, "Cf"),
    (0x1D173, 0x1D17A, "Cf"),
    (0x1FFFE, 0x1FFFF, "noncharacter"),
    (0x2FFFE, 0x2FFFF, "noncharacter"),
    (0x3FFFE, 0x3FFFF, "noncharacter"),
    (0x4FFFE, 0x4FFFF, "noncharacter"),
    (0x5FFFE, 0x5FFFF, "noncharacter"),
    (0x6FFFE, 0x6FFFF, "noncharacter"),
    (0x7FFFE, 0x7FFFF, "noncharacter"),
    (0x8FFFE, 0x8FFFF, "noncharacter"),
    (0x9FFFE, 0x9FFFF, "noncharacter"),
    (0xAFFFE, 0xAFFFF, "noncharacter"),
    (0xBFFFE, 0xBFFFF, "noncharacter"),
    (0xCFFFE, 0xCFFFF, "noncharacter"),
    (0xDFFFE, 0xDFFFF, "noncharacter"),
    (0xE0001, 0xE0001, "Cf"),
    (0xE0020, 0xE007F, "Cf"),
    (0xEFFFE, 0xEFFFF, "noncharacter"),
    (0xF0000, 0xFFFFD, "Co"),
    (0xFFFFE, 0xFFFFF, "noncharacter"),
    (0x100000, 0x10FFFD, "Co"),
    (0x10FFFE, 0x10FFFF, "noncharacter"),
)
_STARTS = tuple(first for first, _, _ in REFUSED)


def _class_of(cp: int) -> str | None:
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and cp <= REFUSED[i][1]:
        return REFUSED[i][2]
    return None


def is_refused(ch: str) -> bool:
    """True if the one character ``ch`` may not appear in a ``text``."""
    return _class_of(ord(ch)) is not None


def first_refused(text: str) -> tuple[int, str, str] | None:
    """The first refused character of ``text`` as (index, ``"U+XXXX"``, class), or None."""
    for i, ch in enumerate(text):
        cls = _class_of(ord(ch))
        if cls is not None:
            return i, f"U+{ord(ch):04X}", cls
    return None


def printable_only(text: str) -> str:
    """``text`` without its refused characters (for text the agent itself sends)."""
    return "".join(ch for ch in text if _class_of(ord(ch)) is None)
