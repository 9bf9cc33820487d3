"""The optimisation loop: pixels of a batch of images move to lower the weighted sum of terms.

Works on tensors alone (no files, no config): an Objective holds the network, the terms and
their targets; `optimize` runs L-BFGS (the paper's choice, the default) or Adam from an initial
batch, and `optimize_pyramid` runs it coarse-to-fine.

A batch of N images is N independent problems solved side by side: one batched forward and
backward pass per step, but each image has its own L-BFGS history, step and stopping test (an
L-BFGS over the concatenated batch would couple them through a shared line search), its own
NaN guard and its own best-so-far copy. So a batch gives the same result as N single runs, within
float tolerance. The per-image L-BFGS follows torch.optim.LBFGS without line search, step for step,
except that every step is projected onto the valid pictures (pixels in [0, 1]).

Why projection: an unconstrained iterate drifts outside [0, 1] where the network happily reads
"brighter than white"; clamping only the result then leaves isolated over- and under-shot pixels
(speckles), and the best iterate would be picked on a picture that is never saved. Projecting
each step keeps every evaluated image a valid picture, so the loss tracked is the loss of what is
written. L-BFGS learns its curvature from the step actually taken (after the projection), which
keeps the (s, y) pairs consistent; pixels pinned at a bound simply stop moving.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F

from .errors import OptimizationError
from .losses import LossTerm
from .network import FeatureExtractor
from .targets import Targets

OptimizerName = Literal["lbfgs", "adam"]
Precision = Literal["fp32", "bf16", "fp16"]
StepCallback = Callable[[int, int, float], None]
DEFAULT_LR: dict[str, float] = {"lbfgs": 1.0, "adam": 0.02}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_TOLERANCE_GRAD = 1e-9
_TOLERANCE_CHANGE = 1e-12
#: Trust region of the L-BFGS step: its RMS pixel change at most this (pixels are in [0, 1]).
#: Without a line search an early step can overshoot wildly (seen: RMS 0.42, the loss ×190, the
#: photo repainted and 25 steps lost recovering); ordinary steps stay far below it.
MAX_STEP_RMS = 0.03
log = logging.getLogger("stylepipe.optimize")


@dataclass
class Objective:
    """Weighted loss terms against fixed targets; call it on a batch to get per-image parts."""

    extractor: FeatureExtractor | None
    terms: Sequence[LossTerm]
    content: Targets = field(default_factory=dict)
    style: Targets = field(default_factory=dict)
    precision: Precision = "fp32"

    @property
    def layers(self) -> list[str]:
        return sorted({layer for term in self.terms for layer in term.layers})

    def _autocast(self, image: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=image.device.type, dtype=_DTYPES[self.precision])

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-image value of each term, shape (B,) each; losses always in float32."""
        layers = self.layers
        features: dict[str, torch.Tensor] = {}
        if layers and self.extractor is not None:
            with self._autocast(image):
                features = self.extractor(image, layers)
            features = {name: value.float() for name, value in features.items()}
        return {
            term.name: term.loss(image, features, self.content.get(term.name, {}), self.style.get(term.name, {}))
            for term in self.terms
        }

    def total(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted per-image total, shape (B,)."""
        return sum(term.weight * parts[term.name] for term in self.terms)

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor) -> dict[str, list[float]]:
        """Per-image loss parts and total as plain floats (always float32), for reports and tests."""
        full = replace(self, precision="fp32")
        parts = full.parts(image)
        values = {name: value.tolist() for name, value in parts.items()}
        values["total"] = full.total(parts).tolist()
        return values


def content_targets(extractor: FeatureExtractor, terms: Sequence[LossTerm], content: torch.Tensor) -> Targets:
    """Targets of the content-side terms for a batch of content images."""
    content_terms = [term for term in terms if term.side == "content"]
    layers = sorted({layer for term in content_terms for layer in term.layers})
    if not layers:
        return {}
    with torch.no_grad():
        features = extractor(content, layers)
        return {term.name: term.content_targets(features) for term in content_terms}


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
    """Counts evaluations and keeps, per image, the best iterate and whether it diverged."""

    def __init__(self, batch: int, steps: int, on_step: StepCallback | None) -> None:
        self.steps = steps
        self.on_step = on_step
        self.evaluations = 0
        self.history: list[float] = []
        self.best: torch.Tensor | None = None
        self.best_loss = torch.full((batch,), float("inf"))
        self.diverged = torch.zeros(batch, dtype=torch.bool)

    def record(self, image: torch.Tensor, losses: torch.Tensor) -> None:
        losses = losses.detach().float().cpu()
        self.evaluations += 1
        finite = torch.isfinite(losses)
        self.diverged |= ~finite
        better = finite & (losses < self.best_loss) & ~self.diverged
        if self.best is None:
            self.best = image.detach().clone()
        if better.any():
            index = better.nonzero().flatten().to(image.device)
            self.best[index] = image.detach()[index]
            self.best_loss[better] = losses[better]
        total = float(losses[finite].sum()) if finite.any() else float("nan")
        self.history.append(total)
        if self.on_step:
            self.on_step(self.evaluations, self.steps, total)

    @property
    def done(self) -> bool:
        return bool(self.diverged.all()) or self.evaluations >= self.steps


class _ImageLBFGS:
    """torch.optim.LBFGS's update (no line search) for one image of a batch."""

    def __init__(self, lr: float, history: int) -> None:
        self.lr = lr
        self.history = history
        self.dirs: list[torch.Tensor] = []
        self.steps: list[torch.Tensor] = []
        self.ro: list[torch.Tensor] = []
        self.h_diag: torch.Tensor | float = 1.0
        self.d: torch.Tensor | None = None
        self.taken: torch.Tensor | None = None  # the last step actually made, after projection
        self.t: float | torch.Tensor = lr
        self.prev_grad: torch.Tensor | None = None
        self.prev_loss = 0.0
        self.iterations = 0
        self.active = True

    def step(self, grad: torch.Tensor, loss: float) -> torch.Tensor | None:
        """The update to add to this image's pixels, or None once it has converged."""
        self.iterations += 1
        if self.iterations == 1:
            d = grad.neg()
        else:
            y = grad - self.prev_grad
            s = self.taken
            ys = y.dot(s)
            if ys > 1e-10:
                if len(self.dirs) == self.history:
                    self.dirs.pop(0), self.steps.pop(0), self.ro.pop(0)
                self.dirs.append(y), self.steps.append(s), self.ro.append(1.0 / ys)
                self.h_diag = ys / y.dot(y)
            q = grad.neg()
            alphas = [None] * len(self.dirs)
            for i in range(len(self.dirs) - 1, -1, -1):
                alphas[i] = self.steps[i].dot(q) * self.ro[i]
                q.add_(self.dirs[i], alpha=-alphas[i])
            d = q * self.h_diag
            for i in range(len(self.dirs)):
                beta = self.dirs[i].dot(d) * self.ro[i]
                d.add_(self.steps[i], alpha=alphas[i] - beta)
        self.prev_grad = grad.clone()
        self.prev_loss = loss
        self.t = min(1.0, 1.0 / float(grad.abs().sum())) * self.lr if self.iterations == 1 else self.lr
        if grad.dot(d) > -_TOLERANCE_CHANGE:
            self.active = False
            return None
        rms = float(d.pow(2).mean().sqrt()) * self.t
        if rms > MAX_STEP_RMS:
            self.t = self.t * MAX_STEP_RMS / rms
        self.d = d
        return d * self.t

    def after(self, taken: torch.Tensor, grad: torch.Tensor, loss: float) -> None:
        """Remember the projected step; torch's stopping tests: flat gradient, tiny step, no progress."""
        self.taken = taken
        if self.iterations == 1:
            return  # the first step is deliberately tiny (1/|g|₁): in bf16 it may not move the loss at all
        if (grad.abs().max() <= _TOLERANCE_GRAD or taken.abs().max() <= _TOLERANCE_CHANGE
                or abs(loss - self.prev_loss) < _TOLERANCE_CHANGE):
            self.active = False


def _evaluate(image: torch.Tensor, objective: Objective, tracker: _Tracker) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched forward + backward: per-image losses and gradients."""
    image.grad = None
    losses = objective.total(objective.parts(image))
    tracker.record(image, losses)
    finite = torch.isfinite(losses)
    torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
    return losses.detach(), image.grad.detach()


def _run_lbfgs(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["lbfgs"]
    solvers = [_ImageLBFGS(lr, settings.lbfgs_history) for _ in range(image.shape[0])]
    losses, grads = _evaluate(image, objective, tracker)
    for i, solver in enumerate(solvers):
        if tracker.diverged[i] or grads[i].abs().max() <= _TOLERANCE_GRAD:
            solver.active = False
    while not tracker.done:
        taken: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for i, solver in enumerate(solvers):
                if solver.active and not tracker.diverged[i]:
                    update = solver.step(grads[i].flatten(), float(losses[i]))
                    if update is not None:
                        before = image[i].detach().clone()
                        image[i].add_(update.view_as(image[i])).clamp_(0.0, 1.0)  # the projected step
                        taken[i] = (image[i] - before).flatten()
        if not taken:
            break  # every image converged or diverged
        losses, grads = _evaluate(image, objective, tracker)
        for i, step in taken.items():
            solvers[i].after(step, grads[i].flatten(), float(losses[i]))


def _run_adam(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["adam"]
    optimizer = torch.optim.Adam([image], lr=lr)
    while not tracker.done:
        optimizer.zero_grad(set_to_none=True)
        _evaluate(image, objective, tracker)
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)  # projected gradient: Adam's steps stay valid pictures
            frozen = tracker.diverged.to(image.device)
            if frozen.any():  # a diverged image stays at its best; the others go on
                image[frozen] = tracker.best[frozen]


def optimize(init: torch.Tensor, objective: Objective, settings: OptimizeSettings, on_step: StepCallback | None = None) -> OptimizeResult:
    """Optimise a batch (B, 3, H, W) from `init`; returns each image's best iterate, clamped.

    With bf16/fp16 a batch whose loss turns non-finite is redone in float32 (the NaN guard's
    fallback); in float32 a diverging image keeps the best iterate it reached.
    """
    if settings.steps < 1:
        raise ValueError("steps must be at least 1")
    objective = replace(objective, precision=settings.precision)
    image = init.detach().clamp(0.0, 1.0).requires_grad_(True)  # start, like every step, in range
    tracker = _Tracker(image.shape[0], settings.steps, on_step)
    runner = _run_lbfgs if settings.optimizer == "lbfgs" else _run_adam
    runner(image, objective, settings, tracker)
    if tracker.diverged.any() and settings.precision != "fp32":
        log.warning("loss not finite in %s; redoing this batch in float32", settings.precision)
        return optimize(init, objective, replace(settings, precision="fp32"), on_step)
    never_finite = torch.isinf(tracker.best_loss)
    if never_finite.any():
        raise OptimizationError("the loss was not finite from the first step; lower the weights or learning rate")
    return OptimizeResult(tracker.best.clamp(0.0, 1.0), tracker.evaluations, tracker.history,
                          tracker.diverged.tolist(), tracker.best_loss.tolist())


# --- coarse to fine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pyramid:
    """Coarse-to-fine schedule: `levels` sizes, each `factor` times the last, steps per level."""

    levels: int = 1
    factor: float = 2.0
    steps: tuple[int, ...] | None = None  # coarse → fine; default: half the budget at the coarsest

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


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a batch, for moving between pyramid levels."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


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
    image, done, history = init, 0, []
    result: OptimizeResult | None = None
    for size, steps in zip(sizes, counts):
        start = resample(init if result is None else result.image, size)

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
