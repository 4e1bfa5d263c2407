"""Tiny SVG chart primitives: scales, ticks, and escaped elements. No JavaScript, no external resources."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def fnum(x: float) -> str:
    """Coordinates with two decimals, no trailing zeros."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * power:
            return float(m * power)
    return float(10 * power)


def linear_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round ticks from ``lo`` up to the first one at or above ``hi``: the last tick is the axis end, so
    nothing drawn up to ``hi`` falls outside the plot."""
    step = nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    last = max(first + 1, math.ceil(hi / step - 1e-9))
    return [round(k * step, 10) for k in range(first, last + 1)]


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(max(v, 10**self.lo))
        t = (v - self.lo) / (self.hi - self.lo) if self.hi != self.lo else 0.5
        return self.a + t * (self.b - self.a)


class Svg:
    def __init__(self, id: str, width: int, height: int, title: str) -> None:
        self.id = id
        self.width = width
        self.height = height
        self.title = title
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def line(self, x1: float, y1: float, x2: float, y2: float, cls: str = "", **style: object) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in style.items())
        c = f' class="{cls}"' if cls else ""
        self.add(f'<line x1="{fnum(x1)}" y1="{fnum(y1)}" x2="{fnum(x2)}" y2="{fnum(y2)}"{c}{extra}/>')

    def rect(
        self, x: float, y: float, w: float, h: float, cls: str = "", title: str | None = None, **style: object
    ) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in style.items())
        c = f' class="{cls}"' if cls else ""
        inner = f"<title>{escape(title)}</title>" if title else ""
        self.add(
            f'<rect x="{fnum(x)}" y="{fnum(y)}" width="{fnum(max(0.0, w))}" height="{fnum(max(0.0, h))}"{c}{extra}>'
            f"{inner}</rect>"
        )

    def circle(self, cx: float, cy: float, r: float, cls: str = "", title: str | None = None, **style: object) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in style.items())
        c = f' class="{cls}"' if cls else ""
        inner = f"<title>{escape(title)}</title>" if title else ""
        self.add(f'<circle cx="{fnum(cx)}" cy="{fnum(cy)}" r="{fnum(r)}"{c}{extra}>{inner}</circle>')

    def text(self, x: float, y: float, content: str, cls: str = "", anchor: str = "start", **style: object) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in style.items())
        c = f' class="{cls}"' if cls else ""
        self.add(f'<text x="{fnum(x)}" y="{fnum(y)}" text-anchor="{anchor}"{c}{extra}>{escape(content)}</text>')

    def polyline(self, points: Sequence[tuple[float, float]], cls: str = "", **style: object) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in style.items())
        c = f' class="{cls}"' if cls else ""
        pts = " ".join(f"{fnum(x)},{fnum(y)}" for x, y in points)
        self.add(f'<polyline points="{pts}" fill="none"{c}{extra}/>')

    def render(self) -> str:
        tid = f"{self.id}-title"
        return (
            f'<svg class="chart" id="{attr(self.id)}" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" '
            f'role="img" aria-labelledby="{attr(tid)}"><title id="{attr(tid)}">{escape(self.title)}</title>'
            + "".join(self.parts)
            + "</svg>"
        )


def spread(wanted: Sequence[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions as close to ``wanted`` as possible, at least ``gap`` apart, inside [lo, hi] (label placement:
    labels of nearby points must not overlap). Returns positions in the order of ``wanted``."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [0.0] * len(wanted)
    prev = -math.inf
    for i in order:
        placed[i] = max(wanted[i], prev + gap, lo)
        prev = placed[i]
    # pushed past the bottom edge: shift the run back up
    overflow = prev - hi
    if overflow > 0:
        nxt = math.inf
        for i in reversed(order):
            placed[i] = min(placed[i], nxt - gap, hi)
            nxt = placed[i]
    return placed
