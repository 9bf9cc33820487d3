"""Tiled evaluation: the exact loss and gradient of the whole picture, with the network run on tiles.

Why: a whole-picture pass keeps every VGG activation for the backward pass, so memory grows with
the pixel count (about 3 KB a pixel up to relu5_1 in float32, measured on the CPU: 12 GB at
2048 px, 48 GB at 4096 px, before the optimiser's own state). Every built-in
network term depends on the whole picture only through sums over positions (a Gram matrix is
Σ F Fᵀ, an MSE is Σ (F − P)²), and such a loss and its gradient can be had tile by tile:

1. Statistics (no autograd): run the network on each tile, add up each term's per-image sums S
   over the positions the tile owns (its *core*), and take the loss L = f(S).
2. Gradient: dL/dS from f alone (S is small), then for each tile a forward + backward pass of the
   surrogate Σ <dL/dS, s(tile)>, whose gradient is the tile's share of dL/dimage; it is added
   into the whole picture's gradient over the tile's whole region, halo included.

This is exact when each tile's features at its core equal the whole picture's there, which holds
when (a) the tile carries a *halo* at least the taps' reach (how far a position's receptive field
extends beyond the pixels it sits on; 70 px for relu5_1 of VGG19) and (b) tile origins are
multiples of the taps' stride (16 for relu5_x), so the pooling grids line up. At the picture's
border a tile ends where the picture does, so the network's own padding is the same. Both numbers
are derived from the network's layers (`footprint`). Memory is then that of the largest tile plus
a few whole-picture tensors (image, gradient, content targets), and compute is about 4/3 of a
whole-picture pass (pass 1 is one more forward) times the tiles' regions over the picture's area
(1.7 at core 512 with relu5_1's 80 px halo, far from the borders).

A term opts in by implementing `stylepipe.losses.TileSafeTerm`; terms without layers (total
variation) are evaluated on the whole image directly. Tiling plugs into `objective.Objective` as
its `tiling` field: a strategy rather than an Objective subclass, so every Objective, including
`report.history.RecordingObjective`, can be tiled without a class per combination, and `optimize`,
`optimize_pyramid` and `Objective.evaluate` work unchanged. The two passes are a
`torch.autograd.Function`: its forward is pass 1 (all an `evaluate` under no_grad costs), its
backward is pass 2 with the incoming per-term weights, so it is an ordinary differentiable
function of the image, whatever the caller does with its parts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .errors import TilingError
from .loss_fns import Features, Targets, TensorDict, Term, TileSafeTerm
from .memory import network_bytes
from .network import TAPS, FeatureExtractor, deepest
from .objective import CONTENT_PIXELS
from .tile_geometry import Footprint, Tile, TilePlan, core_at, footprint

__all__ = ["DEFAULT_CORE", "Tiling", "check_tile_safe", "content_targets", "estimate_peak_bytes", "style_targets"]

if TYPE_CHECKING:  # a type name only: the objective hands itself to its Tiler
    from .objective import Objective

#: The default core side in pixels: with relu5_1's 80 px halo a tile region is at most 672 px.
DEFAULT_CORE = 512


# --- the protocol check ------------------------------------------------------------------------------


def check_tile_safe(terms: Sequence[Term]) -> None:
    """Refuse, naming it, a network term that cannot be evaluated tile by tile."""
    for term in terms:
        if term.layers and not isinstance(term, TileSafeTerm):
            kind = type(term)
            raise TilingError(
                f"loss term {term.name!r} ({kind.__module__}.{kind.__qualname__}) reads VGG layers "
                f"({', '.join(term.layers)}) but does not implement the tiling protocol "
                "stylepipe.losses.TileSafeTerm (tile_statistics and loss_from_statistics), so it cannot be "
                "evaluated tile by tile; a plugin term must implement it to be used with tiling, or turn tiling off"
            )


def _layer_of(key: str, term: Term) -> str:
    """The layer a content target lives on: its key, or the key's part before the first dot."""
    layer = key if key in term.layers else key.split(".", 1)[0]
    if layer not in term.layers:
        raise TilingError(f"loss term {term.name!r}: content target {key!r} names none of its layers "
                          f"({', '.join(term.layers)}); tiled content targets are keyed 'layer' or 'layer.suffix'")
    return layer


