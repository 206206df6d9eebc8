"""Plots drawn as static SVG in Python, for the offline report: no plotting library inlined.

A scatter plot (with mean ± standard error per x value when x repeats, e.g. over seeds) and
parallel coordinates. Every label is escaped; the output is plain SVG markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

PALETTE = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # viridis stops
TOOLTIPS = 400  # up to this many points each gets a tooltip
MAX_LINES = 2_000  # parallel coordinates draw at most this many runs (evenly picked)
STATUS = {"completed": "#15803d", "failed": "#b91c1c", "died": "#7e22ce", "running": "#0369a1"}


def _numbers(values: Sequence[Any]) -> list[float | None]:
    return [
        float(v)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        else None
        for v in values
    ]


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering lo..hi."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _colour(t: float) -> str:
    """A viridis-like colour for t in 0..1."""
    t = min(1.0, max(0.0, t)) * (len(PALETTE) - 1)
    i = min(int(t), len(PALETTE) - 2)
    a, b, f = PALETTE[i], PALETTE[i + 1], t - i
    mix = [round(int(a[k : k + 2], 16) * (1 - f) + int(b[k : k + 2], 16) * f) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def scatter(
    xs: Sequence[Any],
    ys: Sequence[Any],
    labels: Sequence[str],
    xlabel: str,
    ylabel: str,
    statuses: Sequence[str] = (),
    width: int = 440,
    height: int = 300,
) -> str:
    """Points of y against x, coloured by status; mean ± standard error where x repeats."""
    points = [
        (x, y, labels[i], statuses[i] if i < len(statuses) else "")
        for i, (x, y) in enumerate(zip(_numbers(xs), _numbers(ys), strict=False))
        if x is not None and y is not None
    ]
    if not points:
        return ""
    left, right, top, bottom = 62, 16, 14, 44
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    x_pad, y_pad = (x_hi - x_lo) * 0.05 or 1.0, (y_hi - y_lo) * 0.08 or 1.0
    x_lo, x_hi, y_lo, y_hi = x_lo - x_pad, x_hi + x_pad, y_lo - y_pad, y_hi + y_pad

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    out = [
        f'<svg class="splot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(ylabel)} against {escape(xlabel)}">',
        _axes(width, height, left, right, top, bottom, px, py, (x_lo, x_hi), (y_lo, y_hi)),
    ]
    if len(points) <= TOOLTIPS:
        for x, y, label, status in points:
            fill = STATUS.get(status, "#2563eb")
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{fill}" '
                f'fill-opacity=".7"><title>{escape(label)} {escape(xlabel)}={_fmt(x)} '
                f"{escape(ylabel)}={_fmt(y)}</title></circle>"
            )
    else:  # many points: one path of dots per colour, a few bytes each, no tooltips
        by_colour: dict[str, list[str]] = {}
        for x, y, _, status in points:
            dot = f"M{px(x):.0f} {py(y):.0f}h0"
            by_colour.setdefault(STATUS.get(status, "#2563eb"), []).append(dot)
        for colour, dots in sorted(by_colour.items()):
            out.append(
                f'<path d="{"".join(dots)}" stroke="{colour}" stroke-opacity=".6" '
                'stroke-width="6" stroke-linecap="round"/>'
            )
    out += _mean_stderr(points, px, py)
    out.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 8}" text-anchor="middle" '
        f'class="axis-title">{escape(xlabel)}</text>'
        f'<text transform="translate(14 {(top + height - bottom) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle" class="axis-title">{escape(ylabel)}</text></svg>'
    )
    return "".join(out)


def _mean_stderr(points: list[tuple[float, float, str, str]], px: Any, py: Any) -> list[str]:
    """A line through the mean of y at each x, with ± standard-error bars (x repeated)."""
    groups: dict[float, list[float]] = {}
    for x, y, _, _ in points:
        groups.setdefault(x, []).append(y)
    if len(groups) < 2 or all(len(v) < 2 for v in groups.values()):
        return []
    out, path = [], []
    for x in sorted(groups):
        ys = groups[x]
        mean = sum(ys) / len(ys)
        sd = math.sqrt(sum((y - mean) ** 2 for y in ys) / (len(ys) - 1)) if len(ys) > 1 else 0.0
        err = sd / math.sqrt(len(ys))
        path.append(f"{px(x):.1f},{py(mean):.1f}")
        out.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(mean - err):.1f}" '
            f'y2="{py(mean + err):.1f}" stroke="#0f172a" stroke-width="1.5"/>'
        )
    out.insert(
        0,
        f'<polyline class="mean" points="{" ".join(path)}" fill="none" stroke="#0f172a" '
        'stroke-width="1.5"><title>mean ± standard error</title></polyline>',
    )
    return out


def _axes(
    width: int,
    height: int,
    left: int,
    right: int,
    top: int,
    bottom: int,
    px: Any,
    py: Any,
    xr: tuple[float, float],
    yr: tuple[float, float],
) -> str:
    parts = [
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="#fff" stroke="#cbd5e1"/>'
    ]
    for t in ticks(*xr):
        if xr[0] <= t <= xr[1]:
            x = px(t)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" '
                f'stroke="#f1f5f9"/><text x="{x:.1f}" y="{height - bottom + 14}" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
    for t in ticks(*yr):
        if yr[0] <= t <= yr[1]:
            y = py(t)
            parts.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="#f1f5f9"/><text x="{left - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{_fmt(t)}</text>'
            )
    return "".join(parts)


def parcoords(
    columns: dict[str, Sequence[Any]], colour_by: str, width: int = 1100, height: int = 340
) -> str:
    """Parallel coordinates: one axis per column, one line per run coloured by `colour_by`."""
    names = list(columns)
    if len(names) < 2:
        return ""
    raw = {n: _numbers(columns[n]) for n in names}
    rows = len(next(iter(raw.values())))
    keep = [i for i in range(rows) if all(raw[n][i] is not None for n in names)]
    if not keep:
        return ""
    if len(keep) > MAX_LINES:
        keep = [keep[round(k * len(keep) / MAX_LINES)] for k in range(MAX_LINES)]
    data: dict[str, list[float]] = {n: [float(raw[n][i] or 0.0) for i in keep] for n in names}
    left, right, top, bottom = 50, 50, 34, 24
    spans: dict[str, tuple[float, float]] = {}
    for n in names:
        lo, hi = min(data[n]), max(data[n])
        spans[n] = (lo, hi if hi != lo else lo + 1)
    gap = (width - left - right) / (len(names) - 1)

    def at(n: str, v: float) -> float:
        lo, hi = spans[n]
        return height - bottom - (v - lo) / (hi - lo) * (height - top - bottom)

    c_lo, c_hi = spans.get(colour_by, (0.0, 1.0))
    out = [
        f'<svg class="pplot" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="parallel coordinates of {len(keep)} runs">'
    ]
    for i in range(len(keep)):
        pts = " ".join(f"{left + k * gap:.0f},{at(n, data[n][i]):.0f}" for k, n in enumerate(names))
        c = data[colour_by][i] if colour_by in data else None
        colour = _colour(((c - c_lo) / (c_hi - c_lo)) if c is not None else 0.5)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-opacity=".55"/>')
    for k, n in enumerate(names):
        x = left + k * gap
        lo, hi = spans[n]
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#334155"/>'
            f'<text x="{x:.1f}" y="{top - 12}" text-anchor="middle" class="axis-title">'
            f"{escape(n.split('.', 1)[-1])}</text>"
            f'<text x="{x + 4:.1f}" y="{top + 4}" class="tick">{_fmt(hi)}</text>'
            f'<text x="{x + 4:.1f}" y="{height - bottom}" class="tick">{_fmt(lo)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
