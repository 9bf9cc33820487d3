"""One device batch, start to finish: content targets, start image, precision, pyramid, optimiser
and colours, set up the same way for the file pipeline, the Python API and the Ray Data stage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import torch

from ..core.geometry import resize
from ..core.loss_fns import Targets
from ..core.objective import Objective, Precision, content_targets
from ..core.optimize import (
    StepCallback,
    initial_image,
    optimize,
    optimize_pyramid,
)
from ..core.postprocess import ColorSpace, postprocess
from ..core.tiling import content_targets as tiled_content_targets
from ..extend.terms import LossTerm
from ..io.images import load_image
from ..report.history import LossHistory, RecordingObjective
from .budget import budget_bytes, plan_memory
from .context import WorkerContext

log = logging.getLogger("stylepipe")



@dataclass
class Stylized:
    """One device batch, optimised and postprocessed: what every caller gets from `stylize_batch`."""

    images: torch.Tensor  # (B, 3, H, W) in [0, 1], on the device
    losses: dict[str, list[float]]  # per term and "total", one value per image
    steps: int  # loss evaluations made
    diverged: list[bool]  # per image: a non-finite loss stopped it (the best image seen is kept)
    curves: list[dict[str, list[float | None]]]  # per image: the downsampled loss curve
    note: str | None = None  # how it was made to fit in memory (tiles, a shorter L-BFGS history)


def stylize_batch(ctx: WorkerContext, content: torch.Tensor | None, size: tuple[int, int], style: Targets,
                  terms: Sequence[LossTerm] | None = None, on_step: StepCallback | None = None,
                  count: int = 1) -> Stylized:
    """Optimise one batch on the device: the set-up (targets, start, precision, pyramid, colours)
    that the file pipeline, the Python API and the Ray Data stage share, so that the same settings
    give the same pixels whichever way a picture comes in.

    `content` is (B, 3, H, W) at `size` (or None for a palette of `count` images), `style` the
    style's targets on the device, `terms` the run's unless a reconstruction step has its own.
    """
    settings = ctx.settings
    terms = ctx.terms if terms is None else terms
    height, width = size
    count = len(content) if content is not None else count
    content = content.to(ctx.device) if content is not None else None
    history = LossHistory(settings.optimize.steps, {term.name: term.weight for term in ctx.terms})
    budget = budget_bytes(ctx.device, settings.max_memory_mb)
    memory = plan_memory(ctx.extractor, terms, (height, width), count, settings.optimize, settings.tile, budget)
    if memory.note:
        (log.info if memory.fits else log.warning)("%d picture(s) of %d×%d px: %s", count, width, height, memory.note)

    def objective_at(size: tuple[int, int]) -> Objective:
        tiling = (memory if size == (height, width) else
                  plan_memory(ctx.extractor, terms, size, count, settings.optimize, settings.tile, budget)).tiling
        scaled = resize(content, size) if content is not None else None
        targets: Targets = {}
        if scaled is not None:
            targets = (tiled_content_targets(ctx.extractor, terms, scaled, tiling) if tiling is not None
                       else content_targets(ctx.extractor, terms, scaled))
        return RecordingObjective(ctx.extractor, terms, targets, style, tiling=tiling, history=history)

    init_picture = None
    if settings.init == "image" and settings.init_path is not None:
        init_picture = resize(load_image(settings.init_path, settings.max_input_pixels).tensor, (height, width)).unsqueeze(0)
    init = torch.cat([
        initial_image(settings.init, content[i : i + 1] if content is not None else None, (1, 3, height, width), settings.seed, init_picture,
                      settings.noise)
        for i in range(count)
    ]).to(ctx.device)
    optimize_settings = replace(settings.optimize, precision=cast(Precision, ctx.precision),
                                lbfgs_history=memory.lbfgs_history or settings.optimize.lbfgs_history)

    def step(i: int, n: int, loss: float) -> None:
        history.on_step(i, n, loss)
        if on_step is not None:
            on_step(i, n, loss)

    full_size = objective_at((height, width))  # content targets at full size, computed once
    if settings.pyramid.levels > 1:
        result = optimize_pyramid(init, lambda size: full_size if size == (height, width) else objective_at(size),
                                  optimize_settings, settings.pyramid, step)
    else:
        result = optimize(init, full_size, optimize_settings, step)
    colours = cast(ColorSpace | None, settings.preserve_colors) if content is not None else None
    final = postprocess(result.image, content, colours)
    return Stylized(final, full_size.evaluate(final), result.steps, list(result.diverged), history.curves(), memory.note)
