"""What the optimiser promises about the pictures it evaluates: valid pixels, bounded steps, and a
coarse-to-fine hand-off that really runs every level. Real network, real pictures, small sizes."""

from __future__ import annotations

import torch

from stylepipe.core.geometry import resize
from stylepipe.core.lbfgs import MAX_STEP_RMS
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, Pyramid, initial_image, optimize, optimize_pyramid
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.terms import ContentLoss, LossTerm, StyleLoss, StyleParams
from stylepipe.io.images import load_image

from conftest import sample

CPU = torch.device("cpu")


class Recorder(LossTerm):
    """A zero-weight term that keeps a copy of every picture the objective is evaluated on."""

    name = "recorder"
    side = "image"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def loss(self, image, features, content, style):
        self.seen.append(image.detach().clone())
        return torch.zeros(image.shape[0])


def _objective(net, content: torch.Tensor, weight: float, recorder: Recorder) -> Objective:
    terms = [ContentLoss(), StyleLoss(StyleParams(weight=weight)), recorder]
    style = compute_targets([WeightedImage(load_image(sample("starry_night")).tensor, 1.0)], net, terms,
                            StyleSizing(64, None), CPU)
    return Objective(net, terms, content_targets(net, terms, content), style)


def _photo(height: int, width: int) -> torch.Tensor:
    return resize(load_image(sample("tubingen")).tensor, (height, width)).unsqueeze(0)


def test_no_evaluated_picture_leaves_the_unit_range(gatys):
    """A heavy style weight pushes pixels hard against 0 and 1: every iterate must stay a picture."""
    content = _photo(48, 64)
    recorder = Recorder()
    result = optimize(content, _objective(gatys, content, 1e4, recorder), OptimizeSettings(steps=15))
    assert len(recorder.seen) == result.steps == 15
    lows = [float(seen.min()) for seen in recorder.seen]
    highs = [float(seen.max()) for seen in recorder.seen]
    assert min(lows) >= 0.0 and max(highs) <= 1.0
    assert min(lows) == 0.0 or max(highs) == 1.0  # the bounds were reached: the projection did work
    # the best iterate is chosen among evaluated pictures, so the saved picture is one of them
    assert any(torch.equal(seen, result.image) for seen in recorder.seen)


def test_each_step_moves_pixels_at_most_the_trust_region(gatys):
    content = _photo(48, 64)
    recorder = Recorder()
    optimize(content, _objective(gatys, content, 1e4, recorder), OptimizeSettings(steps=12))
    moves = [float((b - a).pow(2).mean().sqrt()) for a, b in zip(recorder.seen, recorder.seen[1:])]
    assert max(moves) <= MAX_STEP_RMS * 1.0001
    assert max(moves) > MAX_STEP_RMS / 10  # and it does move


def test_noise_start_is_centred_with_the_asked_amplitude():
    noise = initial_image("noise", None, (1, 3, 32, 32), seed=1, noise=0.3)
    assert 0.35 <= float(noise.min()) and float(noise.max()) <= 0.65
    assert abs(float(noise.mean()) - 0.5) < 0.02


def test_pyramid_hands_off_through_every_level_at_96_by_128(gatys):
    """96×128 with 2 levels ×2: 48×64 then 96×128; the fine level starts from the coarse result."""
    content = _photo(96, 128)
    recorders: dict[tuple[int, int], Recorder] = {}

    def objective_at(size: tuple[int, int]) -> Objective:
        recorders[size] = Recorder()
        scaled = resize(content, size)
        return _objective(gatys, scaled, 200.0, recorders[size])

    pyramid = Pyramid(levels=2, factor=2.0, steps=(6, 4))
    result = optimize_pyramid(content, objective_at, OptimizeSettings(steps=10), pyramid)
    assert list(recorders) == [(48, 64), (96, 128)]
    coarse, fine = recorders[(48, 64)].seen, recorders[(96, 128)].seen
    assert (len(coarse), len(fine)) == (6, 4) and result.steps == 10
    assert tuple(result.image.shape[-2:]) == (96, 128)
    # the fine level's first picture is the coarse level's result, upsampled — not the photo
    handed = fine[0]
    assert not torch.allclose(handed, content, atol=1e-3)
    candidates = [resize(image, (96, 128)) for image in coarse]
    assert any(torch.allclose(handed, candidate, atol=1e-5) for candidate in candidates)
