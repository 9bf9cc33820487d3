"""Picture geometry on tensors: working sizes within a budget, anti-aliased resizing, n×n tiling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Five VGG blocks halve a picture four times before relu5_1: smaller sides vanish (or break padding).
MIN_SIDE = 17


def target_size(
    height: int, width: int, max_side: int | None = None, max_pixels: int | None = None
) -> tuple[int, int]:
    """Pick the working resolution: the size the user asked for, within the pixel budget."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    candidates = []
    if max_side is not None:
        candidates.append(_fit_side(height, width, max_side))
    if max_pixels is not None:
        candidates.append(_fit_pixels(height, width, max_pixels))
    return min(candidates, key=lambda hw: hw[0] * hw[1], default=(height, width))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample without aliasing so downscaled content and style keep their true statistics."""
    _check_image(image)
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batch, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp_(0.0, 1.0)
    return out if image.dim() == 4 else out.squeeze(0)


def tile(image: torch.Tensor, grid: int) -> torch.Tensor:
    """Turn a photo into a repeating texture so its Gram statistics describe a style, not a scene."""
    _check_image(image)
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if grid == 1:
        return image
    return image.repeat(*([1] * (image.dim() - 2)), grid, grid)


def _fit_side(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(height, width)
    if height >= width:
        return max_side, max(1, round(width * scale))
    return max(1, round(height * scale)), max_side


def _fit_pixels(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    if h * w > max_pixels:
        h, w = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    if h * w > max_pixels:  # extreme aspect ratios: the short side is already 1
        if h <= w:
            w = max(1, max_pixels // h)
        else:
            h = max(1, max_pixels // w)
    return h, w


def _check_image(image: torch.Tensor) -> None:
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) image, got shape {tuple(image.shape)}")
