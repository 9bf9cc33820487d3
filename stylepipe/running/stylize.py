"""One device batch, start to finish: content targets, start image, precision, pyramid, optimiser
and colours, set up the same way for the file pipeline, the Python API and the Ray Data stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

import torch

from ..core.geometry import resize
from ..core.levels import Level, level_size
from ..core.loss_fns import Targets
from ..core.objective import Anchor, Objective, Precision, anchor_targets, content_targets
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
    targets_s: float = 0.0  # seconds of it spent on content targets (the report's `targets` stage)


def stylize_batch(ctx: WorkerContext, content: torch.Tensor | None, size: tuple[int, int],
                  style: Targets | Sequence[Targets], terms: Sequence[LossTerm] | None = None,
                  on_step: StepCallback | None = None, count: int = 1) -> Stylized:
    """Optimise one batch on the device: the set-up (targets, start, precision, levels, colours)
    that the file pipeline, the Python API and the Ray Data stage share, so that the same settings
    give the same pixels whichever way a picture comes in.

    `content` is (B, 3, H, W) at `size` (or None for a palette of `count` images); `style` the
    style's targets on the device, one per level of `ctx.settings.levels` (composition first), or
    one for every level; `terms` the run's unless a reconstruction step has its own. The
    composition is painted at the first level's size with the mode's own schedule; each later
    level starts from the last one's result, upsampled, with a fresh L-BFGS history.
    """
    settings = ctx.settings
    terms = ctx.terms if terms is None else terms
    levels = settings.levels or (Level(max(size), 1.0, None),)
    per_level = [style] * len(levels) if isinstance(style, Mapping) else list(style)
    if len(per_level) != len(levels):
        raise ValueError(f"{len(levels)} level(s) need as many style targets, got {len(per_level)}")
    sizes = [level_size(size, level.scale) if len(levels) > 1 else size for level in levels]
    count = len(content) if content is not None else count
    content = content.to(ctx.device) if content is not None else None
    total_steps = settings.optimize.steps + sum(level.steps or 0 for level in levels[1:])
    history = LossHistory(total_steps, {term.name: term.weight for term in ctx.terms})
    budget = budget_bytes(ctx.device, settings.max_memory_mb)
    memory = plan_memory(ctx.extractor, terms, size, count, settings.optimize, settings.tile, budget, ctx.precision)
    if memory.note:
        (log.info if memory.fits else log.warning)("%d picture(s) of %d×%d px: %s", count, size[1], size[0], memory.note)

    spent = [0.0]  # seconds in objective_at: content targets

    def objective_at(at: tuple[int, int], targets: Targets, holds: torch.Tensor | None = None) -> Objective:
        """The objective at size `at`; its content term holds the pictures to `holds` (already at
        `at`) when given, else to the photos resized to `at`."""
        start = time.perf_counter()
        tiling = (memory if at == size else
                  plan_memory(ctx.extractor, terms, at, count, settings.optimize, settings.tile, budget, ctx.precision)).tiling
        scaled = (holds if holds is not None else resize(content, at)) if content is not None else None
        content_side: Targets = {}
        if scaled is not None:
            content_side = (tiled_content_targets(ctx.extractor, terms, scaled, tiling) if tiling is not None
                            else content_targets(ctx.extractor, terms, scaled))
        spent[0] += time.perf_counter() - start
        return RecordingObjective(ctx.extractor, terms, content_side, targets, tiling=tiling, history=history)

    optimize_settings = replace(settings.optimize, precision=cast(Precision, ctx.precision),
                                lbfgs_history=memory.lbfgs_history or settings.optimize.lbfgs_history)
    done = 0

    def step(i: int, n: int, loss: float) -> None:
        history.on_step(done + i, total_steps, loss)
        if on_step is not None:
            on_step(done + i, total_steps, loss)

    init = _start(ctx, content, sizes[0], count)
    objective = objective_at(sizes[0], per_level[0])  # the composition's targets at its size, computed once
    if settings.pyramid.levels > 1:
        result = optimize_pyramid(init, lambda at: objective if at == sizes[0] else objective_at(at, per_level[0]),
                                  optimize_settings, settings.pyramid, step)
    else:
        result = optimize(init, objective, optimize_settings, step)
    done = result.steps
    composition = result.image.detach()  # what the levels above hold to: its look and its pixels
    held: Targets = {}  # the composition's own statistics, for the levels that hold its look
    if any(level.anchor > 0 for level in levels[1:]):
        held = anchor_targets(ctx.extractor, terms, composition)
    for level, at, targets in zip(levels[1:], sizes[1:], per_level[1:]):
        assert level.steps is not None  # only the composition takes the mode's steps
        upsampled = resize(result.image, at).detach()  # the level's start, and what "composition" holds it to
        objective = objective_at(at, targets, upsampled if level.content == "composition" else None)
        if level.anchor > 0 or level.anchor_pixels > 0:
            objective = replace(objective, anchor=Anchor(sizes[0], held, level.anchor, composition, level.anchor_pixels))
        result = optimize(upsampled, objective, replace(optimize_settings, steps=level.steps), step)
        done += result.steps
    colours = cast(ColorSpace | None, settings.preserve_colors) if content is not None else None
    final = postprocess(result.image, content, colours)
    return Stylized(final, objective.evaluate(final), done, list(result.diverged), history.curves(), memory.note, spent[0])


def _start(ctx: WorkerContext, content: torch.Tensor | None, size: tuple[int, int], count: int) -> torch.Tensor:
    """The first level's starting pixels: the photo, seeded noise or a given picture, at `size`."""
    settings = ctx.settings
    content = resize(content, size) if content is not None else None
    init_picture = None
    if settings.init == "image" and settings.init_path is not None:
        init_picture = resize(load_image(settings.init_path, settings.max_input_pixels).tensor, size).unsqueeze(0)
    return torch.cat([
        initial_image(settings.init, content[i : i + 1] if content is not None else None, (1, 3, *size), settings.seed,
                      init_picture, settings.noise)
        for i in range(count)
    ]).to(ctx.device)
