"""Pictures handed to the Python API in memory or by path, turned into what the pipeline works on.

A path is read by `load_image`, a PIL image by `from_pil` (the same decoding: EXIF orientation,
ICC profile, any mode to RGB, the same 8-bit shrink), so `Image.open(path)` and `path` give the
same pixels. Tensors and float arrays are taken as RGB in [0, 1]; uint8 arrays as 8-bit pictures
(what `ray.data.read_images` gives). Pictures given in memory as a style become a `PictureSource`,
a style source keyed by the pictures' pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.target_fns import WeightedImage
from ..io.hashing import sha256_hex
from ..io.images import DEFAULT_MAX_INPUT_PIXELS, from_pil, load_image, to_pil
from .sources import SourceParams, StyleContext, StyleSource

#: A picture in memory.
InMemory = Image.Image | torch.Tensor | np.ndarray
#: A picture file.
PathLike = str | os.PathLike[str]
#: Anything the API takes as one picture.
Picture = InMemory | PathLike

Fit = tuple[int | None, int | None]


def is_path(picture: object) -> bool:
    return isinstance(picture, (str, os.PathLike))


def is_picture(value: object) -> bool:
    """Whether `value` is one picture (not a list of them, not a style spec)."""
    return is_path(value) or isinstance(value, (Image.Image, torch.Tensor, np.ndarray))


def to_tensor(picture: Picture, fit: Fit | None = None, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
              name: str = "picture") -> torch.Tensor:
    """One picture as (3, H, W) float32 RGB in [0, 1] on the CPU, decoded as the pipeline decodes files.

    `fit` (max_side, max_pixels) lets large 8-bit pictures shrink while still 8-bit, as files do.
    """
    if isinstance(picture, (str, os.PathLike)):
        return load_image(Path(picture), max_input_pixels, fit).tensor
    if isinstance(picture, Image.Image):
        return from_pil(picture, fit, max_input_pixels, name)
    if isinstance(picture, np.ndarray):
        if picture.dtype == np.uint8:  # (H, W), (H, W, 3) or (H, W, 4): an 8-bit picture, as Pillow has it
            return from_pil(Image.fromarray(picture), fit, max_input_pixels, name)
        if picture.ndim != 3 or picture.shape[-1] != 3:
            raise ValueError(f"{name}: expected an (H, W, 3) array, got shape {picture.shape}")
        return _checked(torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1))), name)
    if isinstance(picture, torch.Tensor):
        if picture.dim() != 3 or picture.shape[0] != 3:
            raise ValueError(f"{name}: expected a (3, H, W) tensor, got shape {tuple(picture.shape)}")
        if picture.dtype == torch.uint8:
            return picture.detach().to("cpu", torch.float32) / 255.0
        return _checked(picture, name)
    raise TypeError(f"{name}: expected a PIL image, a (3, H, W) tensor, an (H, W, 3) array or a path, "
                    f"not {type(picture).__name__}")


def _checked(image: torch.Tensor, name: str) -> torch.Tensor:
    """Float pictures must be RGB in [0, 1]: a mean/std-normalised tensor would be styled as garbage."""
    if not image.is_floating_point():
        raise ValueError(f"{name}: expected float pixels in [0, 1] or uint8, got {image.dtype}")
    image = image.detach().to("cpu", torch.float32)
    low, high = float(image.min()), float(image.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"{name}: pixels range over [{low:.3g}, {high:.3g}]; give RGB in [0, 1], not normalised values")
    return image.clamp(0.0, 1.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """An (H, W, 3) uint8 array, quantised exactly as saved outputs are."""
    return np.asarray(to_pil(image))


class PictureSource(StyleSource):
    """Pictures given in memory as one style, each with a weight (normalised to sum to 1, as a
    `blend` does): its cache key covers their pixels, so the same pictures find the same targets."""

    name = "pictures"
    version = 1

    def __init__(self, pictures: Sequence[WeightedImage], context: StyleContext, label: str | None = None) -> None:
        super().__init__(SourceParams(), context, label)
        total = sum(picture.weight for picture in pictures)
        if not pictures or total <= 0:
            raise ValueError("a style needs at least one picture with a positive weight")
        self.pictures = [WeightedImage(p.image, p.weight / total, p.grid) for p in pictures]

    def default_label(self) -> str:
        return "picture" if len(self.pictures) == 1 else "pictures"

    def images(self) -> list[WeightedImage]:
        return list(self.pictures)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "version": self.version,
            "pictures": [{"pixels": _pixels_hash(p.image), "weight": p.weight, "grid": p.grid} for p in self.pictures],
        }


def _pixels_hash(image: torch.Tensor) -> str:
    """sha256 of a picture's shape and float32 pixels."""
    pixels = image.detach().to("cpu", torch.float32).contiguous()
    return sha256_hex(str(tuple(pixels.shape)).encode() + pixels.numpy().tobytes())
