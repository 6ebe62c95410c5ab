"""A tiny SVG writer: elements appended in drawing order, serialised as one document.

Attribute names are Python keywords with ``_`` for ``-`` (``stroke_width`` ->
``stroke-width``; a trailing ``_`` is dropped: ``class_`` -> ``class``). Numbers are written
with two decimals at most; text and attribute values are XML-escaped, so any string is safe
to pass. Nothing here knows about the demo.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

Attr = str | float | int | None


def _fmt(v: float | int | str) -> str:
    if isinstance(v, float):
        s = f"{v:.2f}".rstrip("0").rstrip(".")
        return "0" if s in ("", "-0") else s
    return str(v)


def _attrs(attrs: dict[str, Attr]) -> str:
    parts = []
    for k, v in attrs.items():
        if v is None:
            continue
        name = k.rstrip("_").replace("_", "-")
        parts.append(f" {name}={quoteattr(_fmt(v))}")
    return "".join(parts)


class Svg:
    """An SVG document of ``width`` x ``height`` user units (pixels)."""

    def __init__(self, width: float, height: float, background: str = "white") -> None:
        self.width = width
        self.height = height
        self._parts: list[str] = []
        self.rect(0, 0, width, height, fill=background)

    def raw(self, element: str) -> None:
        """Append a prepared element (the caller escapes)."""
        self._parts.append(element)

    def open_group(self, **attrs: Attr) -> None:
        self._parts.append(f"<g{_attrs(attrs)}>")

    def close_group(self) -> None:
        self._parts.append("</g>")

    def title(self, text: str) -> None:
        """A tooltip for the enclosing group."""
        self._parts.append(f"<title>{escape(text)}</title>")

    def rect(self, x: float, y: float, w: float, h: float, **attrs: Attr) -> None:
        geometry: dict[str, Attr] = {"x": x, "y": y, "width": max(w, 0.0), "height": h}
        self._parts.append(f"<rect{_attrs({**geometry, **attrs})}/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, **attrs: Attr) -> None:
        self._parts.append(f"<line{_attrs({'x1': x1, 'y1': y1, 'x2': x2, 'y2': y2, **attrs})}/>")

    def polyline(self, points: Iterable[tuple[float, float]], **attrs: Attr) -> None:
        pts = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        if pts:
            self._parts.append(f"<polyline{_attrs({'points': pts, 'fill': 'none', **attrs})}/>")

    def polygon(self, points: Iterable[tuple[float, float]], **attrs: Attr) -> None:
        pts = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        self._parts.append(f"<polygon{_attrs({'points': pts, **attrs})}/>")

    def circle(self, cx: float, cy: float, r: float, **attrs: Attr) -> None:
        self._parts.append(f"<circle{_attrs({'cx': cx, 'cy': cy, 'r': r, **attrs})}/>")

    def text(self, x: float, y: float, text: str, **attrs: Attr) -> None:
        self._parts.append(f"<text{_attrs({'x': x, 'y': y, **attrs})}>{escape(text)}</text>")

    def to_string(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_fmt(self.width)}" '
                f'height="{_fmt(self.height)}" viewBox="0 0 {_fmt(self.width)} '
                f'{_fmt(self.height)}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
                'font-size="12">')
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + \
            "\n".join(self._parts) + "\n</svg>\n"