# --- the engine ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tiling:
    """Evaluate an Objective tile by tile: set it as `Objective.tiling`.

    `core` is the side of the pixels each tile owns (rounded to the alignment); `halo` defaults to
    the exact one from `footprint`. A halo below the taps' reach gives wrong gradients near tile
    edges, so it is refused unless `inexact` says that is the point (experiments, tests).
    """

    core: int = DEFAULT_CORE
    halo: int | None = None
    inexact: bool = False

    def plan(self, extractor: FeatureExtractor, layers: Sequence[str], size: tuple[int, int]) -> tuple[TilePlan, Footprint]:
        """The tiles of a picture of `size` for a network read at `layers`."""
        fp = footprint(extractor, layers)
        halo = fp.halo if self.halo is None else self.halo
        if halo < fp.reach and not self.inexact:
            raise TilingError(f"a tiling halo of {halo} px is below the {fp.reach} px that {deepest(layers)} reads "
                              "beyond its own pixels: the loss and gradient would not be exact; leave the halo unset")
        return TilePlan.build(size, self.core, halo, fp.align), fp

    def parts(self, objective: Objective, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """`Objective.parts`, tile by tile: the same values and (through autograd) gradients."""
        network = [term for term in objective.terms if term.layers]
        check_tile_safe(network)
        values: dict[str, torch.Tensor] = {}
        if network:
            if objective.extractor is None:
                raise TilingError("terms with layers need a network; the objective has none")
            layers = sorted({layer for term in network for layer in term.layers})
            plan, fp = self.plan(objective.extractor, layers, (image.shape[-2], image.shape[-1]))
            evaluation = _Evaluation(objective, network, plan, fp)
            stacked = _TiledTerms.apply(image, evaluation)
            values = dict(zip((term.name for term in network), stacked.unbind(0)))
        return {
            term.name: values[term.name] if term.layers
            else term.loss(image, {}, objective.content.get(term.name, {}), objective.style.get(term.name, {}))
            for term in objective.terms
        }


class _TiledTerms(torch.autograd.Function):
    """Per-term, per-image values (T, B) of the network terms: forward is pass 1, backward pass 2."""

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, evaluation: _Evaluation) -> torch.Tensor:
        ctx.evaluation = evaluation
        ctx.save_for_backward(image)
        return evaluation.statistics(image)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, weights: torch.Tensor) -> tuple[torch.Tensor, None]:
        (image,) = ctx.saved_tensors
        return ctx.evaluation.gradient(image, weights), None


