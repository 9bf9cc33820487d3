"""Painted pictures kept at full precision, so that an output-only change re-encodes instead of repainting.

A painting is the optimiser's RGB result before any encoding: written as a 16-bit PNG (65,536
levels per channel, far finer than any 8-bit output needs) through the one atomic writer, and
read back exactly with pypng (Pillow reads 16-bit RGB PNGs as 8 bits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png
import torch

from .files import open_regular
from .images import save_image


def save_painting(image: torch.Tensor, path: Path) -> None:
    """Keep a (3, H, W) result in [0, 1] as a 16-bit PNG."""
    save_image(image, path, "png", bit_depth=16)


def load_painting(path: Path) -> torch.Tensor:
    """A kept painting as the (3, H, W) float32 tensor it was saved from (to 1/65535)."""
    with open_regular(path) as handle:
        width, height, rows, info = png.Reader(file=handle).asDirect()
        pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    planes = info["planes"]
    if planes != 3:
        raise ValueError(f"{path}: a kept painting has 3 channels, this one {planes}")
    scale = float((1 << info["bitdepth"]) - 1)
    array = pixels.reshape(height, width, 3).astype(np.float32) / scale
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
