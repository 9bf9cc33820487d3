"""The optimisation loop: pixels of a batch of images move to lower the weighted sum of terms.

Works on tensors alone (no files, no config): an Objective holds the network, the terms and
their targets; `optimize` runs L-BFGS (the paper's choice, the default) or Adam from an initial
batch, and `optimize_pyramid` runs it coarse-to-fine.

A batch of N images is N independent problems solved side by side: one batched forward and
backward pass per step, but each image has its own L-BFGS history, step and stopping test (an
L-BFGS over the concatenated batch would couple them through a shared line search), its own
NaN guard and its own best-so-far copy. So a batch gives the same result as N single runs, within
float tolerance. The L-BFGS follows torch.optim.LBFGS without line search, step for step, except
that every step is projected onto the valid pictures (pixels in [0, 1]). It is vectorised over the
batch (`_BatchLBFGS`): per-image masks instead of per-image branches, the history as (B, m, N)
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

import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, cast

import torch
import torch.nn.functional as F

from .errors import OptimizationError
from .loss_fns import Term
from .network import FeatureExtractor, is_out_of_memory
from .target_fns import Targets

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


class Tiler(Protocol):
    """Evaluates an Objective's parts with the same values and gradients as one whole-picture
    pass, in less memory: `stylepipe.core.tiling.Tiling` runs the network on tiles."""

    def parts(self, objective: Objective, image: torch.Tensor) -> dict[str, torch.Tensor]: ...


@dataclass
class Objective:
    """Weighted loss terms against fixed targets; call it on a batch to get per-image parts."""

    extractor: FeatureExtractor | None
    terms: Sequence[Term]
    content: Targets = field(default_factory=dict)
    style: Targets = field(default_factory=dict)
    precision: Precision = "fp32"
    tiling: Tiler | None = None  # None: one pass over the whole picture (see stylepipe.core.tiling)

    @property
    def layers(self) -> list[str]:
        return sorted({layer for term in self.terms for layer in term.layers})

    def _autocast(self, image: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=image.device.type, dtype=_DTYPES[self.precision])

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-image value of each term, shape (B,) each; losses always in float32."""
        if self.tiling is not None:
            return self.tiling.parts(self, image)
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
        return cast(torch.Tensor, sum(term.weight * parts[term.name] for term in self.terms))

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor) -> dict[str, list[float]]:
        """Per-image loss parts and total as plain floats (always float32), for reports and tests."""
        full = replace(self, precision="fp32")
        parts = full.parts(image)
        values = {name: value.tolist() for name, value in parts.items()}
        values["total"] = full.total(parts).tolist()
        return values


def content_targets(extractor: FeatureExtractor, terms: Sequence[Term], content: torch.Tensor) -> Targets:
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


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """(B, …) → (B, N) in logical order, whatever the memory layout (channels-last gradients)."""
    return tensor.reshape(tensor.shape[0], -1)


