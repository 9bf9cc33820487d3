"""Style targets: the per-style statistics (Gram matrices first) that every job of a style reuses.

Computing them means loading, tiling and resizing the style pictures and running the network,
so they are computed once per distinct style and kept in the two-layer cache (memory for this
run, disk for later runs). The cache key covers everything that changes a target: the source's
fingerprint (its file contents and parameters), the network and its weights, pooling, the terms
and their layers, the style size and the dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .cache import TargetCache, make_key
from .errors import StylepipeError
from .images import MIN_SIDE, resize, target_size, tile
from .losses import LossTerm
from .network import FeatureExtractor
from .styles import StyleSource, WeightedImage

TARGETS_VERSION = 1
#: term name → that term's tensors (e.g. "style" → {"relu1_1": C×C Gram, …}).
Targets = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class StyleSizing:
    """How large style pictures are when their statistics are taken (texture scale follows it)."""

    max_side: int | None
    max_pixels: int | None

    def size_of(self, image: torch.Tensor) -> tuple[int, int]:
        return target_size(image.shape[-2], image.shape[-1], self.max_side, self.max_pixels)


def style_terms(terms: Sequence[LossTerm]) -> list[LossTerm]:
    """The terms whose targets come from the style image."""
    return [term for term in terms if term.side == "style"]


def target_key(source: StyleSource, network: Mapping[str, str], terms: Sequence[LossTerm], sizing: StyleSizing, dtype: torch.dtype = torch.float32) -> str:
    """Content-addressed cache key: `gram/v{N}/sha256(canonical JSON)`; `network` is its fingerprint."""
    payload: dict[str, Any] = {
        "source": source.fingerprint(),
        "network": dict(network),
        "terms": [term.fingerprint() for term in style_terms(terms)],
        "sizing": {"max_side": sizing.max_side, "max_pixels": sizing.max_pixels},
        "dtype": str(dtype),
    }
    return make_key("gram", TARGETS_VERSION, payload)


@torch.no_grad()
def compute_targets(
    pictures: Sequence[WeightedImage],
    extractor: FeatureExtractor,
    terms: Sequence[LossTerm],
    sizing: StyleSizing,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Targets:
    """Weighted blend of each picture's statistics (a single picture has weight 1)."""
    terms = style_terms(terms)
    layers = sorted({layer for term in terms for layer in term.layers})
    blended: Targets = {term.name: {} for term in terms}
    if not layers:
        return blended
    for number, picture in enumerate(pictures, start=1):
        height, width = target_size(*picture.size, sizing.max_side, sizing.max_pixels)
        tile_size = max(1, round(height / picture.grid)), max(1, round(width / picture.grid))
        height, width = tile_size[0] * picture.grid, tile_size[1] * picture.grid
        if min(height, width) < MIN_SIDE:  # block 5's padding would fail, or its features vanish
            raise StylepipeError(f"picture {number} is {width}×{height} px at the style size; every side needs "
                                 f"at least {MIN_SIDE} px: raise size.style_max_side or size.style_scale")
        image = tile(resize(picture.image, tile_size), picture.grid).to(device=device, dtype=dtype)
        features = extractor(image.unsqueeze(0), layers)
        for term in terms:
            for key, value in term.style_targets(features).items():
                acc = blended[term.name]
                acc[key] = acc[key] + picture.weight * value if key in acc else picture.weight * value
    return {name: {k: v.to("cpu", torch.float32) for k, v in tensors.items()} for name, tensors in blended.items()}


def flatten(targets: Targets) -> dict[str, torch.Tensor]:
    """One flat name → tensor mapping, the shape the cache stores."""
    return {f"{term}::{key}": value for term, tensors in targets.items() for key, value in tensors.items()}


def unflatten(flat: Mapping[str, torch.Tensor]) -> Targets:
    out: Targets = {}
    for name, value in flat.items():
        term, _, key = name.partition("::")
        out.setdefault(term, {})[key] = value
    return out


class TargetStore:
    """Hands out each style's targets, computing a style at most once per run and cache."""

    def __init__(self, cache: TargetCache, extractor: FeatureExtractor, terms: Sequence[LossTerm], sizing: StyleSizing, device: torch.device) -> None:
        self.cache = cache
        self.extractor = extractor
        self.terms = list(terms)
        self.sizing = sizing
        self.device = device
        self.computed = 0
        self.cache_hits = 0

    def key(self, source: StyleSource) -> str:
        return target_key(source, self.extractor.fingerprint(), self.terms, self.sizing)

    def get(self, source: StyleSource) -> Targets:
        """Cached targets if the key matches, else compute them (counted) and store them."""
        key = self.key(source)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return unflatten(cached)
        targets = compute_targets(source.images(), self.extractor, self.terms, self.sizing, self.device)
        self.computed += 1
        self.cache.put(key, flatten(targets))
        return targets
