"""Charts as server-rendered SVG: horizontal bars.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>``, drawn
with presentation attributes only (the pages' CSP allows no inline style), and
never relies on colour alone: every bar carries its value as text. A chart
never stands alone: the page puts a table of the same numbers beside it.
Everything passed in is escaped; nothing here reads data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

BLUE = "#1d70b8"
WIDTH = 640
CHAR = 7.5  # px per character of 14px text, for laying out labels


def _ids(title: str, desc: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{title}\0{desc}".encode()).hexdigest()[:10]
    return f"chart-{digest}-title", f"chart-{digest}-desc"


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _svg(title: str, desc: str, height: float, body: list[str]) -> Markup:
    tid, did = _ids(title, desc)
    return Markup(
        f'<svg class="app-chart" role="img" aria-labelledby="{tid} {did}" '
        f'viewBox="0 0 {WIDTH} {math.ceil(height)}" width="{WIDTH}" '
        f'height="{math.ceil(height)}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    description: str | None = None,
    colour: str = BLUE,
) -> Markup:
    """Horizontal bars, one per (label, value), each labelled with its value."""
    desc = description or (
        "; ".join(f"{label}: {_fmt(value)}{(' ' + unit) if unit else ''}" for label, value in rows)
        or "No data."
    )
    label_width = min(260.0, max((len(label) for label, _ in rows), default=4) * CHAR + 10)
    top = max((value for _, value in rows), default=0) or 1
    bar_room = WIDTH - label_width - 70
    row_height = 28
    body: list[str] = []
    for n, (label, value) in enumerate(rows):
        y = 10 + n * row_height
        width = max(0.0, value) / top * bar_room
        body.append(
            f'<text x="{label_width - 8:.1f}" y="{y + 17}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width:.1f}" y="{y + 4}" width="{width:.1f}" height="18" '
            f'fill="{escape(colour)}"/>'
            f'<text x="{label_width + width + 6:.1f}" y="{y + 17}">{escape(_fmt(value))}</text>'
        )
    if not rows:
        body.append('<text x="10" y="27">No data</text>')
    return _svg(title, desc, 20 + max(1, len(rows)) * row_height, body)
