"""Tiled evaluation (stylepipe.tiling) against the whole-picture pass, on the real network.

The tolerance, float32 throughout: a gradient agrees when max |g_tiled − g| / max |g| < 1e-4,
a loss value when its relative difference is below 1e-5 (measured: a few 1e-7 for both). The
pictures are 264 × 200 px, a batch of two photos with noise; neither side is a multiple of the
160 px core nor of the 16 px alignment, so there are 2 × 2 tiles, none of which sees the whole
picture, the last column's core only 40 px wide (2.5 relu5_1 positions: a partial pooling window
at the border). A halo below the derived one is shown to fail the same comparison.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.core.errors import TilingError
from stylepipe.core.geometry import resize
from stylepipe.core.network import FeatureExtractor
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, optimize
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.core.tile_geometry import Span, TilePlan, footprint
from stylepipe.core.tiling import Tiling, check_tile_safe, estimate_peak_bytes
from stylepipe.core.tiling import content_targets as tiled_content_targets
from stylepipe.extend.plugins import load_plugin_file
from stylepipe.extend.registries import LOSSES
from stylepipe.extend.terms import ContentLoss, LossTerm, StyleLoss, TotalVariation
from stylepipe.io.images import load_image
from stylepipe.report.history import LossHistory, RecordingObjective

from conftest import CONTENT, ROOT, sample

CPU = torch.device("cpu")
SIZE = (264, 200)
TILING = Tiling(core=160)
GRAD_TOL = 1e-4
LOSS_TOL = 1e-5
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two content photos, (2, 3, 264, 200)."""
    return torch.stack([resize(load_image(path).tensor, SIZE) for path in CONTENT[:2]])


@pytest.fixture(scope="module")
def image(photos: torch.Tensor) -> torch.Tensor:
    """What is being optimised: the photos with noise, so the content loss is not zero."""
    noise = torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    return (photos + 0.1 * noise).clamp(0.0, 1.0)


def _style(net: FeatureExtractor, terms: list[LossTerm]) -> dict:
    return compute_targets([WeightedImage(load_image(sample("starry_night")).tensor, 1.0)], net, terms,
                           StyleSizing(128, None), CPU)


def _value_and_grad(objective: Objective, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-term parts and the gradient of the batch's summed weighted total, as optimize computes it."""
    pixels = image.clone().requires_grad_(True)
    parts = objective.parts(pixels)
    objective.total(parts).sum().backward()
    assert pixels.grad is not None
    return {name: value.detach() for name, value in parts.items()}, pixels.grad


def _grad_error(tiled: torch.Tensor, whole: torch.Tensor) -> float:
    return ((tiled - whole).abs().max() / whole.abs().max()).item()


Whole = dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]


@pytest.fixture(scope="module")
def wholes() -> Whole:
    """case → the whole picture's parts and gradient, computed once per case."""
    return {}


def _compare(wholes: Whole, case: str, net: FeatureExtractor, terms: list[LossTerm], image: torch.Tensor, photos: torch.Tensor,
             tiling: Tiling = TILING) -> tuple[float, float]:
    """(max relative loss difference, relative gradient error) of tiled against whole."""
    style = _style(net, terms)
    if case not in wholes:
        wholes[case] = _value_and_grad(Objective(net, terms, content_targets(net, terms, photos), style), image)
    whole_parts, whole_grad = wholes[case]
    tiled = Objective(net, terms, tiled_content_targets(net, terms, photos, tiling), style, tiling=tiling)
    tiled_parts, tiled_grad = _value_and_grad(tiled, image)
    assert list(tiled_parts) == list(whole_parts)
    loss_error = max(((tiled_parts[n] - whole_parts[n]).abs() / whole_parts[n].abs()).max().item() for n in whole_parts)
    return loss_error, _grad_error(tiled_grad, whole_grad)


# --- exactness ------------------------------------------------------------------------------------


