"""Optimisation defaults that depend on the mode, chosen by the published sweep (docs/quality.md).

A transfer starts from the photo and only has to paint over it: 50 single-scale L-BFGS steps
reach the peer's look at half its steps. A palette or a reconstruction starts from noise and has
to grow structure at every scale: a coarse-to-fine schedule (3 levels, each twice the size of the
last, steps split 4:2:1 so most of them run where a step is cheap) from low-amplitude noise gives
the painting's large strokes instead of coloured noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.levels import Refine
from ..core.optimize import Pyramid


@dataclass(frozen=True)
class ModeDefaults:
    """What `optimize.steps` and `optimize.pyramid` mean when the pipeline leaves them out."""

    steps: int
    pyramid: Pyramid


TRANSFER = ModeDefaults(steps=50, pyramid=Pyramid(levels=1))
FROM_NOISE = ModeDefaults(steps=350, pyramid=Pyramid(levels=3, factor=2.0))

#: Amplitude of a noise start around mid-grey (1: uniform over [0, 1]). Low-amplitude noise
#: leaves the optimiser room to place the painting's own contrasts (docs/quality.md).
NOISE_AMPLITUDE = 0.3

#: Steps of the levels above the composition (docs/sizes.md): the first, twice the composition's
#: side, repaints the strokes at its scale (fewer steps leave the composition's pixel texture
#: magnified as a woven grid); each later one, 4× the pixels, only refines, with half the steps.
REFINE_STEPS = Refine().steps
#: Hold of the levels above the composition on its look (docs/sizes.md, "The look held").
REFINE_ANCHOR = Refine().anchor
#: Hold of the levels above the composition on its pixels (docs/sizes.md, "The composition's pixels held").
REFINE_ANCHOR_PIXELS = Refine().anchor_pixels

#: Share of a style file's resolution the levels above the composition take as style (docs/sizes.md,
#: "At 100 %"): *The Starry Night*'s 512 px file has 28.8 isolated dots per 10k px at its own size,
#: 0.1 resampled through 3/4 of it; a 512 px output's level that took every pixel laid 6.2 dots per
#: 10k px over the picture at 100 %, 0.1 through 3/4, the same picture scaled down.
STYLE_DETAIL = 0.75


def defaults_for(mode: str) -> ModeDefaults:
    """The defaults of a mode: `transfer` starts from the photo, the others from noise."""
    return TRANSFER if mode == "transfer" else FROM_NOISE
