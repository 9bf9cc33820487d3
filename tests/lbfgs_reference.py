"""The per-image L-BFGS that `optimize._BatchLBFGS` replaced, kept verbatim as the reference.

A Python loop over the images of a batch and over each image's history (torch.optim.LBFGS's
update without line search, projected onto [0, 1]): slow on a GPU, but obviously right. The tests
check that the vectorised solver takes the same steps, image by image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylepipe.core.lbfgs import MAX_STEP_RMS
from stylepipe.core.objective import Objective

_TOLERANCE_GRAD = 1e-9
_TOLERANCE_CHANGE = 1e-12


class _Tracker:
    """Counts evaluations and keeps, per image, the best iterate and whether it diverged."""

    def __init__(self, batch: int, steps: int) -> None:
        self.steps = steps
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
        if rms > MAX_STEP_RMS:  # the trust region
            self.t = self.t * MAX_STEP_RMS / rms
        self.d = d
        return d * self.t

    def after(self, taken: torch.Tensor, grad: torch.Tensor, loss: float) -> None:
        """Remember the projected step; torch's stopping tests: flat gradient, tiny step, no progress."""
        self.taken = taken
        if self.iterations == 1:
            return
        if (grad.abs().max() <= _TOLERANCE_GRAD or taken.abs().max() <= _TOLERANCE_CHANGE
                or abs(loss - self.prev_loss) < _TOLERANCE_CHANGE):
            self.active = False


def _evaluate(image: torch.Tensor, objective: Objective, tracker: _Tracker) -> tuple[torch.Tensor, torch.Tensor]:
    image.grad = None
    losses = objective.total(objective.parts(image))
    tracker.record(image, losses)
    finite = torch.isfinite(losses)
    torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
    return losses.detach(), image.grad.detach()


@dataclass
class ReferenceResult:
    image: torch.Tensor  # each image's best iterate, clamped
    steps: int  # loss evaluations made
    history: list[float]
    diverged: list[bool]
    losses: list[float]
    iterations: list[int]  # per image: L-BFGS steps computed before it stopped


def reference_lbfgs(init: torch.Tensor, objective: Objective, steps: int, lr: float = 1.0, history: int = 50) -> ReferenceResult:
    """The old `optimize(init, objective, OptimizeSettings("lbfgs", steps, lr, history))`, image by image."""
    image = init.detach().clamp(0.0, 1.0).requires_grad_(True)
    tracker = _Tracker(image.shape[0], steps)
    solvers = [_ImageLBFGS(lr, history) for _ in range(image.shape[0])]
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
                        image[i].add_(update.view_as(image[i])).clamp_(0.0, 1.0)
                        taken[i] = (image[i] - before).flatten()
        if not taken:
            break
        losses, grads = _evaluate(image, objective, tracker)
        for i, step in taken.items():
            solvers[i].after(step, grads[i].flatten(), float(losses[i]))
    return ReferenceResult(tracker.best.clamp(0.0, 1.0), tracker.evaluations, tracker.history,
                           tracker.diverged.tolist(), tracker.best_loss.tolist(), [s.iterations for s in solvers])
