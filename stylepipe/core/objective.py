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

from .loss_fns import Targets, Term
from .network import FeatureExtractor

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Tiler(Protocol):
    """Evaluates an Objective's parts with the same values and gradients as one whole-picture
    pass, in less memory: `stylepipe.core.tiling.Tiling` runs the network on tiles."""

    def parts(self, objective: Objective, image: torch.Tensor) -> dict[str, torch.Tensor]: ...


@dataclass
class Objective:
    """Weighted loss terms against fixed targets; call it on a batch to get per-image parts."""

    extractor: FeatureExtractor | None
    terms: Sequence[Term]
    content: Targets = field(default_factory=dict)
    style: Targets = field(default_factory=dict)
    precision: Precision = "fp32"
    tiling: Tiler | None = None  # None: one pass over the whole picture (see stylepipe.core.tiling)

    @property
    def layers(self) -> list[str]:
        return sorted({layer for term in self.terms for layer in term.layers})

    def autocast(self, image: torch.Tensor) -> contextlib.AbstractContextManager:
        """The network's precision for this pass: a no-op in float32 (the tiles use it too)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=image.device.type, dtype=_DTYPES[self.precision])

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted per-image value of each term, shape (B,) each; losses always in float32."""
        if self.tiling is not None:
            return self.tiling.parts(self, image)
        layers = self.layers
        features: dict[str, torch.Tensor] = {}
        if layers and self.extractor is not None:
            with self.autocast(image):
                features = self.extractor(image, layers)
            features = {name: value.float() for name, value in features.items()}
        return {
            term.name: term.loss(image, features, self.content.get(term.name, {}), self.style.get(term.name, {}))
            for term in self.terms
        }

    def total(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted per-image total, shape (B,)."""
        return cast(torch.Tensor, sum(term.weight * parts[term.name] for term in self.terms))

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor) -> dict[str, list[float]]:
        """Per-image loss parts and total as plain floats (always float32), for reports and tests."""
        full = replace(self, precision="fp32")
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
