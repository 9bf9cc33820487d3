"""The optimisation loop on the real network at small sizes: does it actually paint?"""

from __future__ import annotations

import pytest
import torch

from stylepipe.core.errors import OptimizationError
from stylepipe.core.geometry import resize, target_size
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, initial_image, optimize
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.terms import ContentLoss, LossTerm, StyleLoss, StyleParams
from stylepipe.io.images import load_image

from conftest import sample

CPU = torch.device("cpu")


def _picture(name: str, side: int) -> torch.Tensor:
    image = load_image(sample(name)).tensor
    return resize(image, target_size(image.shape[1], image.shape[2], max_side=side))


def _objective(net, content: torch.Tensor, style_name: str, side: int, terms=None) -> Objective:
    terms = terms or [ContentLoss(), StyleLoss()]
    style = compute_targets([WeightedImage(load_image(sample(style_name)).tensor, 1.0)], net, terms, StyleSizing(side, None), CPU)
    return Objective(net, terms, content_targets(net, terms, content), style)


def test_output_carries_the_style(gatys):
    """The acceptance criterion: the output's style loss is far below the content photo's own."""
    content = _picture("chelsea", 64).unsqueeze(0)
    objective = _objective(gatys, content, "the_scream", 64)
    before = objective.evaluate(content)
    result = optimize(content, objective, OptimizeSettings("lbfgs", steps=40))
    after = objective.evaluate(result.image)
    assert after["style"][0] < before["style"][0] / 10
    for other in ("coffee", "astronaut", "tubingen"):  # still the cat: nearer to it than to any other photo
        photo = resize(load_image(sample(other)).tensor, tuple(content.shape[-2:]))[None]
        assert after["content"][0] < _objective(gatys, photo, "the_scream", 64).evaluate(result.image)["content"][0], other
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.history[-1] < result.history[0]


def test_content_reconstruction_from_noise(gatys):
    content = _picture("coffee", 48).unsqueeze(0)
    terms = [ContentLoss()]
    objective = Objective(gatys, terms, content_targets(gatys, terms, content), {})
    noise = initial_image("noise", None, tuple(content.shape), seed=3)
    start = objective.evaluate(noise)["content"][0]
    result = optimize(noise, objective, OptimizeSettings("lbfgs", steps=30))
    assert objective.evaluate(result.image)["content"][0] < start / 5


def test_adam_also_lowers_the_loss_and_stays_in_range(gatys):
    content = _picture("astronaut", 32).unsqueeze(0)
    objective = _objective(gatys, content, "starry_night", 32)
    result = optimize(content, objective, OptimizeSettings("adam", steps=15, lr=0.05))
    assert result.steps == 15 and len(result.history) == 15
    assert min(result.history[5:]) < result.history[0]
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_same_seed_same_result(gatys):
    content = _picture("astronaut", 32).unsqueeze(0)
    objective = _objective(gatys, content, "shipwreck", 32)
    runs = [optimize(initial_image("noise", None, tuple(content.shape), seed=7), objective, OptimizeSettings(steps=5)).image for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = optimize(initial_image("noise", None, tuple(content.shape), seed=8), objective, OptimizeSettings(steps=5)).image
    assert not torch.equal(runs[0], other)


def test_batch_of_images_are_independent_problems_with_adam(gatys):
    pictures = [_picture("astronaut", 32), _picture("chelsea", 32)[:, :, :32]]
    pictures = [resize(p, (32, 32)) for p in pictures]
    terms = [ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1"]))]
    settings = OptimizeSettings("adam", steps=5, lr=0.05)
    batch = torch.stack(pictures)
    batched = optimize(batch, _objective(gatys, batch, "the_scream", 32, terms), settings).image
    for i, picture in enumerate(pictures):
        single = optimize(picture[None], _objective(gatys, picture[None], "the_scream", 32, terms), settings).image
        assert torch.allclose(batched[i], single[0], atol=1e-4)


class _Exploding(LossTerm):
    """A term that turns NaN after a few evaluations, to exercise the NaN guard."""

    name = "exploding"
    side = "image"

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.calls = 0

    def loss(self, image, features, content, style):
        self.calls += 1
        value = image.pow(2).flatten(1).mean(1)
        return value * float("nan") if self.calls > self.after else value


def test_nan_guard_keeps_the_best_image_seen():
    objective = Objective(extractor=None, terms=[_Exploding(after=3)])  # no layers: the network is never called
    start = torch.full((1, 3, 8, 8), 0.8)
    result = optimize(start, objective, OptimizeSettings("adam", steps=20, lr=0.1))
    assert result.diverged and result.steps == 4
    assert torch.isfinite(result.image).all()
    assert result.image.mean() < 0.8  # it had moved towards the minimum before diverging


def test_nan_from_the_start_is_an_error():
    objective = Objective(extractor=None, terms=[_Exploding(after=0)])
    with pytest.raises(OptimizationError, match="not finite"):
        optimize(torch.rand(1, 3, 8, 8), objective, OptimizeSettings("lbfgs", steps=5))


def test_initial_image_kinds():
    content = torch.rand(1, 3, 4, 4)
    assert torch.equal(initial_image("content", content, (1, 3, 4, 4), 0), content)
    assert torch.equal(initial_image("noise", None, (1, 3, 4, 4), 1), initial_image("noise", None, (1, 3, 4, 4), 1))
    with pytest.raises(ValueError):
        initial_image("content", None, (1, 3, 4, 4), 0)
    with pytest.raises(ValueError):
        initial_image("plasma", None, (1, 3, 4, 4), 0)