class _Evaluation:
    """One tiled evaluation of an objective's network terms on one batch: the two passes."""

    def __init__(self, objective: Objective, terms: Sequence[Term], plan: TilePlan, fp: Footprint) -> None:
        assert objective.extractor is not None
        self.objective = objective
        self.extractor = objective.extractor
        self.terms = terms
        self.plan = plan
        self.fp = fp
        self.layers = sorted({layer for term in terms for layer in term.layers})
        self.sums: list[TensorDict] = []
        self.positions: dict[str, int] = {}
        self._check_content()

    def _check_content(self) -> None:
        """Content targets must be whole-picture maps of this size, or every tile reads garbage."""
        height, width = self.plan.size
        for term in self.terms:
            for key, value in self.objective.content.get(term.name, {}).items():
                layer = _layer_of(key, term)
                expected = (self.fp.length(layer, height), self.fp.length(layer, width))
                if tuple(value.shape[-2:]) != expected:
                    raise TilingError(f"loss term {term.name!r}: content target {key!r} is {tuple(value.shape[-2:])} "
                                      f"positions, expected {expected} at {layer} for a {height}×{width} picture")

    def _features(self, pixels: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
        """The tile's float32 features at its core (pixels: the tile's region of the batch)."""
        with self.objective.autocast(pixels):
            features = self.extractor(pixels, self.layers)
        cores = {layer: core_at(tile, self.plan, self.fp, layer)[0] for layer in self.layers}
        return {layer: value.float()[..., cores[layer][0], cores[layer][1]] for layer, value in features.items()}

    def _content(self, term: Term, tile: Tile) -> TensorDict:
        """The term's content targets cropped to the tile's core."""
        cropped = {}
        for key, value in self.objective.content.get(term.name, {}).items():
            rows, cols = core_at(tile, self.plan, self.fp, _layer_of(key, term))[1]
            cropped[key] = value[..., rows, cols]
        return cropped

    def _statistics(self, term: Term, features: Features, tile: Tile) -> TensorDict:
        assert isinstance(term, TileSafeTerm)  # check_tile_safe ran
        return term.tile_statistics({layer: features[layer] for layer in term.layers}, self._content(term, tile))

    def _regions(self, image: torch.Tensor) -> Iterator[tuple[Tile, torch.Tensor]]:
        for tile in self.plan.tiles:
            rows, cols = tile.region
            yield tile, image[..., rows.slice, cols.slice].contiguous()  # a strided view is a slow conv input

    def _losses(self, sums: Sequence[TensorDict]) -> torch.Tensor:
        """(T, B): each term's loss from the whole picture's sums."""
        values = []
        for term, stats in zip(self.terms, sums):
            assert isinstance(term, TileSafeTerm)
            values.append(term.loss_from_statistics(stats, self.positions, self.objective.style.get(term.name, {})))
        return torch.stack(values)

    def statistics(self, image: torch.Tensor) -> torch.Tensor:
        """Pass 1, without autograd: whole-picture sums over the tiles' cores, then the losses."""
        sums: list[TensorDict] = [{} for _ in self.terms]
        positions = dict.fromkeys(self.layers, 0)
        with torch.no_grad():
            for tile, pixels in self._regions(image):
                features = self._features(pixels, tile)
                for layer, value in features.items():
                    positions[layer] += value.shape[-2] * value.shape[-1]
                for acc, term in zip(sums, self.terms):
                    for key, value in self._statistics(term, features, tile).items():
                        acc[key] = acc[key] + value if key in acc else value
            self.sums, self.positions = sums, positions
            return self._losses(sums)

    def _coefficients(self, weights: torch.Tensor) -> list[TensorDict]:
        """d(Σ weights · losses)/dS for every statistic, from the stored sums (cheap: S is small);
        `weights` (T, B) is what the caller's backward sends: term weights, finite-image masks."""
        leaves = [{key: value.detach().requires_grad_(True) for key, value in stats.items()} for stats in self.sums]
        with torch.enable_grad():
            total = (self._losses(leaves) * weights).sum()
        coefficients: list[TensorDict] = [{} for _ in leaves]
        if not total.requires_grad:  # no term reads its statistics
            return coefficients
        keys = [(i, key) for i, stats in enumerate(leaves) for key in stats]
        grads = torch.autograd.grad(total, [leaves[i][key] for i, key in keys], allow_unused=True)
        for (i, key), grad in zip(keys, grads):
            if grad is not None:
                coefficients[i][key] = grad
        return coefficients

    def gradient(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Pass 2: per tile, backward of Σ <dL/dS, tile statistics>, added into the whole gradient
        over the tile's region: its core and its halo, which other tiles' cores also read."""
        coefficients = self._coefficients(weights)
        grad = torch.zeros_like(image)
        for tile, pixels in self._regions(image.detach()):
            pixels = pixels.detach().requires_grad_(True)  # a leaf of its own: its grad is this tile's share
            surrogate = torch.zeros((), device=image.device)
            with torch.enable_grad():
                features = self._features(pixels, tile)
                for term, wanted in zip(self.terms, coefficients):
                    for key, value in self._statistics(term, features, tile).items():
                        if key in wanted:
                            surrogate = surrogate + (wanted[key] * value).sum()
            if surrogate.requires_grad:
                (tile_grad,) = torch.autograd.grad(surrogate, pixels)
                rows, cols = tile.region
                grad[..., rows.slice, cols.slice] += tile_grad
        return grad


# --- content targets, tile by tile -------------------------------------------------------------------


@torch.no_grad()
def content_targets(extractor: FeatureExtractor, terms: Sequence[Term], content: torch.Tensor,
                    tiling: Tiling) -> Targets:
    """`objective.content_targets` without the whole picture's activations: the same full-size maps,
    each tile writing the positions it owns. A term without layers reads only the whole pictures."""
    pixels = {CONTENT_PIXELS: content}
    pixel_targets: Targets = {term.name: term.content_targets(pixels) for term in terms
                              if term.side == "content" and not term.layers}
    content_terms = [term for term in terms if term.side == "content" and term.layers]
    if not content_terms:
        return pixel_targets
    check_tile_safe(content_terms)
    layers = sorted({layer for term in content_terms for layer in term.layers})
    plan, fp = tiling.plan(extractor, layers, (content.shape[-2], content.shape[-1]))
    targets: Targets = {term.name: {} for term in content_terms}
    for tile in plan.tiles:
        rows, cols = tile.region
        features = extractor(content[..., rows.slice, cols.slice].contiguous(), layers)
        cores = {layer: core_at(tile, plan, fp, layer) for layer in layers}
        owned = {layer: value[..., cores[layer][0][0], cores[layer][0][1]] for layer, value in features.items()}
        for term in content_terms:
            for key, piece in term.content_targets(owned).items():
                layer = _layer_of(key, term)
                whole = targets[term.name].get(key)
                if whole is None:
                    shape = (*piece.shape[:-2], fp.length(layer, plan.size[0]), fp.length(layer, plan.size[1]))
                    whole = targets[term.name][key] = piece.new_empty(shape)
                where = cores[layer][1]
                whole[..., where[0], where[1]] = piece
    return targets | pixel_targets


@torch.no_grad()
def style_targets(extractor: FeatureExtractor, terms: Sequence[Term], image: torch.Tensor, tiling: Tiling) -> Targets:
    """The style-side terms' targets of one picture (a batch of one), tile by tile: a style picture
    scaled to a print size would otherwise need its whole forward pass at once. Each term adds up
    its `tile_statistics` over the tiles' cores and turns the sums into its targets with
    `targets_from_statistics`; the result equals `term.style_targets` of the whole picture."""
    style_terms = [term for term in terms if term.side == "style" and term.layers]
    check_tile_safe(style_terms)
    for term in style_terms:
        if not callable(getattr(term, "targets_from_statistics", None)):
            raise TilingError(f"loss term {term.name!r} cannot compute its style targets tile by tile: it has no "
                              "targets_from_statistics (see stylepipe.core.loss_fns.TileSafeTerm)")
    if not style_terms:
        return {}
    layers = sorted({layer for term in style_terms for layer in term.layers})
    plan, fp = tiling.plan(extractor, layers, (image.shape[-2], image.shape[-1]))
    sums: list[TensorDict] = [{} for _ in style_terms]
    positions = dict.fromkeys(layers, 0)
    for tile in plan.tiles:
        rows, cols = tile.region
        features = extractor(image[..., rows.slice, cols.slice].contiguous(), layers)
        owned = {}
        for layer, value in features.items():
            core = core_at(tile, plan, fp, layer)[0]
            owned[layer] = value.float()[..., core[0], core[1]]
            positions[layer] += owned[layer].shape[-2] * owned[layer].shape[-1]
        for acc, term in zip(sums, style_terms):
            assert isinstance(term, TileSafeTerm)
            for key, value in term.tile_statistics({layer: owned[layer] for layer in term.layers}, {}).items():
                acc[key] = acc[key] + value if key in acc else value
    return {term.name: term.targets_from_statistics(stats, positions)  # type: ignore[attr-defined]
            for term, stats in zip(style_terms, sums)}


# --- memory -------------------------------------------------------------------------------------------


def _activation_values(extractor: FeatureExtractor, layers: Sequence[str], size: tuple[int, int]) -> int:
    """Values of every trunk output up to the deepest of `layers`, for one image of `size`."""
    taps = TAPS[: TAPS.index(deepest(layers)) + 1]
    fp = footprint(extractor, taps)
    total, channels = 0, 3
    for name, module in zip(taps, extractor.trunk.layers):
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        total += channels * fp.length(name, size[0]) * fp.length(name, size[1])
    return total


def estimate_peak_bytes(extractor: FeatureExtractor, size: tuple[int, int], layers: Sequence[str], batch: int = 1,
                        tiling: Tiling | None = None, precision: str = "fp32", device_type: str = "cpu") -> int:
    """Peak memory of one evaluation (forward + backward) of a batch, untiled or tiled, so that a
    caller can decide whether to tile (e.g. `size.tile: auto`) and how large.

    The values of the trunk's outputs over the region the network sees (the whole picture, or the
    largest tile region) × batch, in bytes per value of the one memory model
    (`core.memory.network_bytes`, per precision and device); tiling adds the whole-picture gradient
    and its region copies. Not counted (the same either way, or the caller's): the network's
    weights, content and style targets, the optimiser's state (`running.budget.plan_memory` adds them).
    """
    height, width = size
    if tiling is None:
        return network_bytes(batch * _activation_values(extractor, layers, size), precision, device_type)
    plan, _ = tiling.plan(extractor, layers, size)
    tallest = max(region.stop - region.start for _, region in plan.rows)
    widest = max(region.stop - region.start for _, region in plan.cols)
    tile_bytes = network_bytes(batch * _activation_values(extractor, layers, (tallest, widest)), precision, device_type,
                               tiled=True)
    return tile_bytes + 2 * 4 * batch * 3 * height * width