class _BatchLBFGS:
    """torch.optim.LBFGS's update (no line search) for B independent images, as batched tensor ops.

    Each image has its own history of (s, y) pairs: a ring buffer of m slots in (B, m, N) tensors,
    with `ro` = 1/(y·s) per slot (0 marks an empty slot) and the small Gram matrices s_i·y_j and
    y_i·y_j kept up to date one row and column per new pair. The two-loop recursion is rewritten
    exactly as two triangular solves on those m × m matrices (see `_direction`), so a step reads
    the history twice in a few batched matrix products instead of 4·m vector operations per image.
    Per-image masks replace the per-image branches: `active` (not yet converged), the tracker's
    `diverged`, `moving` (took a step this round). Nothing here reads a value back to the host.
    Round r can have stored at most r − 1 pairs, in slots 0 … r − 2 (the ring only wraps once
    full), so the first m rounds work on that window alone: a host-side count, no sync.
    """

    def __init__(self, image: torch.Tensor, lr: float, history: int) -> None:
        batch, numel = image.shape[0], image[0].numel()
        device, dtype = image.device, image.dtype
        self.lr, self.m = lr, history
        self.rounds = 0  # calls of `propose`
        self.s = torch.zeros(batch, history, numel, device=device, dtype=dtype)
        self.y = torch.zeros(batch, history, numel, device=device, dtype=dtype)
        self.ro = torch.zeros(batch, history, device=device, dtype=dtype)
        self.sy = torch.zeros(batch, history, history, device=device, dtype=dtype)  # sy[b, i, j] = s_i · y_j
        self.yy = torch.zeros(batch, history, history, device=device, dtype=dtype)  # yy[b, i, j] = y_i · y_j
        self.head = torch.zeros(batch, dtype=torch.long, device=device)  # next slot; the oldest once full
        self.h_diag = torch.ones(batch, device=device, dtype=dtype)
        self.prev_grad = torch.zeros(batch, numel, device=device, dtype=dtype)
        self.prev_loss = torch.zeros(batch, device=device, dtype=dtype)
        self.taken = torch.zeros(batch, numel, device=device, dtype=dtype)  # the last step actually made, after projection
        self.iterations = torch.zeros(batch, dtype=torch.long, device=image.device)
        self.active = torch.ones(batch, dtype=torch.bool, device=image.device)
        self.moving = torch.zeros(batch, dtype=torch.bool, device=image.device)
        self._rows = torch.arange(batch, device=image.device)
        self._slots = torch.arange(history, device=image.device)

    def start(self, grad: torch.Tensor, diverged: torch.Tensor) -> None:
        """Images that diverged or are already flat at the start never move."""
        self.active = ~diverged & (grad.abs().amax(dim=1) > _TOLERANCE_GRAD)

    def propose(self, grad: torch.Tensor, loss: torch.Tensor, diverged: torch.Tensor) -> torch.Tensor:
        """The update of every image, (B, N): zero for those that stopped; sets `moving`."""
        calls = self.active & ~diverged
        self.iterations += calls.long()
        self.rounds += 1
        window = min(self.m, max(1, self.rounds - 1))  # slots that can hold a pair by now
        first = calls & (self.iterations == 1)
        sg, yg = self._remember(grad, calls & ~first, window)
        d = self._direction(grad, sg, yg, window)
        self.prev_grad = torch.where(calls[:, None], grad, self.prev_grad)
        self.prev_loss = torch.where(calls, loss.to(self.prev_loss.dtype), self.prev_loss)
        first_t = (1.0 / grad.abs().sum(dim=1)).clamp(max=1.0) * self.lr  # torch: a tiny first step
        t = torch.where(first, first_t, torch.full_like(first_t, self.lr))
        rms = d.pow(2).mean(dim=1).sqrt() * t
        t = torch.where(rms > MAX_STEP_RMS, t * MAX_STEP_RMS / rms, t)  # the trust region
        downhill = ~((grad * d).sum(dim=1) > -_TOLERANCE_CHANGE)  # not "> -tol": NaN goes on, as in torch
        self.active &= ~(calls & ~downhill)
        self.moving = calls & downhill
        return torch.where(self.moving[:, None], d * t[:, None], 0.0)  # where, not a product: d may be NaN

    def apply(self, image: torch.Tensor, update: torch.Tensor) -> None:
        """Take the step projected onto [0, 1]; remember what was actually taken."""
        with torch.no_grad():
            before = _flat(image.detach())
            after = (before + update).clamp(0.0, 1.0)
            self.taken = torch.where(self.moving[:, None], after - before, self.taken)
            image.copy_(after.view_as(image))

    def after(self, grad: torch.Tensor, loss: torch.Tensor) -> None:
        """torch's stopping tests after a step (flat gradient, tiny step, no loss change), skipped
        after the first step: that one is deliberately tiny (1/|g|₁), in bf16 it may not move the loss."""
        flat = grad.abs().amax(dim=1) <= _TOLERANCE_GRAD
        tiny = self.taken.abs().amax(dim=1) <= _TOLERANCE_CHANGE
        still = (loss.to(self.prev_loss.dtype) - self.prev_loss).abs() < _TOLERANCE_CHANGE
        self.active &= ~(self.moving & (self.iterations > 1) & (flat | tiny | still))

    def _remember(self, grad: torch.Tensor, curving: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store each image's new (s, y) pair where y·s > 1e-10, update the Gram matrices, and
        return s_i·g and y_i·g for every slot (one pass over each history tensor for all of it)."""
        y, s = grad - self.prev_grad, self.taken
        ys, yy = (y * s).sum(dim=1), (y * y).sum(dim=1)
        accept = curving & (ys > 1e-10)
        slot = self.head
        rows = self._rows
        self.s[rows, slot] = torch.where(accept[:, None], s, self.s[rows, slot])
        self.y[rows, slot] = torch.where(accept[:, None], y, self.y[rows, slot])
        self.ro[rows, slot] = torch.where(accept, 1.0 / ys, self.ro[rows, slot])
        self.h_diag = torch.where(accept, ys / yy, self.h_diag)
        self.head = torch.where(accept, (slot + 1) % self.m, slot)
        y_dots = _dots(self.y[:, :k], s, y, grad)  # y_j·s, y_j·y, y_j·g
        s_dots = _dots(self.s[:, :k], y, grad)  # s_j·y, s_j·g
        written = (self._slots[:k] == slot[:, None]) & accept[:, None]  # (B, k): the new pair's slot
        sy = torch.where(written[:, :, None], y_dots[:, None, :, 0], self.sy[:, :k, :k])  # its row: s_new·y_j
        self.sy[:, :k, :k] = torch.where(written[:, None, :], s_dots[:, :, None, 0], sy)  # its column: s_j·y_new
        yy = torch.where(written[:, :, None], y_dots[:, None, :, 1], self.yy[:, :k, :k])
        self.yy[:, :k, :k] = torch.where(written[:, None, :], y_dots[:, :, None, 1], yy)
        return s_dots[:, :, 1], y_dots[:, :, 2]

    def _direction(self, grad: torch.Tensor, sg: torch.Tensor, yg: torch.Tensor, k: int) -> torch.Tensor:
        """The two-loop recursion d = −H·g, exactly, as two triangular solves.

        In chronological order (1 oldest), the first loop's α_i = ρ_i s_i·(−g − Σ_{j>i} α_j y_j)
        is the upper-triangular system α_i + ρ_i Σ_{j>i} (s_i·y_j) α_j = −ρ_i s_i·g. With
        d₀ = h·(−g − Σ α_j y_j), the second loop's c_i = α_i − β_i, β_i = ρ_i y_i·(d₀ + Σ_{j<i} c_j s_j),
        is the lower-triangular c_i + ρ_i Σ_{j<i} (s_j·y_i) c_j = α_i − ρ_i y_i·d₀, and d = d₀ + Σ c_j s_j.
        Empty slots (ρ = 0) are identity rows: they get α = c = 0. Works on the first k slots.
        """
        order = (self.head[:, None] + self._slots[:k]) % k  # oldest → newest; empty slots first
        ro, sg, yg = (v.gather(1, order) for v in (self.ro[:, :k], sg, yg))
        sy, yy = (_permute(matrix[:, :k, :k], order) for matrix in (self.sy, self.yy))
        eye = torch.eye(k, device=grad.device, dtype=grad.dtype)
        alpha = torch.linalg.solve_triangular(eye + ro[:, :, None] * sy.triu(1), (-ro * sg)[:, :, None], upper=True)
        h = self.h_diag[:, None, None]
        y_d0 = h * (-yg[:, :, None] - torch.bmm(yy, alpha))
        c = torch.linalg.solve_triangular(eye + ro[:, :, None] * sy.transpose(1, 2).tril(-1),
                                          alpha - ro[:, :, None] * y_d0, upper=False)
        alpha_at, c_at = (torch.zeros_like(ro).scatter(1, order, v[:, :, 0]) for v in (alpha, c))  # back to slots
        combined = -h[:, :, 0] * (grad + torch.bmm(alpha_at[:, None, :], self.y[:, :k])[:, 0])
        return combined + torch.bmm(c_at[:, None, :], self.s[:, :k])[:, 0]


def _dots(history: torch.Tensor, *vectors: torch.Tensor) -> torch.Tensor:
    """(B, k, N) · each (B, N) → (B, k, len(vectors)): one read of the history for all of them.
    The vectors are stacked as rows (a transposed operand costs nothing; a (B, N, 3) copy is slow)."""
    return torch.einsum("bkn,bcn->bkc", history, torch.stack(vectors, dim=1))


def _permute(matrix: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows and columns of a (B, k, k) matrix in each image's own slot order."""
    m = order.shape[1]
    rows = matrix.gather(1, order[:, :, None].expand(-1, -1, m))
    return rows.gather(2, order[:, None, :].expand(-1, m, -1))


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
    return losses, _flat(image.grad.detach())


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
    solver = _BatchLBFGS(image, lr, lbfgs_history_size(settings))
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
    done, history = 0, []
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
