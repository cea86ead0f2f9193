"""Charts as server-rendered SVG: horizontal bars, a histogram with a threshold
line, and lines over a sequence.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>``, draws
with presentation attributes only (the pages' CSP allows no inline style) and
never relies on colour alone: bars carry their value as text, lines differ in
dash pattern and marker shape and are named in a legend, a threshold line is
labelled. A chart never stands alone: the page puts a table of the same numbers
beside it. Everything passed in is escaped; nothing here reads data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart", "bins", "histogram", "line_chart"]

BLUE, RED, ORANGE, GREEN, GREY, PURPLE = (
    "#1d70b8",
    "#d4351c",
    "#f47738",
    "#00703c",
    "#505a5f",
    "#4c2c92",
)
# series: colour, dash pattern, marker (circle / square / triangle / diamond)
SERIES = [
    (BLUE, "", "circle"),
    (ORANGE, "8 4", "square"),
    (GREEN, "2 3", "triangle"),
    (PURPLE, "10 3 2 3", "diamond"),
]
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


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10.0 * power


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    description: str | None = None,
    colour: str = BLUE,
) -> Markup:
    """Horizontal bars, one per ``(label, value)``, the value written at the end of
    each bar; negative values go left of a zero line."""
    desc = description or "; ".join(f"{label}: {_fmt(v)}{unit}" for label, v in rows)
    if not rows:
        return _svg(title, "No data", 40, ['<text x="0" y="24">No data</text>'])
    label_w = min(260.0, max(CHAR * len(label) for label, _ in rows) + 10)
    value_w = max(CHAR * len(_fmt(v) + unit) for _, v in rows) + 12
    low = min(0.0, *(v for _, v in rows))
    high = max(0.0, *(v for _, v in rows))
    span = (high - low) or 1.0
    plot = WIDTH - label_w - value_w - (value_w if low < 0 else 0)
    x0 = label_w + (value_w if low < 0 else 0) + plot * (-low / span)
    bar_h, gap = 22, 8
    body: list[str] = []
    for i, (label, value) in enumerate(rows):
        y = i * (bar_h + gap) + 4
        w = plot * abs(value) / span
        x = x0 if value >= 0 else x0 - w
        short = (
            label if len(label) * CHAR <= label_w - 10 else label[: int(label_w / CHAR) - 2] + "…"
        )
        body.append(
            f'<text x="{label_w - 8:.1f}" y="{y + 16}" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
            f'fill="{colour}"><title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>'
        )
        tx, anchor = (x + w + 6, "start") if value >= 0 else (x - 6, "end")
        body.append(
            f'<text x="{tx:.1f}" y="{y + 16}" text-anchor="{anchor}">'
            f"{_fmt(value)}{escape(unit)}</text>"
        )
    height = len(rows) * (bar_h + gap) + 8
    body.append(
        f'<line x1="{x0:.1f}" y1="0" x2="{x0:.1f}" y2="{height:.1f}" stroke="{GREY}" '
        'stroke-width="1"/>'
    )
    return _svg(title, desc, height, body)


def bins(values: Sequence[float], width: float) -> list[tuple[str, float]]:
    """Counts of ``values`` in bins ``[k*width, (k+1)*width)`` from 0 (or the
    lowest value's bin) to the highest, empty bins included: ``("40–49", 3)``."""
    if not values:
        return []
    lo = math.floor(min(values) / width)
    hi = math.floor(max(values) / width)
    counts = [0] * (hi - lo + 1)
    for v in values:
        counts[math.floor(v / width) - lo] += 1
    step_is_int = float(width).is_integer()
    out: list[tuple[str, float]] = []
    for k, n in enumerate(counts):
        start = (lo + k) * width
        end = start + width - (1 if step_is_int else 0)
        out.append((f"{_fmt(start)}–{_fmt(end)}" if step_is_int else f"{_fmt(start)}–", n))
    return out


def histogram(
    title: str,
    values: Sequence[float],
    *,
    bin_width: float,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    description: str | None = None,
) -> Markup:
    """Vertical bars of counts per bin (``bins``), with a labelled dashed line at
    ``threshold`` on the value axis."""
    counted = bins(values, bin_width)
    desc = description or (
        f"{len(values)} values; "
        + "; ".join(f"{label}: {int(n)}" for label, n in counted)
        + (f"; {threshold_label} at {_fmt(threshold)}" if threshold is not None else "")
    )
    if not counted:
        return _svg(title, "No data", 40, ['<text x="0" y="24">No data</text>'])
    left, right, top, bottom = 50.0, 10.0, 30.0, 50.0
    plot_w, plot_h = WIDTH - left - right, 220.0
    top_count = _nice_max(max(n for _, n in counted))
    lo = math.floor(min(values) / bin_width) * bin_width
    hi = lo + len(counted) * bin_width
    if threshold is not None:
        hi = max(hi, threshold + bin_width)
    per_unit = plot_w / (hi - lo)
    body: list[str] = []
    for tick in range(5):
        value = top_count * tick / 4
        y = top + plot_h - plot_h * tick / 4
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="#b1b4b6" '
            'stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 5:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    for k, (label, n) in enumerate(counted):
        x = left + k * bin_width * per_unit
        h, w = plot_h * n / top_count, bin_width * per_unit - 2
        body.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{w:.1f}" '
            f'height="{h:.1f}" fill="{BLUE}"><title>{escape(label)}: {int(n)}</title></rect>'
        )
    every = max(1, math.ceil(len(counted) * 50 / plot_w))
    for k in range(0, len(counted) + 1, every):
        x = left + k * bin_width * per_unit
        body.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
            f"{_fmt(lo + k * bin_width)}</text>"
        )
    if threshold is not None:
        x = left + (threshold - lo) * per_unit
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 10}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{RED}" '
            'stroke-width="3" stroke-dasharray="6 4"/>'
            f'<text x="{x + 6:.1f}" y="{top - 14}">{escape(threshold_label)} '
            f"({_fmt(threshold)})</text>"
        )
    body.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" y2="{top + plot_h}" '
        f'stroke="{GREY}" stroke-width="1"/>'
    )
    return _svg(title, desc, top + plot_h + bottom, body)


