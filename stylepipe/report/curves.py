"""Loss histories turned into SVG polyline coordinates for the report page's small charts.

Each curve gets its own logarithmic vertical scale: the terms differ by orders of magnitude,
and what a reviewer reads from a thumbnail-sized chart is the shape (still falling, flat,
jumped), while the exact first and last values go into the chart's tooltip. A spike (an L-BFGS
step can evaluate at 1e12 times the loss) would flatten the rest of the line, so the scale tops
out at ten times the curve's median and higher values are drawn at the top edge.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

CURVE_NAMES = ("content", "style", "total")  # drawing order: the dashed total on top
WIDTH, HEIGHT, PAD = 120, 36, 2
SPIKE_DECADES = 1.0  # the scale's top: this many decades above the median


@dataclass(frozen=True)
class Curve:
    """One term's line: `points` is an SVG polyline `points` attribute (numbers only)."""

    name: str
    points: str
    first: float
    last: float


def loss_curves(history: Mapping[str, Sequence[float | None]] | None, names: Sequence[str] = CURVE_NAMES) -> list[Curve]:
    """The curves of `names` that have at least two positive finite values."""
    if not history or not history.get("step"):
        return []
    steps = [float(s) for s in cast(Sequence[float], history["step"])]  # step numbers are never None
    x0, x1 = steps[0], max(steps[-1], steps[0] + 1)
    curves = []
    for name in names:
        pairs = [(s, v) for s, v in zip(steps, history.get(name) or []) if isinstance(v, (int, float)) and v > 0 and math.isfinite(v)]
        if len(pairs) < 2:
            continue
        logs = [math.log10(v) for _, v in pairs]
        low, high = min(logs), min(max(logs), statistics.median(logs) + SPIKE_DECADES)
        span = high - low or 1.0
        coords = []
        for (step, _), value in zip(pairs, logs):
            x = PAD + (step - x0) / (x1 - x0) * (WIDTH - 2 * PAD)
            y = PAD + (high - min(value, high)) / span * (HEIGHT - 2 * PAD)
            coords.append(f"{x:.1f},{y:.1f}")
        curves.append(Curve(name, " ".join(coords), pairs[0][1], pairs[-1][1]))
    return curves
