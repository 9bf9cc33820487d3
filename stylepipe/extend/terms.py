"""Loss terms with validated parameters: the built-in content, style and TV terms and the
`LossTerm` base class that plugins subclass. The formulas themselves are tensor functions in
`stylepipe.core.loss_fns` (re-exported here and through `stylepipe.losses`, so plugins can keep
importing them from there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import ConfigError
from ..core.loss_fns import (
    Features,
    Side,
    TensorDict,
    TileSafeTerm,
    content_loss,
    gram,
    gram_distance,
    gram_error,
    gram_sums,
    normalised_gram,
    per_image_mse,
    style_loss,
    tv_loss,
)
from ..core.network import check_layers

__all__ = [
    "BUILTIN_TERMS", "ContentLoss", "ContentParams", "Features", "LayeredParams", "LayeredTerm", "LossTerm", "Side",
    "StyleLoss", "StyleParams", "TVParams", "TensorDict", "TermParams", "TileSafeTerm", "TotalVariation", "content_loss", "gram",
    "gram_distance", "layer_list", "per_image_mse", "style_loss", "tv_loss",
]


def layer_list(value: list[str]) -> list[str]:
    """The body of every pydantic validator of a layer list: non-empty, each a known tap."""
    if not value:
        raise ValueError("at least one layer is needed")
    try:
        check_layers(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


# --- the LossTerm protocol -------------------------------------------------------------------


class TermParams(BaseModel):
    """Parameters shared by every loss term; plugins subclass this for their own."""

    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0, description="multiplier of this term in the total loss")


class LossTerm:
    """A term of the objective. Subclass it (or duck-type it) and register it with @register_loss.

    A term says which VGG taps it reads (`layers`), which side it matches (`side`: "content",
    "style" or "image" for regularisers), how to turn a style image's or content image's
    features into targets (cached for style), and how to score a batch against those targets.
    """

    name: ClassVar[str] = "term"
    version: ClassVar[int] = 1
    side: ClassVar[Side] = "image"
    Params: ClassVar[type[TermParams]] = TermParams

    def __init__(self, params: TermParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @property
    def weight(self) -> float:
        return float(self.params.weight)

    @property
    def layers(self) -> Sequence[str]:
        return ()

    def style_targets(self, features: Features) -> TensorDict:
        """Statistics of one style image (batch of 1) that `loss` compares against; cached."""
        return {}

    def content_targets(self, features: Features) -> TensorDict:
        """Statistics of the content images (batched) that `loss` compares against."""
        return {}

    def loss(self, image: torch.Tensor, features: Features, content: Features, style: Features) -> torch.Tensor:
        """Per-image loss, shape (B,)."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything about this term that changes its style targets (part of the cache key)."""
        params = self.params.model_dump(mode="json", exclude={"weight"})
        return {"term": self.name, "version": self.version, "params": params}


def _weights_for(layers: Sequence[str], layer_weights: Mapping[str, float]) -> dict[str, float]:
    """Per-layer weights, defaulting to 1 (an unweighted mean)."""
    return {layer: float(layer_weights.get(layer, 1.0)) for layer in layers}


class LayeredParams(TermParams):
    """A term that reads several layers, each with an optional weight."""

    layers: list[str]
    layer_weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("layers")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        return layer_list(value)


class ContentParams(LayeredParams):
    layers: list[str] = Field(default_factory=lambda: ["relu4_2"])


class StyleParams(LayeredParams):
    layers: list[str] = Field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    weight: float = Field(200.0, ge=0)  # with content weight 1: chosen by the sweep in docs/quality.md


class TVParams(TermParams):
    weight: float = Field(10.0, ge=0)  # removes isolated dots at no measurable cost in style (docs/quality.md)


class LayeredTerm(LossTerm):
    """A term whose parameters are LayeredParams: it reads `params.layers`, weighted per layer."""

    params: LayeredParams

    @property
    def layers(self) -> Sequence[str]:
        return self.params.layers

    @property
    def layer_weights(self) -> dict[str, float]:
        return _weights_for(self.layers, self.params.layer_weights)


class ContentLoss(LayeredTerm):
    """Keep the content photo's arrangement: feature MSE at deep layers."""

    name = "content"
    side = "content"
    Params = ContentParams

    def content_targets(self, features: Features) -> TensorDict:
        return {layer: features[layer].detach() for layer in self.layers}

    def loss(self, image, features, content, style):
        return content_loss(features, content, self.layer_weights)

    # tiling (TileSafeTerm): the MSE is a sum of squared differences over positions
    def tile_statistics(self, features: Features, content: Features) -> TensorDict:
        """Σ (F − P)² over the tile's positions, per image and channel: (B, C) per layer."""
        return {layer: (features[layer] - content[layer]).pow(2).sum(dim=(2, 3)) for layer in self.layers}

    def loss_from_statistics(self, stats: Features, positions: Mapping[str, int], style: Features) -> torch.Tensor:
        """The weighted mean of per-layer MSEs: each sum over C channels × M positions."""
        weights = self.layer_weights
        total = sum(weights.values())
        return cast(torch.Tensor, sum(w * stats[l].mean(dim=1) / positions[l] for l, w in weights.items()) / total)


class StyleLoss(LayeredTerm):
    """Match the style's Gram matrices: its textures, colours and strokes, not its layout."""

    name = "style"
    version = 2  # v2: the paper's summed E_l (v1 averaged the Gram entries)
    side = "style"
    Params = StyleParams

    def fingerprint(self) -> dict[str, Any]:
        # Layer weights only scale the loss; the Gram targets depend on the layers alone.
        return {"term": self.name, "version": self.version, "layers": list(self.layers)}

    def style_targets(self, features: Features) -> TensorDict:
        return {layer: gram(features[layer]).detach()[0] for layer in self.layers}

    def loss(self, image, features, content, style):
        return style_loss(features, style, self.layer_weights)

    # tiling (TileSafeTerm): a Gram matrix is a sum of outer products over positions
    def tile_statistics(self, features: Features, content: Features) -> TensorDict:
        """Σ F Fᵀ over the tile's positions, per image: (B, C, C) per layer (gram() before normalising)."""
        return {layer: gram_sums(features[layer]) for layer in self.layers}

    def loss_from_statistics(self, stats: Features, positions: Mapping[str, int], style: Features) -> torch.Tensor:
        """The weighted mean of E_l, with gram = Σ F Fᵀ / (C·M) as in `gram`."""
        weights = self.layer_weights
        total = sum(weights.values())
        errors = {l: gram_error(normalised_gram(stats[l], positions[l]), style[l]) for l in weights}
        return cast(torch.Tensor, sum(w * errors[l] for l, w in weights.items()) / total)

    def targets_from_statistics(self, stats: Features, positions: Mapping[str, int]) -> TensorDict:
        """`style_targets` from a style picture's summed statistics (batch of one): its Gram matrices."""
        return {layer: normalised_gram(stats[layer], positions[layer])[0] for layer in self.layers}


class TotalVariation(LossTerm):
    """Optional smoothness regulariser on the pixels themselves."""

    name = "tv"
    side = "image"
    Params = TVParams

    def loss(self, image, features, content, style):
        return tv_loss(image)


BUILTIN_TERMS: tuple[type[LossTerm], ...] = (ContentLoss, StyleLoss, TotalVariation)