def _marker(shape: str, x: float, y: float, colour: str, tip: str) -> str:
    tip_el = f"<title>{escape(tip)}</title>"
    if shape == "square":
        return (
            f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}">'
            f"{tip_el}</rect>"
        )
    if shape == "triangle":
        pts = f"{x:.1f},{y - 6:.1f} {x + 6:.1f},{y + 5:.1f} {x - 6:.1f},{y + 5:.1f}"
        return f'<polygon points="{pts}" fill="{colour}">{tip_el}</polygon>'
    if shape == "diamond":
        pts = f"{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} {x - 7:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{colour}">{tip_el}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}">{tip_el}</circle>'


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[str, float]]],
    *,
    reference: float | None = None,
    reference_label: str = "baseline",
    description: str | None = None,
) -> Markup:
    """Lines over shared x labels (the first series' order; at most four series),
    each with its own dash pattern and marker, a legend, and an optional labelled
    horizontal reference line (a baseline or a threshold)."""
    named = list(series.items())[: len(SERIES)]
    xs: list[str] = []
    for _, points in named:
        xs += [x for x, _ in points if x not in xs]
    desc = description or "; ".join(
        f"{name}: " + ", ".join(f"{x} {_fmt(v)}" for x, v in points) for name, points in named
    ) + (f"; {reference_label} {_fmt(reference)}" if reference is not None else "")
    values = [v for _, points in named for _, v in points]
    if not values:
        return _svg(title, "No data", 40, ['<text x="0" y="24">No data</text>'])
    legend_h = 26.0 * len(named)
    left, right, top, bottom = 55.0, 20.0, 20.0 + legend_h, 50.0
    plot_w, plot_h = WIDTH - left - right, 220.0
    low = min(0.0, *values, *([reference] if reference is not None else []))
    high = _nice_max(max(*values, *([reference] if reference is not None else []), 0.0))
    span = (high - low) or 1.0

    def at(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * (i + 0.5) / len(xs))
        return x, top + plot_h - plot_h * (v - low) / span

    body: list[str] = []
    for k, (name, _) in enumerate(named):
        colour, dash, shape = SERIES[k]
        ly = 14.0 + 26 * k
        body.append(
            f'<line x1="10" y1="{ly}" x2="50" y2="{ly}" stroke="{colour}" stroke-width="3"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
            + _marker(shape, 30, ly, colour, name)
            + f'<text x="58" y="{ly + 5}">{escape(name)}</text>'
        )
    for tick in range(5):
        value = low + span * tick / 4
        y = top + plot_h - plot_h * tick / 4
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="#b1b4b6" '
            'stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 5:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    every = max(1, math.ceil(len(xs) * 70 / plot_w))
    for i, label in enumerate(xs):
        if i % every == 0:
            x, _ = at(i, low)
            body.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 20}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    if reference is not None:
        _, y = at(0, reference)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="{RED}" '
            'stroke-width="2" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - right}" y="{y - 6:.1f}" text-anchor="end">'
            f"{escape(reference_label)} ({_fmt(reference)})</text>"
        )
    for k, (name, points) in enumerate(named):
        colour, dash, shape = SERIES[k]
        coords = [at(xs.index(x), v) for x, v in points]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="3"'
                + (f' stroke-dasharray="{dash}"' if dash else "")
                + "/>"
            )
        for (x, y), (label, v) in zip(coords, points, strict=True):
            body.append(_marker(shape, x, y, colour, f"{name}, {label}: {_fmt(v)}"))
    return _svg(title, desc, top + plot_h + bottom, body)
