"""The overview's chart: three lines of per-second rates as inline SVG, drawn on the server (no library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventctl.rates import WINDOW_SECONDS, RateSample

WIDTH, HEIGHT = 900, 220  # the SVG's coordinate space; it scales to its container
SERIES = ("accepted", "processed", "failed")


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    points: str  # "x,y x,y ..." for a polyline
    latest: float  # per second, in the last sample


@dataclass(frozen=True, slots=True)
class Chart:
    lines: list[Line]
    top: float  # the rate at the top of the chart
    seconds: int  # how much of the window has samples

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def height(self) -> int:
        return HEIGHT


def _nice_top(peak: float) -> float:
    """A round number at or above ``peak``: 1, 2, 5, 10, 20, 50, ..."""
    top = 1.0
    while top < peak:
        for step in (2.0, 2.5, 2.0):
            top *= step
            if top >= peak:
                break
    return top


def chart(samples: Sequence[RateSample]) -> Chart:
    """The last ``WINDOW_SECONDS`` of ``samples`` (oldest first), the newest at the right edge."""
    peak = max((max(s.accepted, s.processed, s.failed) for s in samples), default=0.0)
    top = _nice_top(peak)
    count = len(samples)
    lines = []
    for name in SERIES:
        points = []
        for index, sample in enumerate(samples):
            x = WIDTH - (count - 1 - index) * WIDTH / (WINDOW_SECONDS - 1)
            y = HEIGHT - getattr(sample, name) / top * HEIGHT
            points.append(f"{x:.1f},{y:.1f}")
        lines.append(Line(name, " ".join(points), getattr(samples[-1], name) if samples else 0.0))
    return Chart(lines, top, count)
