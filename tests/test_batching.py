"""Throughput machinery: per-image L-BFGS, batch = singles, OOM halving, pyramid, precision."""

from __future__ import annotations

import logging

import pytest
import torch

from stylepipe.core.geometry import resize
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, Pyramid, optimize, optimize_pyramid
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.terms import ContentLoss, LossTerm, StyleLoss, StyleParams
from stylepipe.io.images import load_image

from conftest import sample

CPU = torch.device("cpu")


class _Quartic(LossTerm):
    """A smooth non-quadratic test function with a coupling matrix: L-BFGS has work to do.

    Its minimum is the mid-grey picture, so iterates started near it stay inside [0, 1], where
    the projection never binds and our solver must match the unconstrained torch.optim.LBFGS."""

    name = "quartic"

    def __init__(self) -> None:
        super().__init__()
        self.matrix = torch.randn(48, 48, generator=torch.Generator().manual_seed(0))

    def loss(self, image, features, content, style):
        x = image.flatten(1) - 0.5
        return (x @ self.matrix).pow(2).mean(1) + x.pow(4).mean(1)


def test_our_lbfgs_follows_torch_lbfgs_step_for_step():
    term = _Quartic()
    init = 0.5 + 0.2 * (torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)) - 0.5)
    ours = optimize(init, Objective(None, [term]), OptimizeSettings("lbfgs", steps=25))
    x = init.clone().requires_grad_(True)
    reference = torch.optim.LBFGS([x], lr=1, max_iter=25, max_eval=25, history_size=50, tolerance_grad=1e-9, tolerance_change=1e-12)
    trace: list[float] = []
    seen: list[torch.Tensor] = []

    def closure():
        reference.zero_grad()
        seen.append(x.detach().clone())
        loss = term.loss(x, None, None, None).sum()
        trace.append(loss.item())
        loss.backward()
        return loss

    reference.step(closure)
    assert all(0 <= float(p.min()) and float(p.max()) <= 1 for p in seen)  # the projection never binds
    assert len(trace) == 25 and trace[-1] < trace[0] / 100
    assert ours.history == pytest.approx(trace, rel=1e-3)  # float summation order differs
    assert ours.losses[0] == pytest.approx(min(trace), rel=1e-3)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_batch_equals_single_runs_on_the_real_network(gatys, optimizer):
    pictures = [resize(load_image(sample(name)).tensor, (32, 40)) for name in ("astronaut", "chelsea", "coffee")]
    terms = [ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1", "relu3_1"]))]
    style = compute_targets([WeightedImage(load_image(sample("the_scream")).tensor, 1.0)], gatys, terms, StyleSizing(40, None), CPU)
    # Few steps: float rounding (batched convolutions sum in another order) grows along an L-BFGS
    # trajectory, to 5e-3 after 8 steps with the paper's style weighting.
    settings = OptimizeSettings(optimizer, steps=5, lr=0.05 if optimizer == "adam" else None)

    def solve(batch: torch.Tensor) -> torch.Tensor:
        return optimize(batch, Objective(gatys, terms, content_targets(gatys, terms, batch), style), settings).image

    batched = solve(torch.stack(pictures))
    for i, picture in enumerate(pictures):
        single = solve(picture[None])
        assert torch.allclose(batched[i], single[0], atol=2e-3), (i, (batched[i] - single[0]).abs().max())


def test_out_of_memory_halves_the_batch_and_retries(tmp_path, monkeypatch, caplog):
    import yaml

    from stylepipe.config.load import load_pipeline
    from stylepipe.running import worker
    from stylepipe.running.runner import run_pipeline

    from conftest import CONTENT

    real = worker._run_chunk
    sizes: list[int] = []

    def fake_device(chunk, ctx, events):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(chunk, ctx, events)

    monkeypatch.setattr(worker, "_run_chunk", fake_device)
    pictures = tmp_path / "photos"
    pictures.mkdir()
    for i in range(4):  # four pictures of one size: one bucket of four
        (pictures / f"p{i}.jpg").write_bytes(CONTENT[1].read_bytes())
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({
        "content": [str(pictures)], "styles": [str(sample("shipwreck"))], "size": {"max_side": 32},
        "optimize": {"steps": 2, "batch_size": 4}, "cache": {"enabled": False}, "output": {"dir": str(tmp_path / "out")}}))
    with caplog.at_level(logging.WARNING, logger="stylepipe"):
        report = run_pipeline(load_pipeline(tmp_path / "pipeline.yaml"))
    assert report.count("done") == 4 and report.count("failed") == 0
    assert sizes[0] == 4 and sizes[1] == 2 and sizes.count(1) == 4
    assert "out of memory with a batch of 4" in caplog.text


