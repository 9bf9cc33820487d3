"""The reconstruction sweep of the paper's Figure 1: what each layer of the network keeps.

Content is rebuilt from one layer at a time (conv1_1, then conv2_1, …): low layers keep the
exact pixels, high layers only the arrangement. Style is rebuilt from a growing set of layers
(conv1_1, then conv1_1 + conv2_1, …): each added layer brings larger structures of the texture.
Each step is a set of ordinary loss terms; the plan gives every reconstruction job its step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..extend.terms import ContentLoss, ContentParams, LossTerm, StyleLoss, StyleParams

Side = Literal["content", "style"]


@dataclass(frozen=True)
class SweepStep:
    """One reconstruction: which side, from which layers, with which terms."""

    side: Side
    layers: tuple[str, ...]
    terms: tuple[LossTerm, ...]

    @property
    def label(self) -> str:
        """`conv3_1` or `conv1_1+conv2_1`: the `{layers}` field of output names."""
        return "+".join(self.layers)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """Jobs with the same key share their terms and can be batched together."""
        return (self.side, self.layers)


def sweep_layer_sets(side: Side, layers: Sequence[str]) -> list[tuple[str, ...]]:
    """Content: each layer alone; style: each prefix of the list (the paper's Figure 1)."""
    if side == "content":
        return [(layer,) for layer in layers]
    return [tuple(layers[: i + 1]) for i in range(len(layers))]


def sweep_steps(side: Side, layers: Sequence[str], weight: float, image_terms: Sequence[LossTerm]) -> list[SweepStep]:
    """The steps of one side's sweep; `image_terms` (total variation) join every step."""
    steps = []
    for subset in sweep_layer_sets(side, layers):
        term: LossTerm = (ContentLoss(ContentParams(layers=list(subset), weight=weight)) if side == "content"
                          else StyleLoss(StyleParams(layers=list(subset), weight=weight)))
        steps.append(SweepStep(side, subset, (term, *image_terms)))
    return steps


def union_terms(sides: Sequence[Side], layers: Sequence[str], weights: dict[str, float],
                image_terms: Sequence[LossTerm]) -> list[LossTerm]:
    """One term per side over every sweep layer: the style targets are computed (and cached)
    once for all steps, and the plan's settings hash covers the whole sweep."""
    terms: list[LossTerm] = []
    if "content" in sides:
        terms.append(ContentLoss(ContentParams(layers=list(layers), weight=weights["content"])))
    if "style" in sides:
        terms.append(StyleLoss(StyleParams(layers=list(layers), weight=weights["style"])))
    return terms + list(image_terms)
