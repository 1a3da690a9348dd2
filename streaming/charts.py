"""Inline SVG charts for the load test report: histogram, lines (one or two value axes),
scatter, bars. Pure strings.

No script and no external URL: the report is one file that opens anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 60, 48, 12, 34
COLOURS = ("#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#e67700")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


class Frame:
    """Axes for data in [x0, x1] x [y0, y1], mapped onto the plot area."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return H - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str) -> list[str]:
        out = [
            f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="axis"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" class="axis"/>',
        ]
        for value in _ticks(self.x0, self.x1):
            out.append(f'<text x="{self.x(value):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{_fmt(value)}</text>')
        for value in _ticks(self.y0, self.y1):
            y = self.y(value)
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" class="grid"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
        out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 4}" text-anchor="middle">{escape(xlabel)}</text>')
        out.append(
            f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{escape(ylabel)}</text>'
        )
        return out


def _svg(title: str, body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def empty(title: str, why: str = "no data") -> str:
    return _svg(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">{escape(why)}</text>'])


def histogram(title: str, values: Sequence[float], xlabel: str, bins: int = 20) -> str:
    if not values:
        return empty(title)
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    frame = Frame(low, low + width * bins, 0, max(counts))
    body = frame.axes(xlabel, "viewers" if "startup" in title.lower() else "samples")
    for i, n in enumerate(counts):
        x0, x1 = frame.x(low + i * width), frame.x(low + (i + 1) * width)
        body.append(
            f'<rect x="{x0:.1f}" y="{frame.y(n):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{frame.y(0) - frame.y(n):.1f}" fill="{COLOURS[0]}"/>'
        )
    return _svg(title, body)


def lines(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    xlabel: str,
    ylabel: str,
    y_max: float | None = None,
) -> str:
    points = [p for s in series.values() for p in s]
    if not points:
        return empty(title)
    top = max(p[1] for p in points) if y_max is None else y_max
    frame = Frame(min(p[0] for p in points), max(p[0] for p in points), 0, top * 1.05 or 1)
    body = frame.axes(xlabel, ylabel)
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in values)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body.append(
            f'<text x="{W - RIGHT - 4}" y="{TOP + 12 + 14 * i}" text-anchor="end" fill="{colour}">{escape(name)}</text>'
        )
    return _svg(title, body)


def two_axes(
    title: str,
    left: tuple[str, Sequence[tuple[float, float]]],
    right: tuple[str, Sequence[tuple[float, float]]],
    xlabel: str,
) -> str:
    """Two lines of different units over one time axis: `left`'s values on the left axis,
    `right`'s on the right one, each axis labelled with its line's name in its colour."""
    (lname, lvalues), (rname, rvalues) = left, right
    points = [*lvalues, *rvalues]
    if not points:
        return empty(title)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    frame = Frame(x0, x1, 0, max((p[1] for p in lvalues), default=0) * 1.05 or 1)
    other = Frame(x0, x1, 0, max((p[1] for p in rvalues), default=0) * 1.05 or 1)
    body = frame.axes(xlabel, lname)
    body[-1] = body[-1].replace("<text ", f'<text fill="{COLOURS[0]}" ', 1)
    body.append(f'<line x1="{W - RIGHT}" y1="{TOP}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="axis"/>')
    for value in _ticks(other.y0, other.y1):
        body.append(f'<text x="{W - RIGHT + 4}" y="{other.y(value) + 4:.1f}" fill="{COLOURS[1]}">{_fmt(value)}</text>')
    middle = (TOP + H - BOTTOM) / 2
    body.append(
        f'<text x="{W - 4}" y="{middle}" text-anchor="middle" fill="{COLOURS[1]}" '
        f'transform="rotate(90 {W - 4} {middle})">{escape(rname)}</text>'
    )
    for colour, chosen, values in ((COLOURS[0], frame, lvalues), (COLOURS[1], other, rvalues)):
        path = " ".join(f"{chosen.x(x):.1f},{chosen.y(y):.1f}" for x, y in values)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    return _svg(title, body)


def scatter(title: str, points: Sequence[tuple[float, float]], xlabel: str, ylabel: str, diagonal: bool = False) -> str:
    if not points:
        return empty(title)
    x1 = max(p[0] for p in points) * 1.1
    y1 = max(max(p[1] for p in points), x1 if diagonal else 0) * 1.05
    frame = Frame(0, x1, 0, y1)
    body = frame.axes(xlabel, ylabel)
    if diagonal:  # above the line: a fetch slower than real time
        body.append(
            f'<line x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" x2="{frame.x(x1):.1f}" '
            f'y2="{frame.y(x1):.1f}" stroke="{COLOURS[1]}" stroke-dasharray="4 3"/>'
        )
    for x, y in points:
        body.append(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2" fill="{COLOURS[0]}" fill-opacity="0.5"/>'
        )
    return _svg(title, body)


def bars(title: str, values: Mapping[str, float], ylabel: str) -> str:
    if not values:
        return empty(title, "none")
    frame = Frame(0, len(values), 0, max(values.values()))
    body = frame.axes("", ylabel)[:2]
    for value in _ticks(0, frame.y1):
        body.append(f'<text x="{LEFT - 6}" y="{frame.y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    slot = (W - LEFT - RIGHT) / len(values)
    for i, (name, value) in enumerate(values.items()):
        x = LEFT + i * slot + slot * 0.15
        body.append(
            f'<rect x="{x:.1f}" y="{frame.y(value):.1f}" width="{slot * 0.7:.1f}" '
            f'height="{frame.y(0) - frame.y(value):.1f}" fill="{COLOURS[i % len(COLOURS)]}"/>'
        )
        body.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{escape(name[:28])}</text>'
        )
    return _svg(title, body)
