"""The objective: weighted loss terms against fixed targets, evaluated on a batch of pictures.

Its own module so that the optimiser (`optimize`) and the tiled evaluation (`tiling`) both build
on it without importing each other: tiling plugs into an Objective as a `Tiler`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, cast

import torch

from .geometry import resize
from .loss_fns import Targets, Term
from .network import FeatureExtractor

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Tiler(Protocol):
    """Evaluates an Objective's parts with the same values and gradients as one whole-picture
    pass, in less memory: `stylepipe.core.tiling.Tiling` runs the network on tiles."""

    def parts(self, objective: Objective, image: torch.Tensor) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Anchor:
    """A hold on a smaller picture: scaled down to `size`, the picture keeps its Gram statistics
    `targets` (per image, (B, C, C) per layer), weighted `weight`, and its pixels `pictures`
    ((B, 3, H, W) at `size`; mean squared difference), weighted `pixel_weight`, each × the style
    terms' weights. Levels above the composition use it so that refining strokes at their scale does
    not change what the composition looks like, nor sprinkle it with the painting's flecks
    (stylepipe.core.levels)."""

    size: tuple[int, int]
    targets: Targets
    weight: float
    pictures: torch.Tensor | None = None
    pixel_weight: float = 0.0


#: The name of the anchor's part among an Objective's parts (never a term's name: terms are registered).
ANCHOR_PART = "anchor"


@dataclass
class Objective:
    """Weighted loss terms against fixed targets; call it on a batch to get per-image parts."""

    extractor: FeatureExtractor | None
    terms: Sequence[Term]
    content: Targets = field(default_factory=dict)
    style: Targets = field(default_factory=dict)
    precision: Precision = "fp32"
    tiling: Tiler | None = None  # None: one pass over the whole picture (see stylepipe.core.tiling)
    anchor: Anchor | None = None  # a refine level's hold on the composition's look

    @property
    def layers(self) -> list[str]:
        return sorted({layer for term in self.terms for layer in term.layers})

    def autocast(self, image: torch.Tensor) -> contextlib.AbstractContextManager:
        """The network's precision for this pass: a no-op in float32 (the tiles use it too)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=image.device.type, dtype=_DTYPES[self.precision])

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-image value of each term (and the anchor's hold, already weighted),
        shape (B,) each; losses always in float32."""
        parts = self.tiling.parts(self, image) if self.tiling is not None else self._terms(image, self.content, self.style)
        if self.anchor is not None:
            parts = {**parts, ANCHOR_PART: self._held(image, self.anchor)}
        return parts

    def _held(self, image: torch.Tensor, anchor: Anchor) -> torch.Tensor:
        """The anchor's weighted hold per image: on the picture scaled down to its size (small
        enough to run whole, tiled or not), each style term's distance from its statistics and the
        pixels' from its pictures."""
        small = resize(image, anchor.size)
        style_terms = [term for term in self.terms if term.side == "style"]
        held = torch.zeros(len(image), device=image.device)
        if anchor.weight > 0:
            looks = self._terms(small, {}, anchor.targets, style_terms)
            held = held + anchor.weight * cast(torch.Tensor, sum(term.weight * looks[term.name] for term in style_terms))
        if anchor.pixel_weight > 0 and anchor.pictures is not None:
            pixels = (small.float() - anchor.pictures.float()).pow(2).flatten(1).mean(dim=1)
            held = held + anchor.pixel_weight * sum(term.weight for term in style_terms) * pixels
        return held

    def _terms(self, image: torch.Tensor, content: Targets, style: Targets,
               terms: Sequence[Term] | None = None) -> dict[str, torch.Tensor]:
        """Each of `terms` (all of them by default) on one pass over the whole picture."""
        terms = self.terms if terms is None else terms
        layers = sorted({layer for term in terms for layer in term.layers})
        features: dict[str, torch.Tensor] = {}
        if layers and self.extractor is not None:
            with self.autocast(image):
                features = self.extractor(image, layers)
            features = {name: value.float() for name, value in features.items()}
        return {term.name: term.loss(image, features, content.get(term.name, {}), style.get(term.name, {})) for term in terms}

    def total(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted per-image total, shape (B,)."""
        total = cast(torch.Tensor, sum(term.weight * parts[term.name] for term in self.terms))
        if self.anchor is not None and ANCHOR_PART in parts:
            total = total + parts[ANCHOR_PART]
        return total

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor) -> dict[str, list[float]]:
        """Per-image loss parts and total as plain floats (always float32), for reports and tests:
        the terms' own, without a refine level's anchor."""
        full = replace(self, precision="fp32", anchor=None)
        parts = full.parts(image)
        values = {name: value.tolist() for name, value in parts.items()}
        values["total"] = full.total(parts).tolist()
        return values


#: The key under which a content-side term's `content_targets` also finds the content photos
#: themselves, (B, 3, H, W) in [0, 1] at the working size (of each level): terms that keep
#: something of the pixels (brightness, colours) read them there.
CONTENT_PIXELS = "pixels"


def content_targets(extractor: FeatureExtractor, terms: Sequence[Term], content: torch.Tensor) -> Targets:
    """Targets of the content-side terms for a batch of content images: their features at the
    taps they read, plus the pictures under CONTENT_PIXELS."""
    content_terms = [term for term in terms if term.side == "content"]
    if not content_terms:
        return {}
    layers = sorted({layer for term in content_terms for layer in term.layers})
    with torch.no_grad():
        features = dict(extractor(content, layers)) if layers else {}
        features[CONTENT_PIXELS] = content
        return {term.name: term.content_targets(features) for term in content_terms}


def anchor_targets(extractor: FeatureExtractor, terms: Sequence[Term], pictures: torch.Tensor) -> Targets:
    """The style terms' targets taken from each of a batch of pictures, stacked per image (a Gram
    term's are then (B, C, C) per layer): an `Anchor`'s, from the composition as painted."""
    style_terms = [term for term in terms if term.side == "style"]
    layers = sorted({layer for term in style_terms for layer in term.layers})
    with torch.no_grad():
        features = extractor(pictures, layers) if layers else {}
        features = {name: value.float() for name, value in features.items()}
        per_image = [{name: value[i : i + 1] for name, value in features.items()} for i in range(len(pictures))]
        targets: Targets = {}
        for term in style_terms:
            each = [term.style_targets(one) for one in per_image]
            targets[term.name] = {key: torch.stack([one[key] for one in each]) for key in each[0]}
        return targets