def test_pyramid_sizes_and_step_split():
    pyramid = Pyramid(levels=3, factor=2.0)
    assert pyramid.sizes((256, 192)) == [(64, 48), (128, 96), (256, 192)]
    assert pyramid.split(70, 3) == [40, 20, 10]
    assert Pyramid(levels=3).sizes((40, 60)) == [(40, 60)]  # levels below 32 px are dropped
    assert Pyramid(levels=2, steps=(5, 3)).split(100, 2) == [5, 3]


def test_pyramid_ends_at_full_size_and_lowers_the_loss(gatys):
    content = resize(load_image(sample("tubingen")).tensor, (48, 64))[None]
    terms = [ContentLoss(), StyleLoss()]
    style = compute_targets([WeightedImage(load_image(sample("starry_night")).tensor, 1.0)], gatys, terms, StyleSizing(64, None), CPU)
    seen: list[tuple[int, int]] = []

    def objective_at(size):
        seen.append(size)
        scaled = torch.nn.functional.interpolate(content, size=size, mode="bicubic", antialias=True)
        return Objective(gatys, terms, content_targets(gatys, terms, scaled), style)

    steps: list[int] = []
    result = optimize_pyramid(content, objective_at, OptimizeSettings(steps=12), Pyramid(levels=2), lambda i, n, loss: steps.append(i))
    assert seen == [(24, 32), (48, 64)] or seen == [(48, 64)]  # 24 px is below the 32 px floor
    assert result.image.shape == content.shape and result.steps == 12 and steps[-1] == 12
    full = objective_at((48, 64))
    assert full.evaluate(result.image)["total"][0] < full.evaluate(content)["total"][0]


class _FakeExtractor(torch.nn.Module):
    """Features that turn NaN under autocast: simulates a half-precision overflow."""

    def forward(self, image, layers):
        bad = torch.is_autocast_enabled(image.device.type)
        return {"relu1_1": image * (float("nan") if bad else 1.0)}


class _FeatureMean(LossTerm):
    name = "feature_mean"

    @property
    def layers(self):
        return ["relu1_1"]

    def loss(self, image, features, content, style):
        return (features["relu1_1"] - 0.5).pow(2).flatten(1).mean(1)


def test_half_precision_nan_falls_back_to_float32(caplog):
    objective = Objective(_FakeExtractor(), [_FeatureMean()])
    with caplog.at_level(logging.WARNING, logger="stylepipe"):
        result = optimize(torch.rand(2, 3, 8, 8), objective, OptimizeSettings("adam", steps=5, lr=0.1, precision="bf16"))
    assert not any(result.diverged) and all(torch.isfinite(torch.tensor(result.losses)))
    assert "redoing this batch in float32" in caplog.text


def test_bf16_autocast_runs_on_the_real_network(gatys):
    content = resize(load_image(sample("coffee")).tensor, (32, 48))[None]
    terms = [ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1"]))]
    style = compute_targets([WeightedImage(load_image(sample("shipwreck")).tensor, 1.0)], gatys, terms, StyleSizing(48, None), CPU)
    objective = Objective(gatys, terms, content_targets(gatys, terms, content), style)
    result = optimize(content, objective, OptimizeSettings(steps=4, precision="bf16"))
    assert torch.isfinite(result.image).all() and result.history[-1] <= result.history[0]
