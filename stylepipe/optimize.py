"""The optimisation loop: pixels of a batch of images move to lower the weighted sum of terms.

Works on tensors alone (no files, no config): an Objective holds the network, the terms and
their targets; `optimize` runs L-BFGS (the paper's choice, the default) or Adam from an initial
batch. Each image's loss depends only on its own pixels, so the batch's summed loss gives every
image its own gradient. A NaN/inf loss stops the run and returns the best image seen so far.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .errors import OptimizationError
from .losses import LossTerm
from .network import FeatureExtractor
from .targets import Targets

OptimizerName = Literal["lbfgs", "adam"]
StepCallback = Callable[[int, int, float], None]
DEFAULT_LR: dict[str, float] = {"lbfgs": 1.0, "adam": 0.02}


@dataclass
class Objective:
    """Weighted loss terms against fixed targets; call it on a batch to get per-image parts."""

    extractor: FeatureExtractor
    terms: Sequence[LossTerm]
    content: Targets = field(default_factory=dict)
    style: Targets = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return sorted({layer for term in self.terms for layer in term.layers})

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-image value of each term, shape (B,) each."""
        layers = self.layers
        features = self.extractor(image, layers) if layers else {}
        return {
            term.name: term.loss(image, features, self.content.get(term.name, {}), self.style.get(term.name, {}))
            for term in self.terms
        }

    def total(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted per-image total, shape (B,)."""
        return sum(term.weight * parts[term.name] for term in self.terms)

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor) -> dict[str, list[float]]:
        """Per-image loss parts and total as plain floats, for reports and tests."""
        parts = self.parts(image)
        values = {name: value.tolist() for name, value in parts.items()}
        values["total"] = self.total(parts).tolist()
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


@dataclass
class OptimizeResult:
    image: torch.Tensor  # (B, 3, H, W), clamped to [0, 1]
    steps: int
    history: list[float]  # batch-summed total loss after each evaluation
    diverged: bool = False


class _Tracker:
    """Counts evaluations, remembers the best batch, and spots a diverging loss."""

    def __init__(self, steps: int, on_step: StepCallback | None) -> None:
        self.steps = steps
        self.on_step = on_step
        self.evaluations = 0
        self.history: list[float] = []
        self.best: torch.Tensor | None = None
        self.best_loss = float("inf")
        self.diverged = False

    def record(self, image: torch.Tensor, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        self.evaluations += 1
        if not torch.isfinite(loss):
            self.diverged = True
            return
        self.history.append(value)
        if value < self.best_loss:
            self.best_loss = value
            self.best = image.detach().clone()
        if self.on_step:
            self.on_step(self.evaluations, self.steps, value)

    @property
    def done(self) -> bool:
        return self.diverged or self.evaluations >= self.steps


def _run_lbfgs(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["lbfgs"]
    optimizer = torch.optim.LBFGS([image], lr=lr, max_iter=settings.steps, max_eval=settings.steps,
                                  history_size=settings.lbfgs_history, tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = objective.total(objective.parts(image)).sum()
        tracker.record(image, loss)
        if tracker.diverged:  # stop L-BFGS from walking further on a NaN
            return torch.zeros((), device=image.device)
        loss.backward()
        return loss

    while not tracker.done:
        before = tracker.evaluations
        optimizer.step(closure)
        if tracker.evaluations == before + 1 and not tracker.done:
            break  # converged: L-BFGS evaluated once and found nothing to do


def _run_adam(image: torch.Tensor, objective: Objective, settings: OptimizeSettings, tracker: _Tracker) -> None:
    lr = settings.lr if settings.lr is not None else DEFAULT_LR["adam"]
    optimizer = torch.optim.Adam([image], lr=lr)
    while not tracker.done:
        optimizer.zero_grad(set_to_none=True)
        loss = objective.total(objective.parts(image)).sum()
        tracker.record(image, loss)
        if tracker.diverged:
            break
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)  # projected gradient: Adam's steps stay valid pictures


def optimize(init: torch.Tensor, objective: Objective, settings: OptimizeSettings, on_step: StepCallback | None = None) -> OptimizeResult:
    """Optimise a batch (B, 3, H, W) from `init`; returns the best images seen, clamped."""
    if settings.steps < 1:
        raise ValueError("steps must be at least 1")
    image = init.detach().clone().requires_grad_(True)
    tracker = _Tracker(settings.steps, on_step)
    runner = _run_lbfgs if settings.optimizer == "lbfgs" else _run_adam
    runner(image, objective, settings, tracker)
    if tracker.best is None:
        raise OptimizationError("the loss was not finite from the first step; lower the weights or learning rate")
    # The last L-BFGS evaluation is always recorded, so `best` is never older than needed.
    return OptimizeResult(tracker.best.clamp(0.0, 1.0), tracker.evaluations, tracker.history, tracker.diverged)


def initial_image(kind: str, content: torch.Tensor | None, shape: tuple[int, ...], seed: int, init_image: torch.Tensor | None = None) -> torch.Tensor:
    """Starting pixels: the content photo, seeded white noise, or a given picture."""
    if kind == "content":
        if content is None:
            raise ValueError("init 'content' needs a content image; use 'noise' in this mode")
        return content.clone()
    if kind == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(shape, generator=generator)
    if kind == "image":
        if init_image is None:
            raise ValueError("init 'image' needs a picture")
        return init_image.clone()
    raise ValueError(f"unknown init {kind!r}; use content, noise or a file path")
