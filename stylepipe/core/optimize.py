"""The optimisation loop: pixels of a batch of images move to lower the weighted sum of terms.

Works on tensors alone (no files, no config): an Objective (`core.objective`) holds the network,
the terms and their targets; `optimize` runs L-BFGS (the paper's choice, the default) or Adam from an initial
batch, and `optimize_pyramid` runs it coarse-to-fine.

A batch of N images is N independent problems solved side by side: one batched forward and
backward pass per step, but each image has its own L-BFGS history, step and stopping test (an
L-BFGS over the concatenated batch would couple them through a shared line search), its own
NaN guard and its own best-so-far copy. So a batch gives the same result as N single runs, within
float tolerance. The L-BFGS follows torch.optim.LBFGS without line search, step for step, except
that every step is projected onto the valid pictures (pixels in [0, 1]). It is vectorised over the
batch (`lbfgs.BatchLBFGS`): per-image masks instead of per-image branches, the history as (B, m, N)
tensors, and one host synchronisation per step whatever the batch size — on a GPU, a Python loop
over images and history entries would set the speed, not the network.

Why projection: an unconstrained iterate drifts outside [0, 1] where the network happily reads
"brighter than white"; clamping only the result then leaves isolated over- and under-shot pixels
(speckles), and the best iterate would be picked on a picture that is never saved. Projecting
each step keeps every evaluated image a valid picture, so the loss tracked is the loss of what is
written. L-BFGS learns its curvature from the step actually taken (after the projection), which
keeps the (s, y) pairs consistent; pixels pinned at a bound simply stop moving.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from .errors import OptimizationError
from .geometry import resize
from .lbfgs import BatchLBFGS, flat_pixels
from .network import is_out_of_memory
from .objective import Objective, Precision

OptimizerName = Literal["lbfgs", "adam"]
StepCallback = Callable[[int, int, float], None]
DEFAULT_LR: dict[str, float] = {"lbfgs": 1.0, "adam": 0.02}
log = logging.getLogger("stylepipe.optimize")


@dataclass(frozen=True)
class OptimizeSettings:
    optimizer: OptimizerName = "lbfgs"
    steps: int = 100
    lr: float | None = None
    lbfgs_history: int = 50
    precision: Precision = "fp32"


@dataclass
class OptimizeResult:
    image: torch.Tensor  # (B, 3, H, W), clamped to [0, 1]: each image's best iterate
    steps: int  # loss evaluations made
    history: list[float]  # batch-summed total loss after each evaluation (finite images only)
    diverged: list[bool]  # per image: a non-finite loss stopped it early
    losses: list[float] = field(default_factory=list)  # per image: best total loss seen


class _Tracker:
    """Counts evaluations and keeps, per image, the best iterate and whether it diverged.

    The bookkeeping stays on the device (`record`); the host learns the losses in `publish`, one
    transfer per step, so a batch costs as many host synchronisations as a single image.
    """

    def __init__(self, image: torch.Tensor, steps: int, on_step: StepCallback | None) -> None:
        batch = image.shape[0]
        self.steps = steps
        self.on_step = on_step
        self.evaluations = 0
        self.history: list[float] = []
        self.best = image.detach().clone()
        self.best_loss = torch.full((batch,), float("inf"), device=image.device)
        self.diverged = torch.zeros(batch, dtype=torch.bool, device=image.device)
        self.diverged_now: list[bool] = [False] * batch  # the host's copy, as of the last `publish`
        self._losses: torch.Tensor | None = None

    def record(self, image: torch.Tensor, losses: torch.Tensor) -> None:
        """Device-side only: the NaN guard and each image's best iterate so far."""
        losses = losses.detach().float()
        self.evaluations += 1
        finite = torch.isfinite(losses)
        self.diverged |= ~finite
        better = finite & (losses < self.best_loss) & ~self.diverged
        self.best = torch.where(better.view(-1, 1, 1, 1), image.detach(), self.best)
        self.best_loss = torch.where(better, losses, self.best_loss)
        self._losses = losses

    def publish(self, extra: torch.Tensor | None = None) -> list[float]:
        """The step's one host synchronisation: losses and diverged flags (plus `extra`, a solver's
        flags) in a single transfer; appends to the history and reports progress."""
        assert self._losses is not None, "publish follows record"
        batch = self._losses.shape[0]
        parts = [self._losses, self.diverged.float()] + ([extra.float().reshape(-1)] if extra is not None else [])
        host = torch.cat(parts).tolist()
        losses, self.diverged_now = host[:batch], [flag > 0 for flag in host[batch : 2 * batch]]
        finite = [value for value in losses if math.isfinite(value)]
        total = math.fsum(finite) if finite else float("nan")
        self.history.append(total)
        if self.on_step:
            self.on_step(self.evaluations, self.steps, total)
        return host[2 * batch :]

    @property
    def done(self) -> bool:
        return all(self.diverged_now) or self.evaluations >= self.steps


