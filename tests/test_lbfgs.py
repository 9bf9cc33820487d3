"""The vectorised L-BFGS against the per-image solver it replaced, and its host synchronisations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from lbfgs_reference import reference_lbfgs

from stylepipe.core.geometry import resize
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, optimize
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.terms import ContentLoss, LossTerm, StyleLoss, StyleParams
from stylepipe.io.images import load_image

from conftest import sample

CPU = torch.device("cpu")


def _real_objective(net, batch: torch.Tensor, layers: list[str]) -> Objective:
    terms = [ContentLoss(), StyleLoss(StyleParams(layers=layers))]
    side = max(batch.shape[-2:])
    style = compute_targets([WeightedImage(load_image(sample("the_scream")).tensor, 1.0)], net, terms, StyleSizing(side, None), CPU)
    return Objective(net, terms, content_targets(net, terms, batch), style)


def test_vectorised_lbfgs_equals_the_per_image_solver_on_the_real_network(gatys):
    batch = torch.stack([resize(load_image(sample(name)).tensor, (32, 40)) for name in ("astronaut", "chelsea", "coffee")])
    objective = _real_objective(gatys, batch, ["relu1_1", "relu2_1", "relu3_1"])
    ours = optimize(batch, objective, OptimizeSettings("lbfgs", steps=8))
    reference = reference_lbfgs(batch, objective, steps=8)
    assert ours.steps == reference.steps == 8
    assert ours.history == pytest.approx(reference.history, rel=1e-5)
    assert ours.losses == pytest.approx(reference.losses, rel=1e-5)
    # Rounding differences grow along the trajectory: the reference's own batch and single runs
    # differ by 8e-4 after 6 steps and 1e-2 after 10 (batched convolutions sum in another order).
    assert (ours.image - reference.image).abs().max() < 1e-3
    assert (ours.image - batch).abs().max() > 0.05  # it did move: the comparison is not of two no-ops


class _PerImage(LossTerm):
    """A different problem for each image of a batch, chosen so that each stops in its own way."""

    name = "per_image"
    KINDS = ("coupled", "bowl", "flat", "wall", "nan")

    def __init__(self, kinds: tuple[str, ...], nan_after: int = 4) -> None:
        super().__init__()
        self.kinds, self.nan_after, self.calls = kinds, nan_after, 0
        self.matrix = torch.randn(48, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(self, image, features, content, style):
        self.calls += 1
        x = image.flatten(1)
        values = []
        for row, kind in zip(x, self.kinds):
            if kind in ("coupled", "nan"):  # runs every step (or would, without its NaN)
                value = ((row - 0.5) @ self.matrix).pow(2).mean() + (row - 0.5).pow(4).mean()
                if kind == "nan" and self.calls > self.nan_after:
                    value = value * float("nan")
            elif kind == "wall":  # minimum outside [0, 1]: the projection pins it, its steps shrink to 0
                value = (row - 1.5).pow(2).mean()
            else:  # "bowl" converges in a few steps; "flat" starts at its minimum and never moves
                value = (row - 0.25).pow(2).mean()
            values.append(value)
        return torch.stack(values)


def _start(kinds: tuple[str, ...]) -> torch.Tensor:
    """Float64 pictures: the two solvers then agree to rounding, which float32 would hide."""
    generator = torch.Generator().manual_seed(2)
    def start(kind: str) -> torch.Tensor:
        if kind == "flat":
            return torch.full((3, 4, 4), 0.25)
        if kind == "wall":  # near its bound, so the trust-region steps reach it well within the run
            return 0.95 + 0.04 * torch.rand(3, 4, 4, generator=generator)
        return 0.3 + 0.4 * torch.rand(3, 4, 4, generator=generator)

    pictures = [start(kind) for kind in kinds]
    return torch.stack(pictures).double()


def test_images_that_stop_at_different_steps_match_the_per_image_solver_and_single_runs():
    kinds = _PerImage.KINDS
    init = _start(kinds)
    settings = OptimizeSettings("lbfgs", steps=20, lbfgs_history=5)  # a full ring buffer wraps around
    ours = optimize(init, Objective(None, [_PerImage(kinds)]), settings)
    reference = reference_lbfgs(init, Objective(None, [_PerImage(kinds)]), steps=20, history=5)
    iterations = dict(zip(kinds, reference.iterations))
    assert iterations["flat"] == 0 and 0 < iterations["bowl"] < iterations["coupled"]
    assert 0 < iterations["wall"] < iterations["coupled"] and iterations["nan"] < iterations["coupled"]
    assert ours.diverged == reference.diverged == [kind == "nan" for kind in kinds]
    assert ours.steps == reference.steps == 20
    assert ours.history == pytest.approx(reference.history, rel=1e-6)  # both trackers keep float32 losses
    assert ours.losses == pytest.approx(reference.losses, rel=1e-6)
    assert torch.allclose(ours.image, reference.image, rtol=0, atol=1e-10)
    assert torch.equal(ours.image[kinds.index("flat")], init[kinds.index("flat")])
    assert ours.image[kinds.index("wall")].min() == 1.0  # pinned at the bound
    for i, kind in enumerate(kinds):
        single = optimize(init[i : i + 1], Objective(None, [_PerImage((kind,))]), settings)
        assert torch.allclose(ours.image[i], single.image[0], rtol=0, atol=1e-10), kind


#: Tensor methods that copy a value to the host: on a GPU each one waits for the device.
_SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def count_host_syncs() -> Iterator[list[str]]:
    """Record every call that reads a tensor's value back to the host (also on the CPU, where it
    is free, so that a CPU test sees what would stall a GPU): value reads and boolean-mask indexing."""
    calls: list[str] = []
    patch = pytest.MonkeyPatch()

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return original(self, *args, **kwargs)
        return wrapper

    def indexing(name, original):
        def wrapper(self, index, *args):
            keys = index if isinstance(index, tuple) else (index,)
            if any(isinstance(key, torch.Tensor) and key.dtype == torch.bool for key in keys):
                calls.append(f"{name}[mask]")
            return original(self, index, *args)
        return wrapper

    for name in _SYNC_METHODS:
        patch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    for name in ("__getitem__", "__setitem__"):
        patch.setattr(torch.Tensor, name, indexing(name, getattr(torch.Tensor, name)))
    try:
        yield calls
    finally:
        patch.undo()


def test_the_sync_counter_sees_per_image_synchronisations():
    """The counter is not blind: the old per-image solver's count grows with the batch."""
    counts = {}
    for batch in (1, 4):
        init = _start(("coupled",) * batch)
        with count_host_syncs() as calls:
            reference_lbfgs(init, Objective(None, [_PerImage(("coupled",) * batch)]), steps=4)
        counts[batch] = len(calls)
    assert counts[4] > counts[1] + 3 * 3 * 3  # several per image and step


def test_a_batch_of_8_costs_no_more_host_syncs_per_step_than_a_batch_of_1(gatys):
    """At most one host synchronisation per step, whatever the batch size (real network, 64 px)."""
    pictures = [resize(load_image(sample(name)).tensor, (64, 64)) for name in ("astronaut", "chelsea", "coffee", "tubingen")]
    counts: dict[tuple[int, int], list[str]] = {}
    for batch in (1, 8):
        init = torch.stack([pictures[i % len(pictures)] for i in range(batch)])
        objective = _real_objective(gatys, init, ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
        for steps in (2, 3):
            with count_host_syncs() as calls:
                result = optimize(init, objective, OptimizeSettings("lbfgs", steps=steps))
            assert result.steps == steps  # nothing stopped early: every step was paid for
            counts[batch, steps] = calls
    for steps in (2, 3):
        assert sorted(counts[8, steps]) == sorted(counts[1, steps])
    assert len(counts[8, 3]) - len(counts[8, 2]) <= 1  # one more step, at most one more sync
