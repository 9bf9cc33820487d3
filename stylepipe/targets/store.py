"""Style targets: the per-style statistics (Gram matrices first) that every job of a style reuses.

Computing them means loading, tiling and resizing the style pictures and running the network,
so they are computed once per distinct style and kept in the two-layer cache (memory for this
run, disk for later runs). The cache key covers everything that changes a target: the source's
fingerprint (its file contents and parameters), the network and its weights, pooling, the terms
and their layers, the style size and the dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..core.errors import StylepipeError, StyleTooSmall
from ..core.loss_fns import Targets
from ..core.network import FeatureExtractor
from ..core.target_fns import StyleSizing, compute_targets, flatten, unflatten
from ..core.tiling import Tiling
from ..extend.sources import StyleSource
from ..extend.terms import LossTerm
from .cache import TargetCache
from .keys import target_key


class TargetStore:
    """Hands out each style's targets, computing a style at most once per run and cache."""

    def __init__(self, cache: TargetCache, extractor: FeatureExtractor, terms: Sequence[LossTerm], sizing: StyleSizing,
                 device: torch.device, tile_for: Callable[[tuple[int, int]], Tiling | None] | None = None) -> None:
        self.cache = cache
        self.extractor = extractor
        self.terms = list(terms)
        self.sizing = sizing
        self.device = device
        self.tile_for = tile_for  # print-size style pictures are measured tile by tile
        self.computed = 0
        self.cache_hits = 0

    def key(self, source: StyleSource, sizing: StyleSizing | None = None) -> str:
        return target_key(source, self.extractor.fingerprint(), self.terms, sizing or self.sizing)

    def get(self, source: StyleSource, sizing: StyleSizing | None = None) -> Targets:
        """Cached targets if the key matches, else compute them (counted) and store them; at the
        store's style size, or at `sizing` (a level's)."""
        sizing = sizing or self.sizing
        key = self.key(source, sizing)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return unflatten(cached)
        try:
            targets = compute_targets(source.images(), self.extractor, self.terms, sizing, self.device,
                                      tile_for=self.tile_for)
        except StyleTooSmall as exc:  # the core knows sizes, the pipeline knows which keys set them
            raise StylepipeError(f"{exc}: raise size.style_max_side or size.style_scale") from None
        self.computed += 1
        self.cache.put(key, flatten(targets))
        return targets

    def levels(self, source: StyleSource, sizings: Sequence[StyleSizing]) -> list[Targets]:
        """A style's targets at each level's size, each cached under its own key."""
        return [self.get(source, sizing) for sizing in sizings]
