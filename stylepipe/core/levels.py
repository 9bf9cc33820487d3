"""Levels of a picture: the composition painted small, then refined up to the output size.

Why: VGG19 sees about 200 px around a position at relu5_1. At 256 px that covers a painting's big
strokes; at 2048 px only the texture inside one stroke, so a single-scale optimisation at print
size lays a fine texture over the photo instead of painting it. So the composition is painted at
`COMPOSITION_SIDE / stroke` px (the size the defaults were chosen at), and each later level, `factor`
times larger, starts from the last one's result upsampled and only refines it. Every level takes its
style targets from the style picture at that level's scale (`Level.scale` × the output's style size),
so one stroke covers the same fraction of the picture at 512 px as at 4096 px.

Pure arithmetic on sizes: no tensors, no files, no configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: What a refine level's content term holds it to: the composition as painted so far (the last
#: level's result at this level's size), or the photo at this level's size.
RefineContent = Literal["composition", "photo"]

#: Long side (px) the composition is painted at for `stroke` 1: the size at which the defaults
#: were chosen by the sweep (docs/quality.md) and where the look beats the peer's.
COMPOSITION_SIDE = 256
#: An output at most this much larger than the composition is painted in one level: a refine
#: level that small costs more than it changes.
SINGLE_LEVEL_SLACK = 1.25


@dataclass(frozen=True)
class Refine:
    """How the levels above the composition grow and how many steps each gets."""

    factor: float = 2.0
    steps: tuple[int, ...] = (50, 25, 12, 6)  # first refine level, second, …; the last repeats
    #: "composition": a refine level keeps the painting it starts from and repaints its strokes at
    #: its own scale; "photo" pulls it back toward the photo's detail, which the composition never
    #: had (at 1024 px *The Scream* drifted back to the cat photo's colours: docs/sizes.md).
    content: RefineContent = "composition"
    #: Weight (× the style terms' own) of a refine level's hold on the composition's look: the
    #: picture scaled back to the composition's size keeps the composition's Gram statistics.
    #: Without it each level's style term, taken at its own scale, drifts the look that a viewer
    #: sees at a glance (at 1024 px *The Starry Night* scored 1.27× its 256 px twin's style
    #: distance; held, 0.94–1.11×: docs/sizes.md). 0: no hold.
    anchor: float = 2.0
    #: Weight (× the style terms' own) of a refine level's hold on the composition's pixels: the
    #: picture scaled back to the composition's size stays the composition (mean squared
    #: difference), so a level adds only what vanishes when the picture is scaled down. Without it
    #: the level's style term, taken from the painting at its own scale, lays the painting's bright
    #: flecks over the picture: at 1024 px *The Starry Night* had 7.1 isolated dots per 10k px
    #: scaled down against its 256 px twin's 0.2; held ×15, 0.2 (docs/sizes.md). 0: no hold.
    anchor_pixels: float = 15.0

    def steps_at(self, index: int) -> int:
        """Steps of the `index`-th refine level (0: the first above the composition)."""
        return self.steps[min(index, len(self.steps) - 1)]


@dataclass(frozen=True)
class Level:
    """One level: its long side, its size relative to the output, its steps (None: the
    composition, whose steps and coarse-to-fine schedule are the mode's own), what its content
    term holds it to (the composition always holds to the photo), and how strongly it holds to the
    composition's look and pixels (`Refine.anchor`, `Refine.anchor_pixels`; 0 for the composition itself)."""

    side: int
    scale: float
    steps: int | None
    content: RefineContent = "photo"
    anchor: float = 0.0
    anchor_pixels: float = 0.0

    @property
    def is_composition(self) -> bool:
        return self.steps is None


def composition_side(stroke: float) -> int:
    """Long side of the composition: larger strokes (stroke > 1) mean a smaller composition."""
    if stroke <= 0:
        raise ValueError("stroke must be above 0")
    return max(32, round(COMPOSITION_SIDE / stroke))


def plan_levels(output_side: int, stroke: float = 1.0, refine: Refine | None = Refine()) -> list[Level]:
    """Levels from the composition up to `output_side` (the output's nominal long side).

    One level when the output is not much larger than the composition, or when `refine` is None
    (single-scale, as before 1.3); otherwise the composition, then sides × `factor` while they stay
    clearly below the output, then the output itself."""
    base = composition_side(stroke)
    if refine is None or output_side <= base * SINGLE_LEVEL_SLACK:
        return [Level(output_side, 1.0, None)]
    if refine.factor <= 1:
        raise ValueError("refine factor must be above 1")
    sides = [base]
    while sides[-1] * refine.factor * SINGLE_LEVEL_SLACK <= output_side:
        sides.append(round(base * refine.factor ** len(sides)))
    sides.append(output_side)
    levels = [Level(base, base / output_side, None)]
    levels += [Level(side, side / output_side, refine.steps_at(i), refine.content, refine.anchor,
                     refine.anchor_pixels)
               for i, side in enumerate(sides[1:])]
    return levels


def level_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """A picture's (height, width) at a level `scale` of its output size."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def scaled_budget(max_side: int | None, max_pixels: int | None, scale: float) -> tuple[int | None, int | None]:
    """A size budget (longest side, pixel count) at `scale` of itself: a level's, or its style's."""
    side = max(1, round(max_side * scale)) if max_side else None
    pixels = max(1, round(max_pixels * scale * scale)) if max_pixels else None
    return side, pixels


def nominal_side(max_side: int | None, max_pixels: int | None) -> int:
    """The output's long side for planning levels: `max_side`, else that of a square of `max_pixels`."""
    if max_side:
        return max_side
    if max_pixels:
        return math.isqrt(max_pixels)
    raise ValueError("a size needs max_side or max_pixels")
