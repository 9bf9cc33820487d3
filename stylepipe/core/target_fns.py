"""Style targets from pictures: each picture resized (and tiled) to the style size, run through
the network once, and its statistics blended by weight. Tensors only: caching them is the
pipeline's job (`stylepipe.targets.store.TargetStore`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from .errors import StyleTooSmall
from .geometry import MIN_SIDE, resize, target_size, tile
from .loss_fns import Targets, Term
from .network import FeatureExtractor
from .tiling import Tiling
from .tiling import style_targets as tiled_style_targets


@dataclass(frozen=True)
class WeightedImage:
    """One picture of a style, RGB (3, H, W) in [0, 1] at its own resolution, and its share."""

    image: torch.Tensor
    weight: float
    grid: int = 1  # repeated grid×grid once resized to the style size: tiling first costs grid² memory

    @property
    def size(self) -> tuple[int, int]:
        """Height and width of the texture this picture stands for (tiles included)."""
        return self.image.shape[-2] * self.grid, self.image.shape[-1] * self.grid


@dataclass(frozen=True)
class StyleSizing:
    """How large style pictures are when their statistics are taken (texture scale follows it)."""

    max_side: int | None
    max_pixels: int | None
    #: Share of a style file's own resolution whose detail its statistics keep (`size.style_detail`):
    #: a picture taken at more than `detail` × its file size is resampled through that size first,
    #: so a small file's pixel noise (JPEG blocks, scan grain) is not asked for as brushwork. 1: all.
    detail: float = 1.0

    def size_of(self, image: torch.Tensor) -> tuple[int, int]:
        return target_size(image.shape[-2], image.shape[-1], self.max_side, self.max_pixels)

    def fingerprint(self) -> dict[str, float | int | None]:
        """The sizing as cache keys and resume fingerprints hold it: `detail` only below 1, so
        full-detail targets and pictures keep the keys and fingerprints of earlier versions."""
        entry: dict[str, float | int | None] = {"max_side": self.max_side, "max_pixels": self.max_pixels}
        if self.detail != 1:
            entry["detail"] = self.detail
        return entry

    def resample(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """`image` (at its file's resolution) at `size`, without detail finer than `detail` of its own pixels."""
        height, width = image.shape[-2:]
        kept = max(1, round(height * self.detail)), max(1, round(width * self.detail))
        if self.detail < 1 and size[0] > kept[0] and size[1] > kept[1]:
            image = resize(image, kept)
        return resize(image, size)


def style_terms(terms: Sequence[Term]) -> list[Term]:
    """The terms whose targets come from the style image."""
    return [term for term in terms if term.side == "style"]


@torch.no_grad()
def compute_targets(
    pictures: Sequence[WeightedImage],
    extractor: FeatureExtractor,
    terms: Sequence[Term],
    sizing: StyleSizing,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    tile_for: Callable[[tuple[int, int]], Tiling | None] | None = None,
) -> Targets:
    """Weighted blend of each picture's statistics (a single picture has weight 1).

    `tile_for(size)` says whether a picture of that size is measured tile by tile (a print-size
    style picture's forward pass alone can outgrow the memory); the targets are the same."""
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
            raise StyleTooSmall(f"picture {number} is {width}×{height} px at the style size; every side needs "
                                f"at least {MIN_SIDE} px")
        image = tile(sizing.resample(picture.image, tile_size), picture.grid).to(device=device, dtype=dtype)
        tiling = tile_for((height, width)) if tile_for is not None else None
        if tiling is not None:
            measured = tiled_style_targets(extractor, terms, image.unsqueeze(0), tiling)
        else:
            features = extractor(image.unsqueeze(0), layers)
            measured = {term.name: term.style_targets(features) for term in terms}
        for term in terms:
            for key, value in measured.get(term.name, {}).items():
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


def targets_to(targets: Targets, device: torch.device) -> Targets:
    """The same targets on `device`: they are cached and shipped on the CPU, and used where the image is."""
    return {term: {key: value.to(device) for key, value in parts.items()} for term, parts in targets.items()}