def lbfgs_history_size(settings: OptimizeSettings) -> int:
    """Slots actually needed: a run of k evaluations stores at most k − 1 pairs."""
    return max(1, min(settings.lbfgs_history, settings.steps - 1))


def solver_bytes_per_image(numel: int, settings: OptimizeSettings) -> int:
    """Device memory the optimiser holds per image beyond the network: the L-BFGS history
    (2·m·N float32) plus its N-sized work vectors, or Adam's two moments."""
    if settings.optimizer != "lbfgs":
        return 4 * numel * 4
    return (2 * lbfgs_history_size(settings) + 8) * numel * 4


def _evaluate(image: torch.Tensor, objective: Objective, tracker: _Tracker) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched forward + backward: per-image losses (B,) and flat gradients (B, N)."""
    losses = _forward_backward(image, objective)
    tracker.record(image, losses)
    assert image.grad is not None  # _forward_backward ran backward through the image
    return losses, flat_pixels(image.grad.detach())


def _forward_backward(image: torch.Tensor, objective: Objective) -> torch.Tensor:
    """Losses and `image.grad`. torch.compile builds the backward graph at the first backward
    pass, so a compiled network that fails there falls back to eager and the pass is redone."""
    while True:
        image.grad = None
        losses = objective.total(objective.parts(image))
        finite = torch.isfinite(losses)
        try:
            torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
            return losses.detach()
        except Exception as exc:
            extractor = objective.extractor
            if extractor is None or not getattr(extractor, "compiled", False) or is_out_of_memory(exc):
                raise
            extractor.stop_compiling(exc)


def _run_lbfgs(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["lbfgs"]
    solver = BatchLBFGS(image, lr, lbfgs_history_size(settings))
    losses, grads = _evaluate(image, objective, tracker)
    solver.start(grads, tracker.diverged)
    while True:
        last = tracker.evaluations >= settings.steps
        update = None if last else solver.propose(grads, losses, tracker.diverged)
        moving = tracker.publish(None if update is None else solver.moving.any())  # the step's one sync
        if update is None or tracker.done or not moving[0]:
            break  # out of steps, every image diverged, or every image converged
        solver.apply(image, update)
        losses, grads = _evaluate(image, objective, tracker)
        solver.after(grads, losses)


def _run_adam(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["adam"]
    optimizer = torch.optim.Adam([image], lr=lr)
    while not tracker.done:
        optimizer.zero_grad(set_to_none=True)
        _evaluate(image, objective, tracker)
        tracker.publish()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)  # projected gradient: Adam's steps stay valid pictures
            if any(tracker.diverged_now):  # a diverged image stays at its best; the others go on
                image.copy_(torch.where(tracker.diverged.view(-1, 1, 1, 1), tracker.best, image))


def optimize(init: torch.Tensor, objective: Objective, settings: OptimizeSettings, on_step: StepCallback | None = None) -> OptimizeResult:
    """Optimise a batch (B, 3, H, W) from `init`; returns each image's best iterate, clamped.

    With bf16/fp16 a batch whose loss turns non-finite is redone in float32 (the NaN guard's
    fallback); in float32 a diverging image keeps the best iterate it reached.
    """
    if settings.steps < 1:
        raise ValueError("steps must be at least 1")
    objective = replace(objective, precision=settings.precision)
    image = init.detach().clamp(0.0, 1.0).requires_grad_(True)  # start, like every step, in range
    tracker = _Tracker(image, settings.steps, on_step)
    runner = _run_lbfgs if settings.optimizer == "lbfgs" else _run_adam
    runner(image, objective, settings, tracker)
    if any(tracker.diverged_now) and settings.precision != "fp32":
        log.warning("loss not finite in %s; redoing this batch in float32", settings.precision)
        return optimize(init, objective, replace(settings, precision="fp32"), on_step)
    best_losses = tracker.best_loss.tolist()
    if any(math.isinf(loss) for loss in best_losses):
        raise OptimizationError("the loss was not finite from the first step; lower the weights or learning rate")
    return OptimizeResult(tracker.best.clamp(0.0, 1.0), tracker.evaluations, tracker.history,
                          list(tracker.diverged_now), best_losses)


# --- coarse to fine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pyramid:
    """Coarse-to-fine schedule: `levels` sizes, each `factor` times the last, steps per level."""

    levels: int = 1
    factor: float = 2.0
    steps: tuple[int, ...] | None = None  # coarse → fine; default: halving per level (4:2:1 for three levels)

    def sizes(self, full: tuple[int, int]) -> list[tuple[int, int]]:
        """Sizes from coarsest to full; a level never drops below 32 px on its short side."""
        out = []
        for level in range(self.levels - 1, -1, -1):
            scale = self.factor ** level
            h, w = max(1, round(full[0] / scale)), max(1, round(full[1] / scale))
            if min(h, w) >= 32 or level == 0:
                out.append((h, w))
        return out

    def split(self, total: int, levels: int) -> list[int]:
        """Steps per level: fewer at full size, where a step costs the most."""
        if self.steps is not None:
            steps = list(self.steps)[-levels:]
            return steps
        if levels == 1:
            return [total]
        weights = [2 ** (levels - 1 - i) for i in range(levels)]  # e.g. 4:2:1 for three levels
        counts = [max(1, round(total * w / sum(weights))) for w in weights]
        counts[-1] = max(1, total - sum(counts[:-1]))
        return counts


def optimize_pyramid(
    init: torch.Tensor,
    objective_at: Callable[[tuple[int, int]], Objective],
    settings: OptimizeSettings,
    pyramid: Pyramid,
    on_step: StepCallback | None = None,
) -> OptimizeResult:
    """Solve at the coarsest size first and upsample each result to start the next level.

    Gram targets are normalised by position count, so the same style targets serve every level;
    `objective_at(size)` supplies the content targets for each level's size.
    """
    full = (init.shape[-2], init.shape[-1])
    sizes = pyramid.sizes(full)
    counts = pyramid.split(settings.steps, len(sizes))
    done, history = 0, []
    result: OptimizeResult | None = None
    for size, steps in zip(sizes, counts):
        start = resize(init if result is None else result.image, size)  # the previous level's result, upsampled

        def progress(step: int, _total: int, loss: float, offset: int = done) -> None:
            if on_step:
                on_step(offset + step, settings.steps, loss)

        result = optimize(start, objective_at(size), replace(settings, steps=steps), progress)
        done += result.steps
        history += result.history
    assert result is not None
    return replace(result, steps=done, history=history)


def initial_image(kind: str, content: torch.Tensor | None, shape: tuple[int, ...], seed: int,
                  init_image: torch.Tensor | None = None, noise: float = 1.0) -> torch.Tensor:
    """Starting pixels: the content photo, seeded white noise of amplitude `noise` around mid-grey
    (1: uniform over [0, 1]), or a given picture."""
    if kind == "content":
        if content is None:
            raise ValueError("init 'content' needs a content image; use 'noise' in this mode")
        return content.clone()
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        return 0.5 + (torch.rand(shape, generator=generator) - 0.5) * noise
    if kind == "image":
        if init_image is None:
            raise ValueError("init 'image' needs a picture")
        return init_image.clone()
    raise ValueError(f"unknown init {kind!r}; use content, noise or a file path")