CASES = {
    "content": lambda: [ContentLoss()],
    "style": lambda: [StyleLoss()],
    "tv": lambda: [TotalVariation()],
    "default": lambda: [ContentLoss(), StyleLoss(), TotalVariation()],
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiled_loss_and_gradient_equal_the_whole_pictures(case: str, gatys, image, photos, wholes) -> None:
    loss_error, grad_error = _compare(wholes, case, gatys, CASES[case](), image, photos)
    print(f"{case}: loss {loss_error:.1e}, gradient {grad_error:.1e}")
    assert loss_error < LOSS_TOL
    assert grad_error < GRAD_TOL


def test_tiled_mean_std_plugin_equals_the_whole_pictures(gatys, image, photos, wholes, forget_plugins) -> None:
    load_plugin_file(ROOT / "plugins" / "mean_std_loss.py")
    loss_error, grad_error = _compare(wholes, "mean_std", gatys, [LOSSES.get("mean_std")()], image, photos)
    print(f"mean_std: loss {loss_error:.1e}, gradient {grad_error:.1e}")
    assert loss_error < LOSS_TOL
    assert grad_error < GRAD_TOL


def test_a_halo_below_the_reach_is_not_exact(gatys, image, photos, wholes) -> None:
    # relu5_1 reads 70 px beyond its own pixels; the derived halo is 80. At 48 px the same
    # comparison fails by more than ten times the tolerance: the agreement above is not vacuous.
    _, grad_error = _compare(wholes, "style", gatys, [StyleLoss()], image, photos, Tiling(core=160, halo=48, inexact=True))
    print(f"halo 48: gradient {grad_error:.1e}")
    assert grad_error > 10 * GRAD_TOL
    with pytest.raises(TilingError, match="halo of 48 px is below the 70 px that relu5_1 reads"):
        Objective(gatys, [StyleLoss()], {}, {}, tiling=Tiling(core=160, halo=48)).parts(image)


def test_tiled_content_targets_equal_the_whole_pictures(gatys, photos) -> None:
    terms: list[LossTerm] = [ContentLoss(ContentLoss.Params(layers=["relu2_2", "relu4_2"]))]
    whole = content_targets(gatys, terms, photos)["content"]
    tiled = tiled_content_targets(gatys, terms, photos, Tiling(core=64))["content"]
    for layer in ("relu2_2", "relu4_2"):
        assert tiled[layer].shape == whole[layer].shape
        assert _grad_error(tiled[layer], whole[layer]) < GRAD_TOL


def test_optimize_with_a_tiled_objective_gives_the_same_picture(gatys, image, photos) -> None:
    terms: list[LossTerm] = [ContentLoss(), StyleLoss(), TotalVariation()]
    style = _style(gatys, terms)
    settings = OptimizeSettings("lbfgs", steps=3)
    whole = optimize(image, Objective(gatys, terms, content_targets(gatys, terms, photos), style), settings)
    history = LossHistory(3, {term.name: term.weight for term in terms})
    recording = RecordingObjective(gatys, terms, tiled_content_targets(gatys, terms, photos, TILING), style,
                                   tiling=TILING, history=history)
    tiled = optimize(image, recording, settings, history.on_step)
    assert tiled.steps == whole.steps == 3
    # As tests/test_lbfgs.py allows: L-BFGS's third step (the loss −30 %) amplifies 1e-7 gradient
    # differences to at most 2e-4 in a few hundred of 316 800 values (measured); the mean stays ~5e-7.
    difference = (tiled.image - whole.image).abs()
    assert difference.max().item() < 1e-3 and difference.mean().item() < 1e-5
    assert (whole.image - image).abs().max().item() > 0.01  # it moved: not a comparison of two no-ops
    assert tiled.losses == pytest.approx(whole.losses, rel=LOSS_TOL)
    curves = history.curves()  # RecordingObjective saw every tiled evaluation's parts
    assert len(curves) == 2 and curves[0]["step"] == [1, 2, 3]
    assert {"content", "style", "tv", "total"} <= set(curves[0])


# --- refusal ---------------------------------------------------------------------------------------


class EdgeEnergy(LossTerm):
    """A network term without the tiling protocol: its loss is a mean, not a sum over positions."""

    name = "edges"

    @property
    def layers(self) -> list[str]:
        return ["relu2_1"]

    def loss(self, image, features, content, style):
        return features["relu2_1"].flatten(1).mean(dim=1)


def test_a_term_without_the_protocol_is_refused_by_name(gatys, image) -> None:
    objective = Objective(gatys, [StyleLoss(), EdgeEnergy()], {}, {}, tiling=TILING)
    with pytest.raises(TilingError, match=r"loss term 'edges' .*must implement it to be used with tiling") as raised:
        objective.parts(image)
    assert "TileSafeTerm" in str(raised.value) and exit_code_for(raised.value) == 2
    check_tile_safe([ContentLoss(), StyleLoss(), TotalVariation()])  # the built-ins are tile-safe


def test_content_targets_of_another_size_are_refused(gatys, image, photos) -> None:
    terms: list[LossTerm] = [ContentLoss()]
    small = content_targets(gatys, terms, photos[..., :128, :128])
    with pytest.raises(TilingError, match="content target 'relu4_2'"):
        Objective(gatys, terms, small, {}, tiling=TILING).parts(image)


# --- geometry --------------------------------------------------------------------------------------


def test_footprint_is_derived_from_the_network(gatys) -> None:
    deep = footprint(gatys, STYLE_LAYERS)
    assert dict(deep.strides) == {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8, "relu5_1": 16}
    assert (deep.receptive_field, deep.reach, deep.align, deep.halo) == (156, 70, 16, 80)
    content = footprint(gatys, ["relu4_2"])
    assert (content.receptive_field, content.reach, content.align, content.halo) == (84, 38, 8, 40)


@pytest.mark.parametrize("size", [(37, 53), (17, 100), (64, 31)])
def test_feature_lengths_match_the_network(gatys, size: tuple[int, int]) -> None:
    fp = footprint(gatys, STYLE_LAYERS + ["pool5"])
    with torch.no_grad():
        features = gatys(torch.rand(1, 3, *size), STYLE_LAYERS + ["pool5"])
    for layer, value in features.items():
        assert tuple(value.shape[-2:]) == (fp.length(layer, size[0]), fp.length(layer, size[1])), layer


def _owners(plan: TilePlan) -> Iterator[torch.Tensor]:
    for tile in plan.tiles:
        mask = torch.zeros(plan.size, dtype=torch.int32)
        mask[tile.core[0].slice, tile.core[1].slice] = 1
        yield mask


@pytest.mark.parametrize(("size", "core", "tiles"), [((264, 200), 160, 4), ((264, 200), 128, 6), ((1000, 77), 300, 4),
                                                    ((40, 50), 512, 1)])
def test_cores_partition_the_picture_and_halos_stop_at_its_border(size, core: int, tiles: int) -> None:
    plan = TilePlan.build(size, core, halo=70, align=16)
    assert len(plan) == tiles and plan.halo == 80 and plan.core % 16 == 0
    assert torch.equal(sum(_owners(plan)), torch.ones(size, dtype=torch.int32))  # each pixel in exactly one core
    for tile in plan.tiles:
        for core_span, region, length in zip(tile.core, tile.region, size):
            assert region == Span(max(0, core_span.start - 80), min(length, core_span.stop + 80))
            assert region.start % 16 == 0 and core_span.start % 16 == 0


def test_core_side_is_rounded_to_the_alignment() -> None:
    assert TilePlan.build((500, 500), 100, 0, 16).core == 96
    assert TilePlan.build((500, 500), 1, 0, 16).core == 16


def test_tiling_bounds_the_estimated_peak(gatys) -> None:
    whole = estimate_peak_bytes(gatys, (4096, 4096), STYLE_LAYERS)
    tiled = estimate_peak_bytes(gatys, (4096, 4096), STYLE_LAYERS, tiling=Tiling(512))
    assert whole > 10 * tiled
    assert estimate_peak_bytes(gatys, (2048, 2048), STYLE_LAYERS, batch=2) == 8 * estimate_peak_bytes(gatys, (1024, 1024), STYLE_LAYERS)
